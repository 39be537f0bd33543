"""Pricing: the catalog routers price with, overrides (admin), LiteLLM import with a diff
preview, and the models the usage log saw without a price."""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from console import auth, chrome, forms, pickers
from console.commands import pricing as commands
from console.frames import pricing as frames
from console.inputs import pricing as inputs
from console.queries import pricing as queries
from console.queries import usage
from core.control import Actor
from core.errors import CostlineError
from core.pricing import Catalog, load_catalog
from core.pricing.rows import RATE_FIELDS

RATE_LABELS = {  # field: (label, placeholder)
    "input": ("Input *", ""),
    "output": ("Output *", ""),
    "cached_input": ("Cached input", "same as input"),
    "cache_write": ("Cache write", "same as input"),
    "reasoning": ("Reasoning", "same as output"),
}
CATALOG_ORDER = [
    "model",
    "provider",
    *RATE_FIELDS,
    "above_prompt_tokens",
    "context_window",
    "max_output_tokens",
    "effective_from",
    "status",
    "quality",
    "aliases",
    "source",
]
UNITS = {"mtok": "USD per 1M tokens", "token": "USD per token"}
RELOAD_NOTE = (
    "Running routers poll the control plane and price with a change within"
    " seconds; no restart is needed. Calls already logged keep the price of their day."
)


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("Pricing")
    st.caption(
        "Rates in USD per 1M tokens, as routers price calls today (the shipped catalog"
        " with the control plane's overrides)."
    )
    forms.flash()
    try:
        cat = queries.catalog()
    except CostlineError as exc:  # routers refuse such overrides too: say which to delete
        st.error(
            f"The price overrides do not form a valid catalog: {exc}. Routers refuse"
            " calls until the override named here is deleted or fixed."
        )
        cat = load_catalog()
    catalog_tab, overrides_tab, import_tab, unpriced_tab = st.tabs(
        ["Catalog", "Overrides", "Import LiteLLM prices", "Unpriced models"],
        **chrome.kept_tabs("pr_tab"),
    )
    with catalog_tab:
        catalog_section(cat)
    with overrides_tab:
        overrides_section(actor)
    with import_tab:
        import_section(actor, cat)
    with unpriced_tab:
        unpriced_section(cat)


def catalog_section(cat: Catalog) -> None:
    cols = st.columns([3, 2, 2])
    text = cols[0].text_input("Search", key="pr_search", placeholder="model, provider, alias…")
    frame = frames.catalog_frame(cat, queries.today())
    providers = cols[1].multiselect(
        "Provider", sorted(frame["provider"].unique()), key="pr_providers", placeholder="All"
    )
    current = cols[2].checkbox(
        "Current prices only",
        value=True,
        key="pr_current",
        help="Hide superseded and scheduled price versions",
    )
    rows = frames.search(frame, text, providers, current)
    st.caption(f"{rows['model'].nunique():,} models · {len(rows):,} price rows")
    rate = {
        name: st.column_config.NumberColumn(name.replace("_", " "), format="%.6g")
        for name in RATE_FIELDS
    }
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        key="pr_catalog",
        column_order=CATALOG_ORDER,
        column_config={
            **rate,
            "above_prompt_tokens": st.column_config.NumberColumn(
                "tier: prompt above", format="localized"
            ),
            "context_window": st.column_config.NumberColumn("context window", format="localized"),
            "max_output_tokens": st.column_config.NumberColumn("max output", format="localized"),
            "effective_from": st.column_config.DateColumn("effective from"),
        },
    )


def overrides_section(actor: Actor) -> None:
    st.markdown(
        "An override replaces a model's rates from its date on: negotiated rates, or"
        " the cost per token of a self-hosted model. " + RELOAD_NOTE
    )
    st.caption(
        "An override holds one set of rates for every prompt size: from its date, a"
        " model's long-context tier rates no longer apply. Rates are kept exactly, to"
        " 10⁻²⁴ USD per token (18 decimals per 1M tokens): LiteLLM's 4.6875e-09 USD per"
        " token is $0.0046875 per 1M."
    )
    table = frames.overrides_frame(auth.plane().price_overrides())
    if table.empty:
        st.info("No price overrides.")
    else:
        st.dataframe(table, hide_index=True, width="stretch", key="pr_overrides")
    if not auth.may(actor, "admin"):
        st.caption("Changing prices needs the admin role.")
        return
    override_form(actor)
    if not table.empty:
        delete_override(actor, table)


def override_form(actor: Actor) -> None:
    with st.form("pr_override", clear_on_submit=False):
        st.subheader("Add or change an override")
        cols = st.columns([3, 2, 2])
        with cols[0]:
            model = pickers.pick(
                "Model",
                pickers.models(),
                "pr_ov_model",
                help="A catalog model or one seen in the log; type a new model's name",
            )
        with cols[1]:
            provider = pickers.pick(
                "Provider (new models only)",
                pickers.providers(),
                "pr_ov_provider",
                help="A catalog model keeps its catalog provider",
            )
        day = cols[2].date_input("Effective from", value=queries.today(), key="pr_ov_from")
        unit = st.radio(
            "Rates are",
            list(UNITS),
            format_func=UNITS.__getitem__,
            horizontal=True,
            key="pr_ov_unit",
        )
        rate_cols = st.columns(len(RATE_LABELS))
        typed = {
            name: col.text_input(label, key=f"pr_ov_{name}", placeholder=hint)
            for col, (name, (label, hint)) in zip(rate_cols, RATE_LABELS.items(), strict=True)
        }
        note = st.text_input("Note", key="pr_ov_note", placeholder="e.g. negotiated, contract 2025")
        new_model = st.checkbox(
            "This model is not in the catalog (price a new model)", key="pr_ov_new"
        )
        if not st.form_submit_button("Save override", type="primary"):
            return

    def save() -> Any:
        per_token = unit == "token"
        rates = {
            n: inputs.rate(t, n, per_token, optional=n not in ("input", "output"))
            for n, t in typed.items()
        }
        return commands.upsert_override(actor, model, provider, day, rates, note, new_model)

    forms.write_now(f"Override saved for {model.strip()} from {day}.", save)


def delete_override(actor: Actor, table: Any) -> None:
    keys = list(zip(table["provider"], table["model"], table["effective_from"], strict=True))
    cols = st.columns([4, 1])
    chosen = cols[0].selectbox(
        "Override to delete",
        range(len(keys)),
        key="pr_del_pick",
        format_func=lambda i: f"{keys[i][1]} · {keys[i][0]} · from {keys[i][2]}",
    )
    provider, model, day = keys[chosen]
    name = f"{provider}|{model}|{day}"
    if forms.ask("pr", "delete", name, "Delete override", where=cols[1], key_override="pr_del"):
        forms.confirm(
            "pr",
            "delete",
            name,
            f"Delete the override of {model} ({provider}) from {day}? Calls from that day"
            " are priced by the catalog again.",
            f"Override of {model} from {day} deleted.",
            lambda: commands.delete_override(actor, provider, model, day),
        )


def import_section(actor: Actor, cat: Catalog) -> None:
    if not auth.may(actor, "engineer"):
        st.caption("Importing prices needs the admin role.")
        return
    uploaded = st.file_uploader(
        "LiteLLM model_prices_and_context_window.json",
        type=["json", "gz"],
        key="pr_import_file",
    )
    if uploaded is None:
        st.caption(
            "LiteLLM's price table is the community's de facto format. You see what"
            " would change before anything is written."
        )
        return
    content = uploaded.getvalue()
    day = st.date_input(
        "Imported prices take effect from", value=queries.today(), key="pr_import_from"
    )
    own = st.checkbox(
        "Only providers the catalog has (each entry is compared with its own provider's)",
        value=True,
        key="pr_import_own",
    )
    try:
        preview = queries.preview_import(content, cat, day, own_providers=own)
    except CostlineError as exc:
        st.error(str(exc))
        return
    import_summary(preview)
    if not auth.may(actor, "admin"):
        st.caption("Applying an import needs the admin role.")
        return
    apply_step(actor, preview, hashlib.sha256(content).hexdigest()[:12] + str(day))


def import_summary(preview: queries.ImportPreview) -> None:
    kinds = {c.kind for c in preview.changes}
    cols = st.columns(5)
    cols[0].metric("Models read", f"{len({r.model for r in preview.rows}):,}")
    cols[1].metric("Problems", f"{len(preview.problems):,}")
    for col, (label, kind) in zip(
        cols[2:],
        (("Changed models", "changed"), ("New models", "added"), ("Not in the file", "removed")),
        strict=True,
    ):
        col.metric(
            label,
            f"{len({(c.provider, c.model) for c in preview.changes if c.kind == kind}):,}",
        )
    if preview.skipped_providers:
        st.caption(
            f"Not shown: {sum(preview.skipped_providers.values()):,} entries of"
            f" {len(preview.skipped_providers):,} providers the catalog does not have"
            f" ({', '.join(list(preview.skipped_providers)[:8])}"
            f"{', …' if len(preview.skipped_providers) > 8 else ''})."
        )
    if preview.problems:
        with st.expander(f"Entries not imported ({len(preview.problems):,})"):
            st.dataframe(
                [{"entry": p.key, "reason": p.reason} for p in preview.problems],
                hide_index=True,
                width="stretch",
                key="pr_import_problems",
            )
    if not kinds:
        st.success("The file holds the prices already in force: nothing to change.")
        return
    shown = st.multiselect(
        "Show",
        ["changed", "added", "removed"],
        default=[k for k in ("changed", "added") if k in kinds],
        key="pr_import_kinds",
    )
    frame = frames.changes_frame(preview)
    st.dataframe(
        frame[frame["change"].isin(shown)], hide_index=True, width="stretch", key="pr_import_diff"
    )
    st.caption(
        "Rates in USD per 1M tokens. 'removed' models are missing from the file or among"
        " the entries not imported: applying never deletes a price."
    )


def apply_step(actor: Actor, preview: queries.ImportPreview, token: str) -> None:
    add_new = False
    if preview.new_models:
        add_new = st.checkbox(
            f"Also add {_n(len(preview.new_models), 'model')} the catalog does not know",
            key="pr_import_add_new",
        )
    count = len(preview.overrides) + (len(preview.new_models) if add_new else 0)
    if preview.not_applicable:
        st.caption(
            f"{preview.not_applicable:,} changes (context tiers, batch rates, context"
            " windows) cannot be expressed as overrides and are not applied."
        )
    if count == 0:
        st.info("No rate changes to apply.")
        return
    day = (preview.overrides or preview.new_models)[0].effective_from
    if st.session_state.get("pr_import_pending") != token:
        if st.button(f"Apply {_n(count, 'price override')}…", key="pr_import_apply"):
            st.session_state["pr_import_pending"] = token
            st.rerun()
        return
    st.warning(
        f"Write {_n(count, 'price override')} effective from {day}? Each one is audited."
        " " + RELOAD_NOTE
    )
    cols = st.columns([1, 1, 4])
    if cols[1].button("Cancel", key="pr_import_cancel"):
        del st.session_state["pr_import_pending"]
        st.rerun()
    if cols[0].button("Confirm", type="primary", key="pr_import_confirm"):
        del st.session_state["pr_import_pending"]
        try:
            written, errors = commands.apply_import(actor, preview, add_new)
        except CostlineError as exc:
            st.error(str(exc))
            return
        for error in errors:
            st.error(error)
        if not errors:
            done = f"Imported {_n(written, 'price override')} from {day}."
            st.session_state[forms.FLASH_KEY] = done
            st.rerun()
        st.success(f"Imported {_n(written, 'price override')} from {day}.")


def unpriced_section(cat: Catalog) -> None:
    table = queries.unpriced(usage.home(), usage.version())
    if table.empty:
        st.success("Every call in the usage log was priced.")
        return
    table = table.assign(priced_now=[cat.has(m) for m in table["model"]])
    st.caption(
        "Calls to these models were logged as unpriced (never as $0). Add an override"
        " (admin) to price future calls; logged calls keep their flag."
    )
    st.metric("Unpriced calls", f"{int(table['calls'].sum()):,}")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="pr_unpriced",
        column_config={
            "last_seen": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm"),
            "priced_now": st.column_config.CheckboxColumn("priced now"),
        },
    )


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


main()
