"""Routing & Sampling: task policies, sampling strategies with what they saved, cache TTLs,
rate limits (engineer+ edits; everyone reads) and provider health from the usage log."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from console import auth, chrome, editor, forms, pickers
from console.commands import routing as commands
from console.editor import Entity
from console.frames import routing as frames
from console.inputs import routing as inputs
from console.queries import routing as queries
from console.queries import usage
from console.queries.pricing import catalog
from console.selection import Selection
from console.sidebar import current_selection
from core import clock
from core.control import (
    DEFAULT_CACHE_TTL_S,
    RATE_ALGORITHMS,
    RATE_METRICS,
    RATE_SCOPES,
    ROUTING_STRATEGIES,
    SAMPLING_STRATEGIES,
    Actor,
    CacheSetting,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
)
from core.types import CRITICALITIES


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    selection = current_selection()
    st.title("Routing & Sampling")
    forms.flash()
    note = st.session_state.pop(inputs.NOTE_KEY, None)  # an advice applied on Forecast
    if note:
        st.info(note, icon=":material/lightbulb:")
    engineer = auth.may(actor, "engineer")
    policies, sampling, caching, health = st.tabs(
        ["Task policies", "Sampling", "Cache & rate limits", "Provider health"],
        **chrome.kept_tabs("rt_tab"),
    )
    with policies:
        policies_tab(actor, engineer)
    with sampling:
        sampling_tab(actor, engineer, selection)
    with caching:
        cache_tab(actor, engineer)
        rate_limits_tab(actor, engineer)
    with health:
        health_tab(selection)


def read_only(engineer: bool, what: str) -> bool:
    if not engineer:
        st.caption(f"Editing {what} needs the engineer role.")
    return not engineer


# ---- task policies -------------------------------------------------------------------------


def policy_entity(actor: Actor) -> Entity[RoutingPolicy]:
    return Entity(
        prefix="rt_pol",
        label="Policy",
        new_label="New policy",
        fields=inputs.POLICY_FIELDS,
        values=inputs.policy_values,
        name=lambda p: p.task,
        save=lambda v, new: commands.save_policy(actor, v, new=new),
        delete=lambda task: commands.delete_policy(actor, task),
        saved="Policy saved.",
        labels=inputs.POLICY_LABELS,
        check=lambda v: inputs.check_policy(v, catalog()),
        filler=inputs.POLICY_FILLER,
    )


def policies_tab(actor: Actor, engineer: bool) -> None:
    policies = auth.plane().policies()
    if policies:
        chrome.table(frames.policies_frame(policies), width="stretch")
    else:
        st.info("No task policies: requests must name their model.")
    if read_only(engineer, "policies"):
        return
    edit = editor.pick(policy_entity(actor), policies)
    key, error = edit.key, edit.error
    with edit.form():
        left, right = st.columns(2)
        with left:
            st.text_input("Task", key=key("task"), disabled=edit.current is not None)
            error("task")
            pickers.pick(
                "Primary model",
                pickers.models(),
                key("primary_model"),
                help="A model of the price catalog (see Pricing)",
            )
            error("primary_model")
            pickers.pick_many(
                "Fallbacks",
                pickers.models(),
                key("fallbacks"),
                help="Tried in the order picked when the primary model fails",
            )
            error("fallbacks")
            pickers.pick(
                "Degrade to",
                pickers.models(),
                key("degrade_to"),
                help="The cheaper model over-budget calls use",
            )
            error("degrade_to")
            st.checkbox(
                "Personalised (never share cached answers across users)", key=key("personalised")
            )
        with right:
            st.selectbox("Strategy", ROUTING_STRATEGIES, key=key("strategy"))
            error("strategy", "weights")
            st.selectbox("Criticality", CRITICALITIES, key=key("criticality"))
            error("criticality")
            st.text_input(
                "Cache TTL (s)",
                key=key("cache_ttl_s"),
                help="Empty: the task's cache setting; 0: never cache",
            )
            error("cache_ttl_s")
            st.text_input("Max tokens", key=key("max_tokens"), help="Empty: no limit")
            error("max_tokens")
            st.selectbox(
                "Provider prompt caching",
                list(inputs.PROMPT_CACHE),
                format_func=inputs.PROMPT_CACHE.__getitem__,
                key=key("prompt_cache"),
                help="Anthropic: mark the system prompt and last message with cache_control;"
                " cache reads cost 0.1x input and each call records what caching saved",
            )
            error("prompt_cache")
            w = st.columns(3)
            w[0].number_input("Cost weight", min_value=0.0, step=0.1, key=key("w_cost"))
            w[1].number_input("Latency weight", min_value=0.0, step=0.1, key=key("w_latency"))
            w[2].number_input("Quality weight", min_value=0.0, step=0.1, key=key("w_quality"))
    if edit.current is not None:
        for warning in queries.provider_warnings(edit.current, catalog()):
            st.warning(warning)
    edit.delete_button(
        f"Delete the policy for {edit.name}? Its calls must then name their model.",
        f"Policy for {edit.name} deleted.",
    )


# ---- sampling strategies -------------------------------------------------------------------


def sampling_entity(actor: Actor) -> Entity[SamplingStrategy]:
    return Entity(
        prefix="rt_smp",
        label="Strategy for agent/task",
        new_label="New strategy",
        fields=inputs.SAMPLING_FIELDS,
        values=inputs.sampling_values,
        name=lambda s: s.key,
        save=lambda v, new: commands.save_sampling(actor, v, new=new),
        delete=lambda key: commands.delete_sampling(actor, key),
        saved="Sampling strategy saved.",
    )


def sampling_tab(actor: Actor, engineer: bool, selection: Selection) -> None:
    strategies = auth.plane().sampling()
    scope = selection.scope
    savings = queries.sampling_savings(usage.home(), usage.version(), scope.start, scope.end)
    st.caption(f"Calls and savings in the selected range ({selection.describe()}).")
    if strategies:
        st.dataframe(
            frames.sampling_frame(strategies, savings, selection.money),
            hide_index=True,
            width="stretch",
        )
    else:
        st.info("No sampling strategies: every event calls the model.")
    if read_only(engineer, "sampling strategies"):
        return
    edit = editor.pick(sampling_entity(actor), strategies)
    key, error = edit.key, edit.error
    # outside the form, so the strategy's own knobs change as soon as it is picked
    strategy = st.selectbox("Strategy", SAMPLING_STRATEGIES, key=key("strategy"))
    with edit.form():
        st.text_input("Agent / task key", key=key("key"), disabled=edit.current is not None)
        error("key")
        params = inputs.STRATEGY_PARAMS.get(strategy, ())
        if params:
            cols = st.columns(len(params))
            for col, name in zip(cols, params, strict=True):
                with col:
                    st.text_input(
                        inputs.PARAM_LABELS[name],
                        key=key(f"p_{name}"),
                        help=inputs.PARAM_HELP.get(strategy),
                    )
                    error(f"params.{name}")
        error("strategy")
        st.markdown("**Event thresholds**")
        event = st.columns(3)
        with event[0]:
            st.number_input(
                "Min interval (s)",
                min_value=0.0,
                key=key("min_interval_s"),
                help="HIGH/MEDIUM events: at least this long between real calls",
            )
            error("min_interval_s")
        with event[1]:
            st.number_input(
                "Batch size",
                min_value=0,
                step=1,
                key=key("batch_size"),
                help="LOW events: one call per this many",
            )
            error("batch_size")
        with event[2]:
            st.number_input("Batch timeout (s)", min_value=0.0, key=key("batch_timeout_s"))
            error("batch_timeout_s")
        st.checkbox("Enabled", key=key("enabled"))
    edit.delete_button(
        f"Delete the strategy for {edit.name}? Every event then calls the model.",
        f"Strategy for {edit.name} deleted.",
    )


# ---- cache settings and rate limits --------------------------------------------------------


def cache_entity(actor: Actor) -> Entity[CacheSetting]:
    return Entity(
        prefix="rt_cache",
        label="Cache setting",
        new_label="New cache setting",
        fields=inputs.CACHE_FIELDS,
        values=inputs.cache_values,
        name=lambda c: c.task,
        save=lambda v, new: commands.save_cache_setting(actor, v),
        delete=lambda task: commands.delete_cache_setting(actor, task),
        saved="Cache setting saved.",
    )


def cache_tab(actor: Actor, engineer: bool) -> None:
    st.subheader("Response cache per task")
    settings = auth.plane().cache_settings()
    if settings:
        chrome.table(frames.cache_settings_frame(settings))
    else:
        st.caption(f"No settings: built-in TTLs per task (else {DEFAULT_CACHE_TTL_S:,} s).")
    if read_only(engineer, "cache settings"):
        return
    edit = editor.pick(cache_entity(actor), settings)
    key = edit.key
    with edit.form():
        cols = st.columns([2, 1, 1, 1])
        cols[0].text_input("Task", key=key("task"), disabled=edit.current is not None)
        cols[1].number_input("TTL (s)", min_value=0, step=60, key=key("ttl_s"))
        cols[2].text_input(
            "Semantic threshold",
            key=key("semantic_threshold"),
            help="Cosine similarity in (0, 1]; empty: exact matches only",
        )
        cols[3].checkbox("Enabled", key=key("enabled"))
        edit.error(*inputs.CACHE_FIELDS)  # under the compact row
    edit.delete_button(
        f"Delete the cache setting for {edit.name}? The built-in TTL applies again.",
        f"Cache setting for {edit.name} deleted.",
    )


def rate_limit_entity(actor: Actor) -> Entity[RateLimit]:
    return Entity(
        prefix="rt_rl",
        label="Rate limit",
        new_label="New rate limit",
        fields=inputs.RATE_FIELDS,
        values=inputs.rate_limit_values,
        name=lambda r: r.id,
        save=lambda v, new: commands.save_rate_limit(actor, v),
        delete=lambda limit_id: commands.delete_rate_limit(actor, limit_id),
        saved="Rate limit saved.",
    )


def rate_limits_tab(actor: Actor, engineer: bool) -> None:
    st.subheader("Rate limits")
    limits = auth.plane().rate_limits()
    if limits:
        chrome.table(frames.rate_limits_frame(limits))
    else:
        st.caption("No rate limits.")
    if read_only(engineer, "rate limits"):
        return
    edit = editor.pick(rate_limit_entity(actor), limits)
    key = edit.key
    with edit.form():
        cols = st.columns(5)
        cols[0].text_input("Id", key=key("id"), disabled=edit.current is not None)
        cols[1].selectbox("Scope", RATE_SCOPES, key=key("scope"))
        with cols[2]:
            pickers.pick(
                "Value",
                pickers.scope_values(st.session_state.get(key("scope"))),
                key("scope_value"),
                help="Empty: each value",
            )
        cols[3].selectbox("Metric", RATE_METRICS, key=key("metric"))
        cols[4].selectbox("Algorithm", RATE_ALGORITHMS, key=key("algorithm"))
        size = st.columns(4)
        size[0].number_input("Limit", min_value=0, step=1, key=key("limit"))
        size[1].number_input("Window (s)", min_value=0, step=1, key=key("window_s"))
        size[2].text_input("Burst", key=key("burst"), help="Token bucket size; empty: limit")
        size[3].checkbox("Enabled", key=key("enabled"))
        edit.error(*inputs.RATE_FIELDS)  # under the compact row
    edit.delete_button(
        f"Delete rate limit {edit.name}? Routers stop enforcing it.",
        f"Rate limit {edit.name} deleted.",
    )


# ---- provider health -----------------------------------------------------------------------


def health_tab(selection: Selection) -> None:
    span = st.segmented_control(
        "Range", ["Last 24 hours", "Selected range"], default="Last 24 hours", key="rt_health_range"
    )
    if span == "Selected range":
        start, end = selection.scope.start, selection.scope.end
    else:
        end = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
        start = end - timedelta(hours=24)
    df = queries.provider_health(usage.home(), usage.version(), start, end)
    if df.empty:
        st.info("No provider calls in this range.")
        return
    st.dataframe(
        frames.health_frame(df, queries.breakers()),
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
