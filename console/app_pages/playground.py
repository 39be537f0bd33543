"""Playground (engineer+): a prompt, its cost before sending, a live answer through the real
Router (budgets, cache, routing apply), the same prompt side by side, and your past runs."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from console import auth, chrome, pickers
from console.commands import playground as commands
from console.commands.playground import RunResult
from console.frames import playground as frames
from console.inputs.playground import MAX_MODELS, Inputs
from console.queries import playground as queries
from console.queries import usage
from console.queries.playground import Target
from console.sidebar import current_selection
from core.control import Actor
from core.errors import CostlineError
from core.router import Router
from core.types import ChatRequest, Completion

TURN_ROLES = ["user", "assistant"]
CURSOR = " ▌"  # after a side-by-side answer still streaming


def main() -> None:
    actor = auth.current_actor()
    assert actor is not None
    st.title("Playground")
    st.caption(
        "Calls go through the same Router as your apps: budgets, cache, policies and"
        " price overrides apply, and each call is logged with source 'playground'."
    )
    router = queries.router()
    if router.controls is not None:
        router.controls.snapshot()  # price overrides and budgets as of now
    inputs_col, send_col = st.columns([3, 2], gap="large")
    with inputs_col:
        inputs = input_form(actor, router)
    targets, problems = resolve(router, inputs)
    with send_col:  # the estimate and Send stay in view beside the inputs
        budgets = preview(router, inputs, targets, actor) if targets else None
        send = st.button("Send", type="primary", key="pg_send")
        if send:
            problems = inputs.problems() + problems
            for problem in problems:
                st.error(problem)
        else:
            for problem in problems:
                st.warning(problem)
        if budgets is not None:
            headroom(budgets)
    if send and not problems:
        run(router, inputs, targets, actor)
    elif not send and st.session_state.get("pg_last"):
        st.caption("Last run")
        show(st.session_state["pg_last"], streamed=False)
    st.divider()
    history(actor, router)
    with st.expander("Providers and keys"):
        st.dataframe(
            queries.providers(router.settings),
            hide_index=True,
            width="stretch",
        )
        st.caption(
            "Keys come from the environment or .streamlit/secrets.toml and are shown masked."
        )


# ---- inputs --------------------------------------------------------------------------------


def input_form(actor: Actor, router: Router) -> Inputs:
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
    options = queries.model_names(router)
    cols = st.columns([3, 2])
    models = cols[0].multiselect(
        f"Models (up to {MAX_MODELS}: more than one runs them side by side)",
        options,
        key="pg_models",
        max_selections=MAX_MODELS,
        format_func=_flagged(router),
        select_all=False,  # "Select all" makes no sense with a limit of 4
    )
    other = cols[1].text_input(
        "Other model",
        key="pg_other",
        placeholder="provider/model, e.g. llamacpp/smollm2-135m-instruct",
    )
    knobs = st.columns(5)
    temperature = knobs[0].slider("Temperature", 0.0, 2.0, step=0.1, key="pg_temperature")
    max_tokens = knobs[1].number_input("Max tokens", step=1, key="pg_max_tokens")
    picked = {}
    for col, dim in zip(knobs[2:], ("org", "project", "task"), strict=True):
        with col:  # values from the log (budgets match them); a new one can be typed
            picked[dim] = pickers.pick(dim.capitalize(), pickers.logged(dim), f"pg_{dim}")
    org, project, task = picked["org"], picked["project"], picked["task"]
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
    return Inputs(
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
    base = Inputs()
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
    options = set(queries.model_names(router))
    state.setdefault("pg_models", [m for m in base.models if m in options])
    state["pg_models"] = [m for m in state["pg_models"] if m in options]
    for i in range(state["pg_n_turns"]):
        state.setdefault(f"pg_turn_role_{i}", TURN_ROLES[i % 2])
        state.setdefault(f"pg_turn_text_{i}", "")


def _turns(delta: int) -> None:
    st.session_state["pg_n_turns"] = max(0, st.session_state["pg_n_turns"] + delta)


def _flagged(router: Router):  # type: ignore[no-untyped-def]
    def label(name: str) -> str:
        problem = queries.resolve(router, name).problem
        return f"{name} ⚠ {problem}" if problem else name

    return label


def resolve(router: Router, inputs: Inputs) -> tuple[list[Target], list[str]]:
    targets, problems = [], []
    for name in inputs.models:
        try:
            target = queries.resolve(router, name)
        except CostlineError as exc:
            problems.append(str(exc))
            continue
        if target.problem:
            problems.append(f"{name}: {target.problem}")
        targets.append(target)
    return targets, problems


# ---- before sending ------------------------------------------------------------------------


def preview(
    router: Router, inputs: Inputs, targets: Sequence[Target], actor: Actor
) -> list[dict[str, object]] | None:
    """The cost estimate per model; returns the budget rows for ``headroom`` (None when max
    tokens is unset)."""
    st.subheader("Before sending")
    if inputs.max_tokens < 1:
        st.caption("Set max tokens to see the cost estimate.")
        return None
    typical = queries.typical_outputs(usage.home(), usage.version(), queries.typical_since())
    rows, budgets = [], []
    for t in targets:
        est = queries.estimate(router, t, inputs.messages(), inputs.max_tokens, typical)
        rows.append(frames.estimate_row(est))
        req = inputs.request(t.name, actor.username)
        budgets += [frames.budget_row(t, s, est.max_cost) for s in queries.headroom(router, req, t)]
    chrome.table(pd.DataFrame(rows), width="stretch", key="pg_estimates")
    st.caption(
        f"Max cost: the prompt at the input rate plus {inputs.max_tokens:,} output tokens"
        " (what budgets reserve). Typical cost: the median output of the model's recent"
        f" calls, else {queries.TYPICAL_OUTPUT} tokens."
    )
    return budgets


def headroom(budgets: list[dict[str, object]]) -> None:
    if budgets:
        st.write("Charged to these budgets (current window):")
        st.dataframe(pd.DataFrame(budgets), hide_index=True, width="stretch", key="pg_budgets")
    else:
        st.caption("No budget applies to these calls.")


# ---- sending -------------------------------------------------------------------------------


def run(router: Router, inputs: Inputs, targets: Sequence[Target], actor: Actor) -> None:
    reqs = [inputs.request(t.name, actor.username) for t in targets]
    if len(reqs) == 1:
        results = [stream_one(router, reqs[0], actor)]
    else:
        got = side_by_side(router, reqs, actor)
        if got is None:
            return
        results = got
    router.log.flush()  # the Requests page and the history see the calls at once
    commands.remember(actor.username, [r.request_id for r in results], inputs)
    st.session_state["pg_last"] = results
    if len(results) == 1:
        show(results, streamed=True)


def stream_one(router: Router, req: ChatRequest, actor: Actor) -> RunResult:
    sink: dict = {}  # type: ignore[type-arg]
    try:
        with st.chat_message("assistant"):
            st.write_stream(commands.stream_text(router, req, sink, actor))
    except CostlineError as exc:
        return commands.result_of(req, exc)
    return commands.result_of(req, sink["done"])


def side_by_side(
    router: Router, reqs: Sequence[ChatRequest], actor: Actor
) -> list[RunResult] | None:
    """A column per model, each answer streamed into its own column as it arrives (all
    models at once); cost and latency under each when it is done. None when nothing was
    sent (the role was changed since sign-in)."""
    cols = st.columns(len(reqs))
    boxes = []
    for i, (col, req) in enumerate(zip(cols, reqs, strict=True)):
        with col:
            st.subheader(str(req.model))
            boxes.append(st.container(height=240, key=f"pg_answer_{i}").empty())
    texts = [""] * len(reqs)
    ends: list[Completion | CostlineError | None] = [None] * len(reqs)
    try:
        with contextlib.closing(commands.stream_many(router, reqs, actor)) as batches:
            for batch in batches:
                for i, piece in batch:
                    if isinstance(piece, str):
                        texts[i] += piece
                    else:
                        ends[i] = piece
                for i in {i for i, _ in batch}:  # one redraw per column and batch
                    end = ends[i]
                    if end is None:
                        boxes[i].markdown(texts[i] + CURSOR)
                    elif isinstance(end, Completion):
                        boxes[i].markdown(end.text)
                    else:
                        boxes[i].error(str(end))
    except CostlineError as exc:  # e.g. the role was changed since sign-in
        st.error(str(exc))
        return None
    results = [
        commands.result_of(req, end or CostlineError("the stream ended without an answer"))
        for req, end in zip(reqs, ends, strict=True)
    ]
    for col, result in zip(cols, results, strict=True):
        if not result.error:
            with col:
                figures(result, wide=False)
    return results


def show(results: Sequence[RunResult], streamed: bool) -> None:
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


def figures(r: RunResult, wide: bool) -> None:
    """Cost and latency as metrics (side by side: only those two); the rest compact."""
    cost = "unpriced" if r.unpriced else frames.fmt_usd(r.cost)
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
    runs = queries.history(usage.home(), usage.version(), actor.username)
    if runs.empty:
        st.caption("None yet.")
        return
    tz = current_selection().scope.tz
    chrome.table(frames.history_frame(runs, tz), width="stretch", key="pg_history")
    stored = queries.remembered(actor.username)
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
        args=(stored[pick], set(queries.model_names(router))),
    )


def load(inputs: Inputs, options: set[str]) -> None:
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
    state["pg_models"] = [m for m in inputs.models if m in options][:MAX_MODELS]
    state["pg_other"] = next((m for m in inputs.models if m not in options), "")
    state.pop("pg_last", None)


main()
