"""Playground (engineer+): a prompt, its cost before sending, a live answer through the real
Router (budgets, cache, routing apply), the same prompt side by side, and your past runs."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from console import auth, data
from console import playground_data as pg
from core.budgets import BudgetStatus
from core.control import Actor
from core.errors import CostlineError
from core.router import Router
from core.types import ChatRequest

TURN_ROLES = ["user", "assistant"]


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("Playground")
    st.caption(
        "Calls go through the same Router as your apps: budgets, cache, policies and"
        " price overrides apply, and each call is logged with source 'playground'."
    )
    router = pg.router()
    if router.controls is not None:
        router.controls.snapshot()  # price overrides and budgets as of now
    inputs = input_form(actor, router)
    targets, problems = resolve(router, inputs)
    if targets:
        preview(router, inputs, targets, actor)
    if st.button("Send", type="primary", key="pg_send"):
        problems = inputs.problems() + problems
        for problem in problems:
            st.error(problem)
        if not problems:
            run(router, inputs, targets, actor)
    else:
        for problem in problems:
            st.warning(problem)
        if st.session_state.get("pg_last"):
            st.caption("Last run")
            show(st.session_state["pg_last"], streamed=False)
    st.divider()
    history(actor, router)
    with st.expander("Providers and keys"):
        st.dataframe(pg.providers_frame(router.settings), hide_index=True, width="stretch")
        st.caption(
            "Keys come from the environment or .streamlit/secrets.toml and are shown masked."
        )


# ---- inputs --------------------------------------------------------------------------------


def input_form(actor: Actor, router: Router) -> pg.Inputs:
    defaults(router)
    st.text_area("System prompt", key="pg_system", height=80)
    for i in range(st.session_state["pg_n_turns"]):
        cols = st.columns([1, 5])
        cols[0].selectbox(f"Turn {i + 1}", TURN_ROLES, key=f"pg_turn_role_{i}")
        cols[1].text_area(
            f"Turn {i + 1} text", key=f"pg_turn_text_{i}", height=68, label_visibility="collapsed"
        )
    cols = st.columns([1, 1, 4])
    cols[0].button("Add a prior turn", key="pg_add_turn", on_click=_turns, args=(1,))
    cols[1].button(
        "Remove last turn",
        key="pg_del_turn",
        on_click=_turns,
        args=(-1,),
        disabled=st.session_state["pg_n_turns"] == 0,
    )
    st.text_area("User message", key="pg_prompt", height=120)
    options = pg.model_names(router)
    cols = st.columns([3, 2])
    models = cols[0].multiselect(
        f"Models (up to {pg.MAX_MODELS}: more than one runs them side by side)",
        options,
        key="pg_models",
        max_selections=pg.MAX_MODELS,
        format_func=_flagged(router),
    )
    other = cols[1].text_input(
        "Other model",
        key="pg_other",
        placeholder="provider/model, e.g. llamacpp/smollm2-135m-instruct",
    )
    knobs = st.columns(5)
    temperature = knobs[0].slider("Temperature", 0.0, 2.0, step=0.1, key="pg_temperature")
    max_tokens = knobs[1].number_input("Max tokens", step=1, key="pg_max_tokens")
    org = knobs[2].text_input("Org", key="pg_org")
    project = knobs[3].text_input("Project", key="pg_project")
    task = knobs[4].text_input("Task", key="pg_task")
    bypass = st.toggle(
        "Bypass the response cache",
        key="pg_bypass",
        help="Neither read nor write the cache for this run",
    )
    st.caption(f"Calls are charged to user **{actor.username}**.")
    turns = [
        (st.session_state[f"pg_turn_role_{i}"], st.session_state[f"pg_turn_text_{i}"])
        for i in range(st.session_state["pg_n_turns"])
    ]
    chosen = [*models, *([other.strip()] if other.strip() else [])]
    return pg.Inputs(
        st.session_state["pg_system"],
        turns,
        st.session_state["pg_prompt"],
        list(dict.fromkeys(chosen)),
        float(temperature),
        int(max_tokens),
        org,
        project,
        task,
        not bypass,
    )


def defaults(router: Router) -> None:
    """First visit: the default model, and org/project/task from the sidebar's filters when
    exactly one value is selected there."""
    state = st.session_state
    state.setdefault("pg_n_turns", 0)
    base = pg.Inputs()
    for key, value in (
        ("pg_system", base.system),
        ("pg_prompt", base.prompt),
        ("pg_temperature", base.temperature),
        ("pg_max_tokens", base.max_tokens),
        ("pg_other", ""),
        ("pg_bypass", False),
    ):
        state.setdefault(key, value)
    for dim in ("org", "project", "task"):
        chosen = state.get(f"f_{dim}") or []
        state.setdefault(f"pg_{dim}", chosen[0] if len(chosen) == 1 else "")
    options = set(pg.model_names(router))
    state.setdefault("pg_models", [m for m in base.models if m in options])
    state["pg_models"] = [m for m in state["pg_models"] if m in options]
    for i in range(state["pg_n_turns"]):
        state.setdefault(f"pg_turn_role_{i}", TURN_ROLES[i % 2])
        state.setdefault(f"pg_turn_text_{i}", "")


def _turns(delta: int) -> None:
    st.session_state["pg_n_turns"] = max(0, st.session_state["pg_n_turns"] + delta)


def _flagged(router: Router):  # type: ignore[no-untyped-def]
    def label(name: str) -> str:
        problem = pg.resolve(router, name).problem
        return f"{name} ⚠ {problem}" if problem else name

    return label


def resolve(router: Router, inputs: pg.Inputs) -> tuple[list[pg.Target], list[str]]:
    targets, problems = [], []
    for name in inputs.models:
        try:
            target = pg.resolve(router, name)
        except CostlineError as exc:
            problems.append(str(exc))
            continue
        if target.problem:
            problems.append(f"{name}: {target.problem}")
        targets.append(target)
    return targets, problems


# ---- before sending ------------------------------------------------------------------------


def preview(router: Router, inputs: pg.Inputs, targets: Sequence[pg.Target], actor: Actor) -> None:
    st.subheader("Before sending")
    if inputs.max_tokens < 1:
        st.caption("Set max tokens to see the cost estimate.")
        return
    typical = pg.typical_outputs(data.home(), data.version(), pg.typical_since())
    rows, budgets = [], []
    for t in targets:
        est = pg.estimate(router, t, inputs.messages(), inputs.max_tokens, typical)
        rows.append(
            {
                "model": t.name,
                "provider": t.provider,
                "prompt tokens": est.prompt_tokens,
                "counted": "estimate" if est.tokens_estimated else "exact",
                "max cost": pg.fmt_usd(est.max_cost),
                "typical output": est.typical_output,
                "typical cost": pg.fmt_usd(est.typical_cost),
                "typical from": "your log" if est.typical_from_log else "assumed",
                "status": t.problem or "ready",
            }
        )
        req = inputs.request(t.name, actor.username)
        budgets += [_budget_row(t, s, est.max_cost) for s in pg.headroom(router, req, t)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="pg_estimates")
    st.caption(
        f"Max cost: the prompt at the input rate plus {inputs.max_tokens:,} output tokens"
        " (what budgets reserve). Typical cost: the median output of the model's recent"
        f" calls, else {pg.TYPICAL_OUTPUT} tokens."
    )
    if budgets:
        st.write("Charged to these budgets (current window):")
        st.dataframe(pd.DataFrame(budgets), hide_index=True, width="stretch", key="pg_budgets")
    else:
        st.caption("No budget applies to these calls.")


def _budget_row(t: pg.Target, s: BudgetStatus, max_cost: int) -> dict[str, object]:
    b, limit = s.budget, s.limit_picousd
    left = None if limit is None else limit - s.spent_picousd - s.reserved_picousd
    return {
        "model": t.name,
        "budget": b.name,
        "scope": "global" if b.scope == "global" else f"{b.scope}={b.scope_value}",
        "window": s.window.label,
        "action": b.action,
        "spent": pg.fmt_usd(s.spent_picousd),
        "reserved": pg.fmt_usd(s.reserved_picousd),
        "limit": pg.fmt_usd(limit) if limit is not None else f"{s.limit_tokens:,} tokens",
        "remaining": pg.fmt_usd(left) if left is not None else "–",
        "used": f"{s.utilisation:.1%}",
        "fits max cost": "–" if left is None else "yes" if max_cost <= left else "no",
    }


# ---- sending -------------------------------------------------------------------------------


def run(router: Router, inputs: pg.Inputs, targets: Sequence[pg.Target], actor: Actor) -> None:
    reqs = [inputs.request(t.name, actor.username) for t in targets]
    if len(reqs) == 1:
        results = [stream_one(router, reqs[0], actor)]
    else:
        try:
            with st.spinner(f"Running {len(reqs)} models side by side…"):
                outcomes = pg.run_many(router, reqs, actor)
        except CostlineError as exc:  # e.g. the role was changed since sign-in
            st.error(str(exc))
            return
        results = [pg.result_of(r, o) for r, o in zip(reqs, outcomes, strict=True)]
    router.log.flush()  # the Requests page and the history see the calls at once
    pg.remember(actor.username, [r.request_id for r in results], inputs)
    st.session_state["pg_last"] = results
    show(results, streamed=len(results) == 1)


def stream_one(router: Router, req: ChatRequest, actor: Actor) -> pg.RunResult:
    sink: dict = {}  # type: ignore[type-arg]
    try:
        with st.chat_message("assistant"):
            st.write_stream(pg.stream_text(router, req, sink, actor))
    except CostlineError as exc:
        return pg.result_of(req, exc)
    return pg.result_of(req, sink["done"])


def show(results: Sequence[pg.RunResult], streamed: bool) -> None:
    if len(results) == 1:
        result = results[0]
        if result.error:
            st.error(result.error)
            return
        if not streamed:
            with st.chat_message("assistant"):
                st.markdown(result.text)
        figures(result, wide=True)
        return
    for col, result in zip(st.columns(len(results)), results, strict=True):
        with col:
            st.subheader(result.requested)
            if result.error:
                st.error(result.error)
                continue
            with st.container(height=240):
                st.markdown(result.text)
            figures(result, wide=False)


def figures(r: pg.RunResult, wide: bool) -> None:
    """Cost and latency as metrics (side by side: only those two); the rest compact."""
    cost = "unpriced" if r.unpriced else pg.fmt_usd(r.cost)
    ttft = "–" if r.ttft_ms is None else f"{r.ttft_ms:,.0f} ms"
    items = [
        ("Cost", cost),
        ("Latency", f"{r.latency_ms:,.0f} ms"),
        ("Input tokens", f"{r.input_tokens:,}"),
        ("Output tokens", f"{r.output_tokens:,}"),
        ("Time to first token", ttft),
        ("Cache hit", "yes" if r.cache_hit else "no"),
    ]
    if wide:
        cols = st.columns(3)
        for i, (label, value) in enumerate(items):
            cols[i % 3].metric(label, value)
        notes = []
    else:
        for label, value in items[:2]:
            st.metric(label, value)
        notes = [f"{label.lower()}: {value}" for label, value in items[2:]]
    notes += [f"{r.model} at {r.provider}", f"route: {r.route_reason}", f"request {r.request_id}"]
    if r.tokens_estimated:
        notes.append("tokens estimated (the provider reported no usage)")
    st.caption(" · ".join(notes))


# ---- history -------------------------------------------------------------------------------


def history(actor: Actor, router: Router) -> None:
    st.subheader("Your playground runs")
    runs = pg.history(data.home(), data.version(), actor.username)
    if runs.empty:
        st.caption("None yet.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "time": runs["ts"],
                "model": runs["model"],
                "status": runs["status"],
                "tokens in": runs["input_tokens"],
                "tokens out": runs["output_tokens"],
                "cost": [pg.fmt_usd(int(c)) for c in runs["cost_picousd"].fillna(0)],
                "latency ms": runs["latency_ms"].round(0),
                "cache hit": runs["cache_hit"],
                "request id": runs["request_id"],
            }
        ),
        hide_index=True,
        width="stretch",
        key="pg_history",
    )
    stored = pg.remembered(actor.username)
    ids = [rid for rid in runs["request_id"] if rid in stored]
    if not ids:
        return
    cols = st.columns([4, 1])
    pick = cols[0].selectbox(
        "Run to load",
        ids,
        key="pg_hist_pick",
        format_func=lambda rid: f"{rid} · {stored[rid].prompt[:60]}",
    )
    cols[1].button(
        "Load into the form",
        key="pg_hist_load",
        on_click=load,
        args=(stored[pick], set(pg.model_names(router))),
    )


def load(inputs: pg.Inputs, options: set[str]) -> None:
    """Fill the form with a past run (a callback: it runs before the widgets are built)."""
    state = st.session_state
    state.update(
        pg_system=inputs.system,
        pg_prompt=inputs.prompt,
        pg_temperature=inputs.temperature,
        pg_max_tokens=inputs.max_tokens,
        pg_org=inputs.org,
        pg_project=inputs.project,
        pg_task=inputs.task,
        pg_bypass=not inputs.cache,
        pg_n_turns=len(inputs.turns),
    )
    for i, (role, text) in enumerate(inputs.turns):
        state[f"pg_turn_role_{i}"], state[f"pg_turn_text_{i}"] = role, text
    state["pg_models"] = [m for m in inputs.models if m in options][: pg.MAX_MODELS]
    state["pg_other"] = next((m for m in inputs.models if m not in options), "")
    state.pop("pg_last", None)


main()
