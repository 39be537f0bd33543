"""Budgets: where each budget stands in its window, an editor for every field (engineer+), and
a what-if replay of past calls under proposed budgets and policies."""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Any

import streamlit as st

from console import auth, chrome, editor, forms, pickers
from console.commands import budgets as commands
from console.editor import Editing, Entity
from console.frames import budgets as frames
from console.frames.display import readable
from console.frames.routing import PROPOSAL_POLICY_COLUMNS, policy_proposal_frame
from console.inputs import budgets as inputs
from console.inputs.routing import POLICY_LABELS, policies_from_frame
from console.queries import budgets as queries
from console.queries import usage
from console.queries.budgets import Utilisation
from console.queries.pricing import catalog
from console.selection import local_midnight, today_in
from console.sidebar import current_selection
from core import reports
from core.budgets import scope_text
from core.control import BUDGET_ACTIONS, BUDGET_SCOPES, PERIODS, Actor, Budget, validate_budget
from core.errors import CostlineError


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("Budgets")
    st.caption(
        "Limits are in USD. Spend comes from the usage log, so it counts the calls of"
        " every router process."
    )
    forms.flash()
    engineer = auth.may(actor, "engineer")
    live, edit, whatif = st.tabs(
        ["Utilisation", "Edit budgets", "What-if replay"], **chrome.kept_tabs("bud_tab")
    )
    with live:
        utilisation(actor, engineer)
    with edit:
        if engineer:
            editor_section(actor)
        else:
            st.caption("Editing budgets needs the engineer role.")
    with whatif:
        if engineer:
            replay_section()
        else:
            st.caption("The what-if replay needs the engineer role.")


# ---- live utilisation ----------------------------------------------------------------------


@st.fragment(run_every=timedelta(seconds=30))
def utilisation(actor: Actor, engineer: bool) -> None:
    forms.flash()  # a reset confirmed here reruns only this fragment
    plane = auth.plane()
    budgets = tuple(plane.budgets())
    if not budgets:
        st.info("No budgets yet." + (" Add one on the Edit budgets tab." if engineer else ""))
        return
    rows = queries.utilisation(
        usage.home(), usage.version(), plane.version(), budgets, queries.utilisation_now()
    )
    for u in rows:
        budget_card(actor, engineer, u)
    chrome.table(frames.status_frame(rows), width="stretch")
    st.caption(
        f"{reports.METHOD} 'Run rate' is the uncapped figure. The Forecast page's outlook"
        " and the Playground's headroom use the same projection."
    )


def budget_card(actor: Actor, engineer: bool, u: Utilisation) -> None:
    b = u.budget
    with st.container(border=True):
        head, figures, act = st.columns([4, 2, 1])
        off = "" if b.enabled else " · **disabled**"
        head.markdown(f"**{b.name}** · {scope_text(b)} · {b.action} · window {u.label}{off}")
        head.progress(min(1.0, u.utilisation), text=frames.utilisation_text(u))
        head.markdown(
            f"{frames.severity_markdown(u)} · runs out: **{frames.runs_out(u)}**",
            help="Amber from 80 % of the limit projected at the window's end, red from 100 %",
        )
        projected = (
            frames.usd(u.projected_spend_picousd)
            if b.limit_picousd is not None
            else f"{u.projected_tokens:,} tokens"
        )
        share = (
            f"capped at {b.soft_multiplier:g}x the limit"
            if u.capped
            else f"{reports.percent_text(u.projected_percent)} of limit"
        )
        figures.metric("Projected at window end", projected, share, delta_color="off")
        if u.capped:
            figures.caption(
                f"The run rate would reach {frames.usd(u.projected_picousd)}; calls "
                f"past {frames.usd(u.cap_picousd or 0)} are blocked."
            )
        alerted = ", ".join(f"{t}%" for t in u.alerts) or "none"
        figures.caption(f"Alerts this window: {alerted}")
        if engineer and forms.ask(
            "bud", "reset", b.id, "Reset now", where=act, help="Start a fresh window now (audited)"
        ):
            forms.confirm(
                "bud",
                "reset",
                b.id,
                f"Reset '{b.name}' now? Its live counter starts again from"
                " zero; the calls already made stay in the usage log.",
                f"Budget '{b.name}' was reset.",
                lambda: commands.reset_budget(actor, b.id),
            )


# ---- editor --------------------------------------------------------------------------------


def budget_entity(actor: Actor) -> Entity[Budget]:
    return Entity(
        prefix="bud",
        label="Budget",
        new_label="New budget",
        fields=inputs.FIELDS,
        values=inputs.form_values,
        name=lambda b: b.id,
        title=lambda b: f"{b.name} ({b.id})",
        save=lambda v, new: commands.save_budget(actor, v, new=new),
        delete=lambda budget_id: commands.delete_budget(actor, budget_id),
        saved="Budget saved.",
        save_label="Save budget",
        delete_label="Delete budget",
        labels=inputs.LABELS,
        check=lambda v: validate_budget(inputs.parse_budget(v), model_exists=catalog().has),
        filler=inputs.FILLER,
    )


def editor_section(actor: Actor) -> None:
    edit = editor.pick(budget_entity(actor), auth.plane().budgets())
    with edit.form():
        budget_fields(edit)
    if edit.current is not None:
        edit.delete_button(
            f"Delete '{edit.current.name}'? Routers stop enforcing it.",
            f"Budget '{edit.current.name}' deleted.",
        )


def budget_fields(edit: Editing[Budget]) -> None:
    key, error, existing = edit.key, edit.error, edit.current is not None

    left, right = st.columns(2)
    with left:
        st.text_input(
            "Id",
            key=key("id"),
            disabled=existing,
            help="Letters, digits and ._:@/-; fixed once created",
        )
        error("id")
        st.text_input("Name", key=key("name"))
        error("name")
        st.selectbox("Scope", BUDGET_SCOPES, key=key("scope"))
        error("scope")
        pickers.pick(
            "Scope value",
            pickers.scope_values(st.session_state.get(key("scope"))),
            key("scope_value"),
            help="The org, project, user, task, model or provider (values logged for the"
            " scope shown; type a new one if it has not called yet); empty for global",
        )
        error("scope_value")
        never_logged(st.session_state.get(key("scope")), st.session_state.get(key("scope_value")))
        st.selectbox(
            "Period",
            PERIODS,
            key=key("period"),
            help="Calendar day, ISO week or calendar month in the time zone",
        )
        error("period")
        st.text_input(
            "Time zone (IANA)", key=key("timezone"), help="Empty: the console's time zone setting"
        )
        error("timezone")
        st.checkbox("Enabled", key=key("enabled"))
    with right:
        st.text_input("USD limit", key=key("limit_usd"), help="Empty: no USD limit")
        error("limit_usd")
        st.text_input("Token limit", key=key("limit_tokens"), help="Empty: no token limit")
        error("limit_tokens")
        st.number_input(
            "Soft multiplier",
            key=key("soft_multiplier"),
            step=0.1,
            help="Critical calls may run to this multiple of the limit",
        )
        error("soft_multiplier")
        st.text_input(
            "Alert thresholds (%)",
            key=key("thresholds"),
            help="Increasing percentages, e.g. 50, 75, 90, 100",
        )
        error("thresholds")
        st.selectbox(
            "Action at the limit",
            BUDGET_ACTIONS,
            key=key("action"),
            help="alert: track only; degrade: non-critical calls go to a cheaper model;"
            " block: refuse",
        )
        error("action")
        pickers.pick(
            "Degrade to (model)",
            pickers.models(),
            key("degrade_to"),
            help="Empty: the task policy's degrade_to",
        )
        error("degrade_to")
        st.text_input("Webhook URL (Slack-compatible)", key=key("webhook_url"))
        error("webhook_url")


def never_logged(scope: str | None, value: str | None) -> None:
    """Warn when a scope value matches nothing ever logged (a typo such as 'suport-bot')."""
    value = (value or "").strip()
    if not value or scope in (None, "global"):
        return
    options = usage.filter_options(usage.home(), usage.version())
    seen = options.get(str(scope), [])
    if scope == "model":
        seen = [*seen, *catalog().models()]
    folded = scope in ("provider", "model")  # matched in any letter case, as at admission
    if value in seen or (folded and value.lower() in map(str.lower, seen)):
        return
    close = difflib.get_close_matches(value, seen, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    st.warning(
        f"No call was ever logged with {scope} {value!r}: the budget would match nothing"
        f" until one is.{hint}",
        icon=":material/search_off:",
    )


# ---- what-if replay ------------------------------------------------------------------------


def replay_section() -> None:
    st.caption(
        "Replays the logged calls of a past period through the real budget and routing"
        " code under the budgets below (edit, add or delete rows; nothing is saved), and"
        " compares with what happened. Calls keep the model they used unless you route"
        " them by the policies."
    )
    scope = current_selection().scope
    today = today_in(scope.tz)
    picked = st.date_input(
        "Period",
        value=(today - timedelta(days=7), today - timedelta(days=1)),
        max_value=today,
        key="bud_rp_dates",
    )
    days = [d for d in (picked if isinstance(picked, tuple | list) else (picked,)) if d]
    plane = auth.plane()
    today_frame = frames.proposal_frame(plane.budgets())
    proposal = st.data_editor(
        today_frame,
        num_rows="dynamic",
        hide_index=True,
        key="bud_rp_budgets",
        width="stretch",
        column_config=_proposal_columns(),
    )
    edited_cells(today_frame, st.session_state.get("bud_rp_budgets"))
    routed = st.checkbox("Route each task by these policies", key="bud_rp_route")
    policies = None
    if routed:
        policies = st.data_editor(
            policy_proposal_frame(plane.policies()),
            hide_index=True,
            num_rows="dynamic",
            key="bud_rp_policies",
            width="stretch",
            column_config=_policy_columns(),
        )
    if st.button("Run replay", type="primary", key="bud_rp_run", disabled=not days):
        start = local_midnight(days[0], scope.tz)
        end = local_midnight(days[-1] + timedelta(days=1), scope.tz)
        try:
            cat = catalog()
            budgets = inputs.budgets_from_frame(proposal, cat)
            pols = policies_from_frame(policies, cat) if policies is not None else []
            with st.spinner("Replaying the logged calls…"):
                st.session_state["bud_rp_result"] = queries.run_replay(start, end, budgets, pols)
                st.session_state["bud_rp_baseline"] = queries.run_baseline(start, end, routed)
        except CostlineError as exc:
            st.error(str(exc), icon=":material/error:")
    result = st.session_state.get("bud_rp_result")
    if result is not None:
        baseline = st.session_state.get("bud_rp_baseline")
        if baseline is not None:
            st.info(frames.baseline_text(baseline), icon=":material/compare_arrows:")
        replay_result(result)


def edited_cells(today: Any, edits: Any) -> None:
    """The rows the proposal changes, edited cells highlighted, beside today's budgets."""
    changes, styles = frames.proposal_changes(today, edits)
    if changes.empty:
        return
    st.caption("Your changes (edited cells highlighted; nothing is saved):")
    styled = changes.style.apply(lambda _: styles, axis=None)
    st.dataframe(
        styled,
        hide_index=True,
        width="stretch",
        key="bud_rp_changes",
        column_config={
            c: st.column_config.Column(
                inputs.LABELS.get(c, c.capitalize()), pinned=c in frames.PINNED
            )
            for c in changes.columns
        },
    )


def _proposal_columns() -> dict[str, Any]:
    """The proposal table's columns as the budget form labels them; id and the action at
    the limit pinned on the left, so they stay in view while the table scrolls sideways."""
    label, pin = inputs.LABELS.get, frames.PINNED
    config: dict[str, Any] = {
        c: st.column_config.Column(label(c, c), pinned=c in pin) for c in frames.PROPOSAL_COLUMNS
    }
    config.update(
        scope=st.column_config.SelectboxColumn(
            label("scope"), options=list(BUDGET_SCOPES), required=True
        ),
        period=st.column_config.SelectboxColumn(
            label("period"), options=list(PERIODS), required=True
        ),
        action=st.column_config.SelectboxColumn(
            label("action"), options=list(BUDGET_ACTIONS), required=True, pinned=True
        ),
        limit_usd=st.column_config.TextColumn(label("limit_usd")),
        soft_multiplier=st.column_config.NumberColumn(
            label("soft_multiplier"), min_value=1.0, step=0.1
        ),
    )
    return config


def _policy_columns() -> dict[str, Any]:
    """The replay's policy table as the policy form labels it, the task pinned."""
    labels = {**POLICY_LABELS, "fallbacks": "Fallbacks (in order, comma-separated)"}
    return {
        c: st.column_config.Column(labels.get(c, c), pinned=c == "task")
        for c in PROPOSAL_POLICY_COLUMNS
    }


def replay_result(r: Any) -> None:
    if r.note:
        st.info(r.note)
    st.caption(
        f"{r.calls:,} calls in the period, {r.replayed:,} replayed in {r.seconds:.1f} s"
        " (cache hits, sampling skips and failed calls keep their logged outcome)."
    )
    cols = st.columns(4)
    cols[0].metric(
        "Degraded",
        f"{r.degraded:,}",
        f"{r.degraded - r.degraded_actual:+,}",
        delta_color="off",
        help=f"{r.degraded_actual:,} degraded in the log",
    )
    cols[1].metric(
        "Blocked",
        f"{r.blocked:,}",
        f"{r.blocked - r.blocked_actual:+,}",
        delta_color="off",
        help=f"{r.blocked_actual:,} blocked in the log",
    )
    cols[2].metric(
        "Rate limited",
        f"{r.rate_limited:,}",
        f"{r.rate_limited - r.rate_limited_actual:+,}",
        delta_color="off",
    )
    cols[3].metric(
        "Cost with the proposal",
        frames.usd_amount(r.cost_replayed),
        f"{frames.usd_amount(r.cost_difference)} vs {frames.usd_amount(r.cost_actual)}",
        delta_color="inverse",
    )
    st.dataframe(frames.compare_frame(r), hide_index=True)
    left, right = st.columns(2)
    with left:
        st.markdown("**Users hit**")
        chrome.table(frames.group_frame(r.by_user, "user"), width="stretch")
    with right:
        st.markdown("**Projects hit**")
        chrome.table(frames.group_frame(r.by_project, "project"), width="stretch")
    changed = frames.changed_calls(r.details)
    st.markdown(f"**Calls whose outcome changed** ({len(changed):,} shown)")
    tz = current_selection().scope.tz
    st.dataframe(readable(changed, tz), hide_index=True, width="stretch")


main()
