"""Import/Export: bring usage in from a CSV or Parquet file (engineer+), take the current view
out.

Import steps: upload -> map the columns -> answer what the file leaves open (decimal mark,
day/month order) -> see the first rows as they will be stored -> every row checked (bad rows
listed, rows already in the log counted as duplicates) -> import, skipping bad rows only when
the button says so. The result shows at the top of the page with a "Show this range" button.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from console import auth, chrome
from console.commands.usage import import_usage
from console.queries import usage
from console.queries.overview import accounting_report, coverage, unpriced_calls
from console.queries.requests import request_count
from console.selection import Selection
from console.sidebar import current_selection
from core.control import Actor
from core.errors import CostlineError
from core.importer import EVENT_FIELDS, FIELDS, REQUIRED, ImportResult, Preview, Question

FORMATS = {"csv": ("CSV", "text/csv"), "parquet": ("Parquet", "application/vnd.apache.parquet")}
RESULT = "imp_result"  # the last import's result, shown at the top after the rerun

CENT = Decimal("0.01")  # money to the cent, half a cent up (as the console's tables)


def main() -> None:
    if st.session_state.pop("imp_goto_overview", False):
        st.switch_page("app_pages/overview.py")
    actor = auth.current_actor()
    assert actor is not None
    selection = current_selection()
    st.title("Import / Export")
    last_result(selection)
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
    chrome.unpriced_notice(unpriced_calls(usage.home(), usage.version(), selection.scope))
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
    accounting_section(selection, count)


ACCOUNTING_LABELS = {
    "org": "Org",
    "project": "Project",
    "key": "API key",
    "model": "Model",
    "tag": "Tag (cost centre)",
}


def accounting_section(selection: Selection, count: int) -> None:
    """Month x a dimension, in the display currency with its rate; unpriced calls apart."""
    st.markdown("**Accounting summary**")
    by = st.segmented_control(
        "Group by month and",
        list(ACCOUNTING_LABELS),
        default="org",
        format_func=ACCOUNTING_LABELS.__getitem__,
        key="exp_acc_by",
    )
    by = by or "org"
    money = selection.money
    acc = accounting_report(
        usage.home(), usage.version(), selection.scope, by, money.currency, money.rate
    )
    shown = acc.priced.rename(
        columns={
            "month": "Month",
            by: ACCOUNTING_LABELS[by],
            "calls": "Calls",
            "cost_usd": "Cost (USD, exact)",
            "currency": "Currency",
            "rate": "Rate per USD",
            "amount": f"Amount ({money.currency})",
        }
    )
    st.dataframe(shown, hide_index=True, width="stretch", key="exp_acc_table")
    st.caption(
        f"Amounts in {money.currency} at {money.rate} per USD, rounded to the cent per row."
        + (" A call with several tags counts under each." if by == "tag" else "")
    )
    cols = st.columns([1, 1, 3])
    name = f"costline-accounting-{by}-{money.currency.lower()}"
    cols[0].download_button(
        "Download summary (CSV)",
        data=acc.csv(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key="exp_acc_csv",
        disabled=count == 0,
        on_click="ignore",
    )
    if acc.unpriced_calls:
        st.markdown(f"**Unpriced calls** ({acc.unpriced_calls:,}, not in the amounts above)")
        st.dataframe(acc.unpriced, hide_index=True, width="stretch", key="exp_acc_unpriced")
        cols[1].download_button(
            f"Download {acc.unpriced_calls:,} unpriced (CSV)",
            data=acc.csv(unpriced=True),
            file_name=f"{name}-unpriced.csv",
            mime="text/csv",
            key="exp_acc_unpriced_csv",
            on_click="ignore",
        )


def import_section(actor: Actor) -> None:
    st.subheader("Import usage from a CSV or Parquet file")
    uploaded = st.file_uploader(
        "CSV or Parquet file", type=["csv", "txt", "parquet"], key="imp_file"
    )
    if uploaded is None:
        st.caption(
            "Exports of OpenAI, Anthropic, LiteLLM, Langfuse or Helicone usage work, and"
            " Costline's own CSV or Parquet export;"
            " you map the columns and see every row checked before anything is written."
        )
        return
    content = uploaded.getvalue()
    try:
        preview = usage.import_preview(content)
    except CostlineError as exc:
        st.error(str(exc))
        return
    digest = hashlib.sha256(content).hexdigest()[:12]
    mapping, inclusive = mapping_step(preview, digest)
    key = tuple(sorted(mapping.items()))
    try:
        asked = usage.import_questions(content, key)
    except CostlineError as exc:
        st.error(str(exc))
        return
    answers = questions_step(asked, digest)
    if answers is None:
        st.info("Answer the question above: the rows are read only once it is answered.")
        return
    chosen = tuple(sorted(answers.items()))
    try:
        sample = usage.import_sample(content, key, inclusive, chosen)
    except CostlineError as exc:
        st.error(str(exc))
        return
    st.write("The first rows as they will be stored (parsed):")
    st.dataframe(sample, hide_index=True, width="stretch", key="imp_sample")
    replace = replace_step(digest)
    try:  # checked as it will run: with a replace, the range's rows are no duplicates
        check = usage.import_check(
            usage.home(), usage.version(), content, key, inclusive, chosen, replace
        )
    except CostlineError as exc:
        st.error(str(exc))
        return
    import_step(actor, uploaded.name, content, mapping, inclusive, answers, check, replace)


def mapping_step(preview: Preview, digest: str) -> tuple[dict[str, str], bool]:
    st.write("Map the file's columns to Costline's fields:")
    choices = ["", *preview.columns]
    mapping: dict[str, str] = {}
    usage = [f for f in FIELDS if f not in EVENT_FIELDS]
    events = [f for f in FIELDS if f in EVENT_FIELDS]
    with_events = any(f in preview.mapping for f in events)
    for names, box in (
        (usage, st.container()),
        (events, st.expander("Event fields (Costline's own export)", expanded=with_events)),
    ):
        cols = box.columns(4)
        for i, name in enumerate(names):
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


def questions_step(asked: list[Question], digest: str) -> dict[str, str | None] | None:
    """One radio per open question, the cells' suggestion preselected; None until answered."""
    answers: dict[str, str | None] = {"decimal": None, "date_order": None}
    for q in asked:
        options = list(q.choices)
        st.radio(
            q.text,
            options,
            index=options.index(q.suggested) if q.suggested in options else None,
            format_func=q.choices.__getitem__,
            key=f"imp_q_{digest}_{q.field}",
            horizontal=True,
        )
        st.caption(f"In the file: {', '.join(q.examples)}. {q.reason.capitalize()}.")
        answers[q.field] = st.session_state.get(f"imp_q_{digest}_{q.field}")
        if answers[q.field] is None:
            return None
    return answers


def replace_step(digest: str) -> tuple[str, datetime, datetime] | None:
    """The explicit 'replace this source's rows in [from, to]' action (a corrected export)."""
    with st.expander("Replace rows already imported (a corrected re-export)"):
        on = st.checkbox(
            "Replace a source's rows in a date range with this file's rows",
            key=f"imp_rep_on_{digest}",
        )
        cols = st.columns(3)
        source = cols[0].text_input("Source", value="import", key=f"imp_rep_src_{digest}")
        first = cols[1].date_input("From (UTC)", value=None, key=f"imp_rep_from_{digest}")
        last = cols[2].date_input("To, inclusive (UTC)", value=None, key=f"imp_rep_to_{digest}")
        if not on:
            return None
        if not isinstance(first, date) or not isinstance(last, date) or first > last:
            st.warning("Choose the first and the last day of the rows to replace.")
            return None
        start = datetime.combine(first, time(), UTC)
        end = datetime.combine(last + timedelta(days=1), time(), UTC)
        try:
            rows, usd = usage.replace_count(source, start, end)
        except CostlineError as exc:  # e.g. the usage log is in a bucket
            st.error(str(exc))
            return None
        st.warning(
            f"{rows:,} rows (${usd.quantize(CENT, rounding=ROUND_HALF_UP):,}) of source"
            f" {source!r} from {first} to {last} will be"
            " removed once this file's rows are written. The replace is audited."
        )
        return source, start, end


def import_step(
    actor: Actor,
    name: str,
    content: bytes,
    mapping: dict[str, str],
    inclusive: bool,
    answers: dict[str, str | None],
    check: ImportResult,
    replace: tuple[str, datetime, datetime] | None,
) -> None:
    bad = len(check.bad_rows)
    cols = st.columns(4)
    cols[0].metric("Rows to import", f"{check.imported:,}")
    cols[1].metric("Bad rows", f"{bad:,}")
    cols[2].metric("Duplicates skipped", f"{check.duplicates:,}")
    cols[3].metric("Unpriced models", f"{len(check.unpriced_models):,}")
    if check.duplicates:
        st.caption(f"{check.duplicates:,} rows are already in the usage log: not imported again.")
    if bad:
        st.write("Bad rows (not imported):")
        st.dataframe(
            pd.DataFrame([{"line": b.line, "reason": b.reason} for b in check.bad_rows]),
            hide_index=True,
            width="stretch",
            key="imp_bad_rows",
        )
    if not check.imported:
        st.info(check.message)
        return
    label = f"Import {check.imported:,} rows" + (f", skip {bad:,} (listed)" if bad else "")
    if st.button(label, type="primary", key="imp_go"):
        try:
            result = import_usage(
                actor,
                name,
                content,
                mapping,
                inclusive,
                answers,
                skip_bad_rows=bad > 0,
                replace=replace,
            )
        except CostlineError as exc:
            st.error(str(exc))
            return
        st.session_state[RESULT] = result
        st.rerun()  # the frame re-reads the log: the empty-state banner goes


def last_result(selection: Selection) -> None:
    """The last import's outcome, at the top of the page, with its date range one click away."""
    result: ImportResult | None = st.session_state.get(RESULT)
    if result is None:
        return
    with st.container(border=True):
        (st.info if result.skipped_duplicate_file or not result.written else st.success)(
            result.message
        )
        cols = st.columns(4)
        cols[0].metric("Rows imported", f"{result.imported if result.written else 0:,}")
        cols[1].metric("Bad rows skipped", f"{len(result.bad_rows):,}")
        cols[2].metric("Duplicates not imported", f"{result.duplicates:,}")
        cols[3].metric("Unpriced models imported", f"{len(result.unpriced_models):,}")
        if result.unpriced_models:
            st.write("Unpriced models (imported, flagged unpriced, not counted as $0):")
            st.dataframe(
                pd.DataFrame(list(result.unpriced_models.items()), columns=["model", "rows"]),
                hide_index=True,
                key="imp_unpriced",
            )
        if result.first_ts is not None and result.last_ts is not None and result.written:
            tz = ZoneInfo(selection.scope.tz)
            st.button(
                f"Show this range ({result.date_range})",
                key="imp_show_range",
                on_click=show_range,
                args=(result.first_ts.astimezone(tz).date(), result.last_ts.astimezone(tz).date()),
            )


def show_range(first: date, last: date) -> None:
    """Point the sidebar's time range at the imported rows and open the Overview."""
    st.session_state["f_range"] = "custom"
    st.session_state["f_dates"] = (first, last)
    st.session_state["imp_goto_overview"] = True


main()
