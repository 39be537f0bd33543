"""Routing & Sampling: task policies, sampling strategies with what they saved, cache TTLs,
rate limits (engineer+ edits; everyone reads) and provider health from the usage log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from console import auth, data, forms
from console import routing_data as rd
from console.sidebar import current_view
from console.view import Money, View
from core.control import (
    RATE_ALGORITHMS,
    RATE_METRICS,
    RATE_SCOPES,
    ROUTING_STRATEGIES,
    SAMPLING_STRATEGIES,
    Actor,
)
from core.control._models import DEFAULT_CACHE_TTL_S
from core.types import CRITICALITIES

NEW = "__new__"


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    view = current_view()
    st.title("Routing & Sampling")
    forms.flash()
    engineer = auth.may(actor, "engineer")
    policies, sampling, caching, health = st.tabs(
        ["Task policies", "Sampling", "Cache & rate limits", "Provider health"]
    )
    with policies:
        policies_tab(actor, engineer)
    with sampling:
        sampling_tab(actor, engineer, view)
    with caching:
        cache_tab(actor, engineer)
        rate_limits_tab(actor, engineer)
    with health:
        health_tab(view)


def pick(label: str, key: str, names: Sequence[str], new_label: str) -> str:
    """Which entry to edit: NEW or one of ``names`` (a vanished one falls back to NEW)."""
    if st.session_state.get(key) not in (NEW, *names):
        st.session_state[key] = NEW
    chosen: str = st.selectbox(
        label, [NEW, *names], key=key, format_func=lambda n: new_label if n == NEW else n
    )
    return chosen


def prefill(prefix: str, values: dict[str, Any]) -> None:
    for field, value in values.items():
        st.session_state.setdefault(f"{prefix}_{field}", value)


def save_button(form: str, done: str, write: Callable[[], Any]) -> None:
    st.form_submit_button("Save", type="primary", on_click=forms.submit, args=(form, done, write))


def delete_button(key: str, form: str, done: str, write: Callable[[], Any]) -> None:
    st.button("Delete", key=key, on_click=forms.submit, args=(form, done, write))


def after_save(prefix: str, pick_key: str, name: str, new: bool) -> None:
    """A new entry's form starts empty again, and the entry made is selected."""
    if new:
        for key in [k for k in st.session_state if str(k).startswith(prefix + "_")]:
            del st.session_state[key]
        st.session_state[pick_key] = name


def read_only(engineer: bool, what: str) -> bool:
    if not engineer:
        st.caption(f"Editing {what} needs the engineer role.")
    return not engineer


# ---- task policies -------------------------------------------------------------------------


def policies_tab(actor: Actor, engineer: bool) -> None:
    policies = auth.plane().policies()
    if policies:
        st.dataframe(rd.policies_frame(policies), hide_index=True, width="stretch")
    else:
        st.info("No task policies: requests must name their model.")
    if read_only(engineer, "policies"):
        return
    by_task = {p.task: p for p in policies}
    chosen = pick("Policy", "rt_pol_pick", list(by_task), "New policy")
    policy = by_task.get(chosen)
    slug = "new" if policy is None else chosen
    prefix, form = f"rt_pol_{slug}", f"rt_pol_form_{slug}"
    prefill(prefix, rd.policy_values(policy))

    def key(field: str) -> str:
        return f"{prefix}_{field}"

    def save() -> None:
        saved = rd.save_policy(actor, forms.values(prefix, VALUE_KEYS), new=policy is None)
        after_save(prefix, "rt_pol_pick", saved.task, policy is None)

    with st.form(form):
        forms.form_error(form, rd.POLICY_FIELDS)
        left, right = st.columns(2)
        with left:
            st.text_input("Task", key=key("task"), disabled=policy is not None)
            forms.field_error(form, "task")
            st.text_input(
                "Primary model",
                key=key("primary_model"),
                help="A model of the price catalog (see Pricing)",
            )
            forms.field_error(form, "primary_model")
            st.text_input("Fallbacks (comma-separated)", key=key("fallbacks"))
            forms.field_error(form, "fallbacks")
            st.text_input(
                "Degrade to", key=key("degrade_to"), help="The cheaper model over-budget calls use"
            )
            forms.field_error(form, "degrade_to")
            st.checkbox(
                "Personalised (never share cached answers across users)", key=key("personalised")
            )
        with right:
            st.selectbox("Strategy", ROUTING_STRATEGIES, key=key("strategy"))
            forms.field_error(form, "strategy", "weights")
            st.selectbox("Criticality", CRITICALITIES, key=key("criticality"))
            forms.field_error(form, "criticality")
            st.text_input(
                "Cache TTL (s)",
                key=key("cache_ttl_s"),
                help="Empty: the task's cache setting; 0: never cache",
            )
            forms.field_error(form, "cache_ttl_s")
            st.text_input("Max tokens", key=key("max_tokens"), help="Empty: no limit")
            forms.field_error(form, "max_tokens")
            w = st.columns(3)
            w[0].number_input("Cost weight", min_value=0.0, step=0.1, key=key("w_cost"))
            w[1].number_input("Latency weight", min_value=0.0, step=0.1, key=key("w_latency"))
            w[2].number_input("Quality weight", min_value=0.0, step=0.1, key=key("w_quality"))
        save_button(form, "Policy saved.", save)
    if policy is not None:
        from console.pricing_data import catalog

        for warning in rd.provider_warnings(policy, catalog()):
            st.warning(warning)
        delete_button(
            f"rt_pol_delete_{slug}",
            form,
            f"Policy for {chosen} deleted.",
            lambda: rd.delete_policy(actor, chosen),
        )


VALUE_KEYS = (
    "task",
    "primary_model",
    "fallbacks",
    "degrade_to",
    "strategy",
    "criticality",
    "cache_ttl_s",
    "personalised",
    "max_tokens",
    "w_cost",
    "w_latency",
    "w_quality",
)


# ---- sampling strategies -------------------------------------------------------------------


def sampling_tab(actor: Actor, engineer: bool, view: View) -> None:
    strategies = auth.plane().sampling()
    savings = rd.sampling_savings(data.home(), data.version(), view.scope.start, view.scope.end)
    st.caption(f"Calls and savings in the selected range ({view.describe()}).")
    if strategies:
        st.dataframe(
            sampling_frame(strategies, savings, view.money), hide_index=True, width="stretch"
        )
    else:
        st.info("No sampling strategies: every event calls the model.")
    if read_only(engineer, "sampling strategies"):
        return
    by_key = {s.key: s for s in strategies}
    chosen = pick("Strategy for agent/task", "rt_smp_pick", list(by_key), "New strategy")
    current = by_key.get(chosen)
    slug = "new" if current is None else chosen
    prefix, form = f"rt_smp_{slug}", f"rt_smp_form_{slug}"
    prefill(prefix, rd.sampling_values(current))

    def key(field: str) -> str:
        return f"{prefix}_{field}"

    strategy = st.selectbox("Strategy", SAMPLING_STRATEGIES, key=key("strategy"))
    fields = (
        "key",
        "strategy",
        "min_interval_s",
        "batch_size",
        "batch_timeout_s",
        "enabled",
        *(f"p_{p}" for p in rd.PARAM_LABELS),
    )

    def save() -> None:
        saved = rd.save_sampling(actor, forms.values(prefix, fields), new=current is None)
        after_save(prefix, "rt_smp_pick", saved.key, current is None)

    with st.form(form):
        forms.form_error(form, rd.SAMPLING_FIELDS)
        st.text_input("Agent / task key", key=key("key"), disabled=current is not None)
        forms.field_error(form, "key")
        params = rd.STRATEGY_PARAMS.get(strategy, ())
        if params:
            cols = st.columns(len(params))
            for col, name in zip(cols, params, strict=True):
                with col:
                    st.text_input(
                        rd.PARAM_LABELS[name],
                        key=key(f"p_{name}"),
                        help=rd.PARAM_HELP.get(strategy),
                    )
                    forms.field_error(form, f"params.{name}")
        forms.field_error(form, "strategy")
        st.markdown("**Event thresholds**")
        event = st.columns(3)
        with event[0]:
            st.number_input(
                "Min interval (s)",
                min_value=0.0,
                key=key("min_interval_s"),
                help="HIGH/MEDIUM events: at least this long between real calls",
            )
            forms.field_error(form, "min_interval_s")
        with event[1]:
            st.number_input(
                "Batch size",
                min_value=0,
                step=1,
                key=key("batch_size"),
                help="LOW events: one call per this many",
            )
            forms.field_error(form, "batch_size")
        with event[2]:
            st.number_input("Batch timeout (s)", min_value=0.0, key=key("batch_timeout_s"))
            forms.field_error(form, "batch_timeout_s")
        st.checkbox("Enabled", key=key("enabled"))
        save_button(form, "Sampling strategy saved.", save)
    if current is not None:
        delete_button(
            f"rt_smp_delete_{slug}",
            form,
            f"Strategy for {chosen} deleted.",
            lambda: rd.delete_sampling(actor, chosen),
        )


def sampling_frame(strategies: Sequence[Any], savings: pd.DataFrame, money: Money) -> pd.DataFrame:
    by_key = {str(r["key"]): r for r in savings.to_dict("records")}
    rows = []
    for s in strategies:
        got = by_key.get(s.key, {})
        rows.append(
            {
                "agent / task": s.key,
                "strategy": s.strategy,
                "parameters": rd.describe_params(s),
                "min interval (s)": s.min_interval_s,
                "batch": f"{s.batch_size} / {s.batch_timeout_s:g} s",
                "enabled": s.enabled,
                "events": int(got.get("events", 0)),
                "AI calls": int(got.get("calls", 0)),
                "calls saved": int(got.get("skipped", 0)),
                "saved": money.fmt(int(got.get("saved_picousd", 0))),
            }
        )
    return pd.DataFrame(rows)


# ---- cache settings and rate limits --------------------------------------------------------


def cache_tab(actor: Actor, engineer: bool) -> None:
    st.subheader("Response cache per task")
    settings = auth.plane().cache_settings()
    if settings:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "task": c.task,
                        "TTL (s)": c.ttl_s,
                        "enabled": c.enabled,
                        "semantic threshold": c.semantic_threshold,
                    }
                    for c in settings
                ]
            ),
            hide_index=True,
        )
    else:
        st.caption(f"No settings: built-in TTLs per task (else {DEFAULT_CACHE_TTL_S:,} s).")
    if read_only(engineer, "cache settings"):
        return
    by_task = {c.task: c for c in settings}
    chosen = pick("Cache setting", "rt_cache_pick", list(by_task), "New cache setting")
    c = by_task.get(chosen)
    slug = "new" if c is None else chosen
    prefix, form = f"rt_cache_{slug}", f"rt_cache_form_{slug}"
    prefill(
        prefix,
        {
            "task": c.task if c else "",
            "ttl_s": c.ttl_s if c else 3600,
            "enabled": c.enabled if c else True,
            "semantic_threshold": ""
            if c is None or c.semantic_threshold is None
            else str(c.semantic_threshold),
        },
    )

    def save() -> None:
        saved = rd.save_cache_setting(actor, forms.values(prefix, rd.CACHE_FIELDS))
        after_save(prefix, "rt_cache_pick", saved.task, c is None)

    with st.form(form):
        forms.form_error(form, rd.CACHE_FIELDS)
        cols = st.columns([2, 1, 1, 1])
        cols[0].text_input("Task", key=f"{prefix}_task", disabled=c is not None)
        cols[1].number_input("TTL (s)", min_value=0, step=60, key=f"{prefix}_ttl_s")
        cols[2].text_input(
            "Semantic threshold",
            key=f"{prefix}_semantic_threshold",
            help="Cosine similarity in (0, 1]; empty: exact matches only",
        )
        cols[3].checkbox("Enabled", key=f"{prefix}_enabled")
        for field in rd.CACHE_FIELDS:
            forms.field_error(form, field)
        save_button(form, "Cache setting saved.", save)
    if c is not None:
        delete_button(
            f"rt_cache_delete_{slug}",
            form,
            f"Cache setting for {chosen} deleted.",
            lambda: rd.delete_cache_setting(actor, chosen),
        )


def rate_limits_tab(actor: Actor, engineer: bool) -> None:
    st.subheader("Rate limits")
    limits = auth.plane().rate_limits()
    if limits:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "id": r.id,
                        "scope": r.scope,
                        "value": r.scope_value or "each",
                        "metric": r.metric,
                        "limit": r.limit,
                        "window (s)": r.window_s,
                        "algorithm": r.algorithm,
                        "burst": r.burst,
                        "enabled": r.enabled,
                    }
                    for r in limits
                ]
            ),
            hide_index=True,
        )
    else:
        st.caption("No rate limits.")
    if read_only(engineer, "rate limits"):
        return
    by_id = {r.id: r for r in limits}
    chosen = pick("Rate limit", "rt_rl_pick", list(by_id), "New rate limit")
    r = by_id.get(chosen)
    slug = "new" if r is None else chosen
    prefix, form = f"rt_rl_{slug}", f"rt_rl_form_{slug}"
    prefill(
        prefix,
        {
            "id": r.id if r else "",
            "scope": r.scope if r else "user",
            "scope_value": (r.scope_value or "") if r else "",
            "metric": r.metric if r else "requests",
            "limit": r.limit if r else 60,
            "window_s": r.window_s if r else 60,
            "algorithm": r.algorithm if r else "token_bucket",
            "burst": "" if r is None or r.burst is None else str(r.burst),
            "enabled": r.enabled if r else True,
        },
    )

    def save() -> None:
        saved = rd.save_rate_limit(actor, forms.values(prefix, rd.RATE_FIELDS))
        after_save(prefix, "rt_rl_pick", saved.id, r is None)

    with st.form(form):
        forms.form_error(form, rd.RATE_FIELDS)
        cols = st.columns(5)
        cols[0].text_input("Id", key=f"{prefix}_id", disabled=r is not None)
        cols[1].selectbox("Scope", RATE_SCOPES, key=f"{prefix}_scope")
        cols[2].text_input("Value", key=f"{prefix}_scope_value", help="Empty: each value")
        cols[3].selectbox("Metric", RATE_METRICS, key=f"{prefix}_metric")
        cols[4].selectbox("Algorithm", RATE_ALGORITHMS, key=f"{prefix}_algorithm")
        size = st.columns(4)
        size[0].number_input("Limit", min_value=0, step=1, key=f"{prefix}_limit")
        size[1].number_input("Window (s)", min_value=0, step=1, key=f"{prefix}_window_s")
        size[2].text_input("Burst", key=f"{prefix}_burst", help="Token bucket size; empty: limit")
        size[3].checkbox("Enabled", key=f"{prefix}_enabled")
        for field in rd.RATE_FIELDS:
            forms.field_error(form, field)
        save_button(form, "Rate limit saved.", save)
    if r is not None:
        delete_button(
            f"rt_rl_delete_{slug}",
            form,
            f"Rate limit {chosen} deleted.",
            lambda: rd.delete_rate_limit(actor, chosen),
        )


# ---- provider health -----------------------------------------------------------------------


def health_tab(view: View) -> None:
    span = st.segmented_control(
        "Range", ["Last 24 hours", "Selected range"], default="Last 24 hours", key="rt_health_range"
    )
    if span == "Selected range":
        start, end = view.scope.start, view.scope.end
    else:
        end = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        start = end - timedelta(hours=24)
    df = rd.provider_health(data.home(), data.version(), start, end)
    if df.empty:
        st.info("No provider calls in this range.")
        return
    st.dataframe(
        rd.health_frame(df, rd.breakers()),
        hide_index=True,
        width="stretch",
        column_config={"error rate": st.column_config.NumberColumn(format="percent")},
    )
    st.caption(
        "Latency of answered calls; error rate over calls that reached the provider."
        " Breakers are shown as this console's own router last saw them (Playground"
        " calls); other router processes keep their own view: n/a here."
    )


main()
