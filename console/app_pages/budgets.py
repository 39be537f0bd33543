"""Budgets: where each budget stands in its window, an editor for every field (engineer+), and
a what-if replay of past calls under proposed budgets and policies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import streamlit as st

from console import auth, data, forms
from console import budgets_data as bd
from console import routing_data as rd
from console.sidebar import current_view
from console.view import local_midnight, today_in
from core.budgets import scope_text
from core.control import BUDGET_ACTIONS, BUDGET_SCOPES, PERIODS, Actor, Budget
from core.errors import CostlineError

NEW = "__new__"
CONFIRM = "bud_confirm"  # (action, budget id) waiting for confirmation


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
    live, edit, whatif = st.tabs(["Utilisation", "Edit budgets", "What-if replay"])
    with live:
        utilisation(actor, engineer)
    with edit:
        if engineer:
            editor(actor)
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
    rows = bd.utilisation(
        data.home(), data.version(), plane.version(), budgets, bd.utilisation_now()
    )
    for u in rows:
        budget_card(actor, engineer, u)
    st.dataframe(bd.status_frame(rows), hide_index=True, width="stretch")
    st.caption(
        "Projected: the spend at the window's end at the rate so far this window, "
        "no higher than the cap of a blocking or degrading budget (soft x limit), "
        "past which calls are refused; 'run rate' is the uncapped figure."
    )


def budget_card(actor: Actor, engineer: bool, u: bd.Utilisation) -> None:
    b = u.budget
    with st.container(border=True):
        head, figures, act = st.columns([4, 2, 1])
        off = "" if b.enabled else " · **disabled**"
        head.markdown(f"**{b.name}** · {scope_text(b)} · {b.action} · window {u.label}{off}")
        head.progress(min(1.0, u.utilisation), text=u.text())
        projected = (
            bd.usd(u.projected_spend_picousd)
            if b.limit_picousd is not None
            else f"{u.projected_tokens:,} tokens"
        )
        share = (
            f"capped at {b.soft_multiplier:g}x the limit"
            if u.capped
            else f"{u.projected_share:.0%} of limit"
        )
        figures.metric("Projected at window end", projected, share, delta_color="off")
        if u.capped:
            figures.caption(
                f"The run rate would reach {bd.usd(u.projected_picousd)}; calls "
                f"past {bd.usd(u.cap_picousd or 0)} are blocked."
            )
        alerted = ", ".join(f"{t}%" for t in u.alerts) or "none"
        figures.caption(f"Alerts this window: {alerted}")
        if engineer:
            act.button(
                "Reset now",
                key=f"bud_reset_{b.id}",
                on_click=_ask,
                args=("reset", b.id),
                help="Start a fresh window now (audited)",
            )
        if engineer and st.session_state.get(CONFIRM) == ("reset", b.id):
            confirm(
                "reset",
                b,
                f"Reset '{b.name}' now? Its live counter starts again from"
                " zero; the calls already made stay in the usage log.",
                lambda: bd.reset_budget(actor, b.id),
                f"Budget '{b.name}' was reset.",
            )


def _ask(action: str, budget_id: str) -> None:
    st.session_state[CONFIRM] = (action, budget_id)


def _cancel() -> None:
    st.session_state.pop(CONFIRM, None)


def confirm(action: str, b: Budget, question: str, write: Any, done: str) -> None:
    st.warning(question)
    yes, no = st.columns(2)
    form = f"bud_{action}_{b.id}"
    yes.button(
        f"Confirm {action}",
        key=f"bud_{action}_yes_{b.id}",
        type="primary",
        on_click=_confirmed,
        args=(form, done, write),
    )
    no.button("Cancel", key=f"bud_{action}_no_{b.id}", on_click=_cancel)
    forms.form_error(form, ())


def _confirmed(form: str, done: str, write: Any) -> None:
    _cancel()
    forms.submit(form, done, write)


# ---- editor --------------------------------------------------------------------------------


def editor(actor: Actor) -> None:
    budgets = {b.id: b for b in auth.plane().budgets()}
    if st.session_state.get("bud_pick") not in (NEW, *budgets):
        st.session_state["bud_pick"] = NEW
    choice = st.selectbox(
        "Budget",
        [NEW, *budgets],
        key="bud_pick",
        format_func=lambda i: "New budget" if i == NEW else f"{budgets[i].name} ({i})",
    )
    budget = budgets.get(choice)
    slug = "new" if budget is None else budget.id
    prefix, form = f"bud_{slug}", f"bud_form_{slug}"
    for field, value in bd.form_values(budget).items():
        st.session_state.setdefault(f"{prefix}_{field}", value)
    with st.form(form):
        forms.form_error(form, bd.FIELDS)
        budget_fields(prefix, form, budget is not None)
        st.form_submit_button(
            "Save budget",
            type="primary",
            on_click=forms.submit,
            args=(form, "Budget saved.", lambda: _save(actor, prefix, budget)),
        )
    if budget is not None:
        st.button(
            "Delete budget", key=f"bud_delete_{slug}", on_click=_ask, args=("delete", budget.id)
        )
        if st.session_state.get(CONFIRM) == ("delete", budget.id):
            confirm(
                "delete",
                budget,
                f"Delete '{budget.name}'? Routers stop enforcing it.",
                lambda: bd.delete_budget(actor, budget.id),
                f"Budget '{budget.name}' deleted.",
            )


def budget_fields(prefix: str, form: str, existing: bool) -> None:
    def key(field: str) -> str:
        return f"{prefix}_{field}"

    left, right = st.columns(2)
    with left:
        st.text_input(
            "Id",
            key=key("id"),
            disabled=existing,
            help="Letters, digits and ._:@/-; fixed once created",
        )
        forms.field_error(form, "id")
        st.text_input("Name", key=key("name"))
        forms.field_error(form, "name")
        st.selectbox("Scope", BUDGET_SCOPES, key=key("scope"))
        forms.field_error(form, "scope")
        st.text_input(
            "Scope value",
            key=key("scope_value"),
            help="The org, project, user, task, model or provider; empty for global",
        )
        forms.field_error(form, "scope_value")
        st.selectbox(
            "Period",
            PERIODS,
            key=key("period"),
            help="Calendar day, ISO week or calendar month in the time zone",
        )
        forms.field_error(form, "period")
        st.text_input(
            "Time zone (IANA)", key=key("timezone"), help="Empty: the console's time zone setting"
        )
        forms.field_error(form, "timezone")
        st.checkbox("Enabled", key=key("enabled"))
    with right:
        st.text_input("USD limit", key=key("limit_usd"), help="Empty: no USD limit")
        forms.field_error(form, "limit_usd")
        st.text_input("Token limit", key=key("limit_tokens"), help="Empty: no token limit")
        forms.field_error(form, "limit_tokens")
        st.number_input(
            "Soft multiplier",
            key=key("soft_multiplier"),
            step=0.1,
            help="Critical calls may run to this multiple of the limit",
        )
        forms.field_error(form, "soft_multiplier")
        st.text_input(
            "Alert thresholds (%)",
            key=key("thresholds"),
            help="Increasing percentages, e.g. 50, 75, 90, 100",
        )
        forms.field_error(form, "thresholds")
        st.selectbox(
            "Action at the limit",
            BUDGET_ACTIONS,
            key=key("action"),
            help="alert: track only; degrade: non-critical calls go to a cheaper model;"
            " block: refuse",
        )
        forms.field_error(form, "action")
        st.text_input(
            "Degrade to (model)", key=key("degrade_to"), help="Empty: the task policy's degrade_to"
        )
        forms.field_error(form, "degrade_to")
        st.text_input("Webhook URL (Slack-compatible)", key=key("webhook_url"))
        forms.field_error(form, "webhook_url")


def _save(actor: Actor, prefix: str, budget: Budget | None) -> None:
    saved = bd.save_budget(actor, forms.values(prefix, bd.FIELDS), new=budget is None)
    if budget is None:  # the new budget's form starts empty again; edit what was made
        for field in bd.FIELDS:
            st.session_state.pop(f"{prefix}_{field}", None)
        st.session_state["bud_pick"] = saved.id
    else:  # show what was stored (a time zone filled in, money normalised)
        for field, value in bd.form_values(saved).items():
            st.session_state[f"{prefix}_{field}"] = value


# ---- what-if replay ------------------------------------------------------------------------


def replay_section() -> None:
    st.caption(
        "Replays the logged calls of a past period through the real budget and routing"
        " code under the budgets below (edit, add or delete rows; nothing is saved), and"
        " compares with what happened. Calls keep the model they used unless you route"
        " them by the policies."
    )
    view = current_view()
    today = today_in(view.scope.tz)
    picked = st.date_input(
        "Period",
        value=(today - timedelta(days=7), today - timedelta(days=1)),
        max_value=today,
        key="bud_rp_dates",
    )
    days = [d for d in (picked if isinstance(picked, tuple | list) else (picked,)) if d]
    plane = auth.plane()
    proposal = st.data_editor(
        bd.proposal_frame(plane.budgets()),
        num_rows="dynamic",
        hide_index=True,
        key="bud_rp_budgets",
        width="stretch",
        column_config=_proposal_columns(),
    )
    routed = st.checkbox("Route each task by these policies", key="bud_rp_route")
    policies = None
    if routed:
        policies = st.data_editor(
            rd.policy_proposal_frame(plane.policies()),
            hide_index=True,
            num_rows="dynamic",
            key="bud_rp_policies",
            width="stretch",
        )
    if st.button("Run replay", type="primary", key="bud_rp_run", disabled=not days):
        from console.pricing_data import catalog

        start = local_midnight(days[0], view.scope.tz)
        end = local_midnight(days[-1] + timedelta(days=1), view.scope.tz)
        try:
            budgets = bd.budgets_from_frame(proposal)
            pols = rd.policies_from_frame(policies, catalog()) if policies is not None else []
            with st.spinner("Replaying the logged calls…"):
                st.session_state["bud_rp_result"] = bd.run_replay(start, end, budgets, pols)
        except CostlineError as exc:
            st.error(str(exc), icon=":material/error:")
    result = st.session_state.get("bud_rp_result")
    if result is not None:
        replay_result(result)


def _proposal_columns() -> dict[str, Any]:
    return {
        "scope": st.column_config.SelectboxColumn(options=list(BUDGET_SCOPES), required=True),
        "period": st.column_config.SelectboxColumn(options=list(PERIODS), required=True),
        "action": st.column_config.SelectboxColumn(options=list(BUDGET_ACTIONS), required=True),
        "limit_usd": st.column_config.TextColumn("limit (USD)"),
        "soft_multiplier": st.column_config.NumberColumn(min_value=1.0, step=0.1),
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
        bd.usd_amount(r.cost_replayed),
        f"{bd.usd_amount(r.cost_difference)} vs {bd.usd_amount(r.cost_actual)}",
        delta_color="inverse",
    )
    st.dataframe(bd.compare_frame(r), hide_index=True)
    left, right = st.columns(2)
    with left:
        st.markdown("**Users hit**")
        st.dataframe(bd.group_frame(r.by_user, "user"), hide_index=True, width="stretch")
    with right:
        st.markdown("**Projects hit**")
        st.dataframe(bd.group_frame(r.by_project, "project"), hide_index=True, width="stretch")
    changed = bd.changed_calls(r.details)
    st.markdown(f"**Calls whose outcome changed** ({len(changed):,} shown)")
    st.dataframe(changed, hide_index=True, width="stretch")


main()
