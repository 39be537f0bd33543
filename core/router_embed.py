"""Embeddings through the Router: priced by input tokens, budgeted, rate-limited, logged.

The same steps as a chat call without sampling, cache or routing: resolve the model (an
unknown one is ``UnpricedModel``), count the input tokens, admit against every matching
budget and rate limit, call the provider (retries as the Router's policy says), settle at
the tokens the provider reported (or the count, flagged as estimated) and log one event per
attempt. See docs/gateway.md, "Embeddings".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core import tokens
from core.errors import BadRequest, CostlineError
from core.pricing import max_cost, price
from core.router_plan import Candidate, Plan
from core.types import ChatRequest, Cost, Message, Usage, new_request_id

if TYPE_CHECKING:
    from core.router import Router

__all__ = ["EmbedRequest", "Embeddings", "aembed"]


@dataclass(slots=True)
class EmbedRequest:
    inputs: list[str]
    model: str
    dimensions: int | None = None
    org: str | None = None
    project: str | None = None
    user: str | None = None
    task: str | None = None
    app: str | None = None
    key: str | None = None
    criticality: str = "normal"
    tags: tuple[str, ...] = ()
    source: str = "app"
    request_id: str = field(default_factory=new_request_id)


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage
    cost: Cost
    model: str
    provider: str
    latency_ms: float
    request_id: str


def _chat_view(req: EmbedRequest) -> ChatRequest:
    """The request as budgets, rate limits and the usage log see it."""
    return ChatRequest(
        messages=[Message("user", "\n".join(req.inputs))],
        model=req.model,
        task=req.task,
        org=req.org,
        project=req.project,
        user=req.user,
        app=req.app,
        key=req.key,
        criticality=req.criticality,  # type: ignore[arg-type]
        tags=req.tags,
        cache=False,
        source=req.source,
        request_id=req.request_id,
    )


async def aembed(router: Router, req: EmbedRequest) -> Embeddings:
    if not req.inputs or not all(isinstance(t, str) and t for t in req.inputs):
        raise BadRequest("input: give one or more non-empty strings")
    router.log.check()  # UsageLogUnavailable before any provider is paid
    view = _chat_view(req)
    plan = Plan(view, req.model)
    plan.route_reason = f"{req.model}: requested"
    try:
        cand = router._candidate(req.model)
    except CostlineError as exc:
        router._record_error(plan, None, exc, 0)
        raise
    cand.prompt_tokens = sum(tokens.count_text(cand.model, t) for t in req.inputs)
    ctl = router.controls
    if ctl is not None:
        snap = plan.snap = ctl.snapshot()
        est = max_cost(cand.row, cand.prompt_tokens, 0) if cand.row else 0
        decision = ctl.guard.admit(
            view,
            cand.model,
            cand.provider,
            est,
            cand.prompt_tokens,
            ctl.active_budgets(snap),
            snap.rate_limits,
        )
        if not decision.admitted:
            err = decision.error or BadRequest("not admitted")
            plan.last = err
            router._record_error(plan, cand, err, 0)
            raise err
        plan.decision = decision
    provider = router._provider(cand.provider)
    try:
        for attempt in range(1, router.retry.max_attempts + 1):
            t0 = time.perf_counter()
            try:
                got = await provider.aembed(req.inputs, cand.provider_model, req.dimensions)
            except CostlineError as exc:
                delay = router._failed(plan, cand, attempt, exc, t0)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            return _settle(router, plan, cand, attempt, got.vectors, got.input_tokens)
        raise plan.last or BadRequest("no attempt was made")
    finally:
        router._release(plan)


def _settle(
    router: Router,
    plan: Plan,
    cand: Candidate,
    attempt: int,
    vectors: list[list[float]],
    reported: int | None,
) -> Embeddings:
    """Tokens as the provider reported them, else as counted here (flagged as estimated)."""
    n = reported if reported is not None else cand.prompt_tokens
    usage = Usage(input_tokens=n, estimated=reported is None)
    cost = price(usage, cand.row) if cand.row else Cost(unpriced=True)
    ctl = router.controls
    if ctl is not None and plan.decision is not None:
        ctl.guard.settle(plan.decision, cost.total, usage.total_tokens)
        plan.decision = None
    done = plan.completion(cand, "", usage, cost)
    router._record(plan, cand, attempt, "ok", done, None)
    return Embeddings(
        vectors, usage, cost, cand.model, cand.provider, done.latency_ms, plan.req.request_id
    )
