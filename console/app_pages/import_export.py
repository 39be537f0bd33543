"""Import/Export: bring usage in from a CSV file (engineer+), take the current view out."""

from __future__ import annotations

import hashlib
from functools import partial

import pandas as pd
import streamlit as st

from console import auth
from console.commands.usage import import_usage
from console.queries import usage
from console.queries.overview import coverage
from console.queries.requests import request_count
from console.selection import Selection
from console.sidebar import current_selection
from core.control import Actor
from core.errors import CostlineError
from core.importer import FIELDS, REQUIRED, Preview

FORMATS = {"csv": ("CSV", "text/csv"), "parquet": ("Parquet", "application/vnd.apache.parquet")}


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    selection = current_selection()
    st.title("Import / Export")
    export_section(selection)
    st.divider()
    if auth.may(actor, "engineer"):
        import_section(actor)
    else:
        st.caption("Importing usage needs the engineer role.")


def export_section(selection: Selection) -> None:
    st.subheader("Export")
    st.caption(f"The calls in the current view: {selection.describe()}")
    count = request_count(usage.home(), usage.version(), selection.scope, ())
    st.write(f"{count:,} calls")
    note = coverage(usage.home(), usage.version(), selection.scope).note()
    if note:  # an export holds raw rows: those of the pruned period are gone
        st.warning(note.capitalize() + ".", icon=":material/history:")
    cols = st.columns([1] * len(FORMATS) + [3])
    for col, (fmt, (label, mime)) in zip(cols, FORMATS.items(), strict=False):
        col.download_button(
            f"Download {label}",
            data=partial(usage.export_bytes, selection.scope, fmt),
            file_name=f"costline-usage.{fmt}",
            mime=mime,
            key=f"exp_{fmt}",
            disabled=count == 0,
            on_click="ignore",
        )


def import_section(actor: Actor) -> None:
    st.subheader("Import usage from a CSV file")
    uploaded = st.file_uploader("CSV file", type=["csv", "txt"], key="imp_file")
    if uploaded is None:
        st.caption(
            "Exports of OpenAI, Anthropic, LiteLLM, Langfuse or Helicone usage work;"
            " you map the columns before anything is written."
        )
        return
    content = uploaded.getvalue()
    try:
        preview = usage.import_preview(content)
    except CostlineError as exc:
        st.error(str(exc))
        return
    mapping, inclusive = mapping_step(preview, hashlib.sha256(content).hexdigest()[:12])
    st.write("Preview (first rows, mapped):")
    st.dataframe(mapped_preview(preview, mapping), hide_index=True, width="stretch")
    if st.button("Import", type="primary", key="imp_go"):
        run_import(actor, uploaded.name, content, mapping, inclusive)


def mapping_step(preview: Preview, digest: str) -> tuple[dict[str, str], bool]:
    st.write("Map the file's columns to Costline's fields:")
    choices = ["", *preview.columns]
    mapping: dict[str, str] = {}
    cols = st.columns(4)
    for i, name in enumerate(FIELDS):
        suggested = preview.mapping.get(name, "")
        label = name + (" *" if name in REQUIRED else "")
        mapping[name] = cols[i % 4].selectbox(
            label, choices, index=choices.index(suggested), key=f"imp_map_{digest}_{name}"
        )
    inclusive = st.checkbox(
        "Input tokens include cached tokens; output tokens include reasoning tokens",
        value=preview.tokens_inclusive,
        key=f"imp_inclusive_{digest}",
    )
    return {k: v for k, v in mapping.items() if v}, inclusive


def mapped_preview(preview: Preview, mapping: dict[str, str]) -> pd.DataFrame:
    frame = preview.frame()
    return pd.DataFrame({name: frame[col] for name, col in mapping.items()})


def run_import(
    actor: Actor, name: str, content: bytes, mapping: dict[str, str], inclusive: bool
) -> None:
    try:
        result = import_usage(actor, name, content, mapping, inclusive)
    except CostlineError as exc:
        st.error(str(exc))
        return
    (st.info if result.skipped_duplicate_file else st.success)(result.message)
    cols = st.columns(3)
    cols[0].metric("Rows imported", f"{result.imported:,}")
    cols[1].metric("Bad rows", f"{len(result.bad_rows):,}")
    cols[2].metric("Unpriced models", f"{len(result.unpriced_models):,}")
    if result.bad_rows:
        st.write("Bad rows (not imported):")
        st.dataframe(
            pd.DataFrame([{"line": b.line, "reason": b.reason} for b in result.bad_rows]),
            hide_index=True,
            width="stretch",
            key="imp_bad_rows",
        )
    if result.unpriced_models:
        st.write("Unpriced models (imported, flagged unpriced, not counted as $0):")
        st.dataframe(
            pd.DataFrame(list(result.unpriced_models.items()), columns=["model", "rows"]),
            hide_index=True,
        )


main()
