"""Step 7, settle: usage from the provider (estimated, and flagged, only when it reports
none), cost from the catalog, and the outcome settled everywhere it counts: the budget
reservation to the actual cost, the routing engine's latency and health, the response cache,
the sampling gate's last answer. Each outcome is then recorded (step 8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core import clock
from core.errors import ClientDisconnected, CostlineError, MalformedResponse, RetryableError
from core.pricing import price, prompt_cache_saving
from core.providers import ProviderResult
from core.state import BreakerState
from core.types import Completion, Cost, Usage
from core.validate import MAX_USAGE_TOKENS, checked_usage

from . import gate
from .context import Context
from .record import estimated_usage, record, record_error
from .state import Call, Candidate

__all__ = ["abandoned", "failed", "settle", "settle_embedding"]


def settle(
    ctx: Context,
    call: Call,
    cand: Candidate,
    attempt: int,
    result: ProviderResult,
    *,
    streamed: str,
    ttft_ms: float | None,
    latency_ms: float,
) -> Completion:
    """The Completion of a successful attempt (``streamed``: the text already streamed)."""
    text = result.text or streamed
    usage = checked_usage(result.usage)  # absurd or negative counts: estimated instead
    if usage is None:  # provider reported none: estimate, never $0
        many = result.choices
        if many is not None and len(many) > 1:  # n > 1: every choice was generated
            usage = estimated_usage(cand, "".join(_content(c) for c in many))
        else:
            usage = estimated_usage(cand, text)
    cost = price(usage, cand.row, batch=call.req.batch) if cand.row else Cost(unpriced=True)
    done = call.completion(
        cand,
        text,
        usage,
        cost,
        ttft_ms=ttft_ms,
        finish_reason=result.finish_reason,
        choices=result.choices,
        stop_sequence=result.stop_sequence,
        usage_details=result.usage_details,
        system_fingerprint=result.system_fingerprint,
    )
    if cand.row is not None and (usage.cached_input_tokens or usage.cache_write_tokens):
        done.saved = prompt_cache_saving(usage, cand.row)  # provider prompt caching
    ctl = ctx.controls
    at = clock.now()  # the event's ts and the settle's window: one instant
    if ctl is not None:
        total = cost.total
        # the success closes the model's breaker in the settle's own state step when it can
        closed = _settle_reservation(
            ctx, call, total, usage.total_tokens, close=ctl.routing.key(cand.model), at=at
        )
        ctl.routing.observe(cand.model, latency_ms, True, recorded=closed)
        if not call.degraded:  # a cheaper model's answer never stands for the task's
            ctl.cache.put(call.req, done, key=call.cache_key)
        if call.gate_key is not None:  # the answer to reuse; counts the tentative call
            gate.answered(ctx, call, done, total)
    record(ctx, call, cand, attempt, "ok", done, None, at)
    return done


def _content(choice: Any) -> str:
    """An OpenAI choice's text (its message content), "" when it has none."""
    msg = choice.get("message") if isinstance(choice, dict) else None
    got = msg.get("content") if isinstance(msg, dict) else None
    return got if isinstance(got, str) else ""


def settle_embedding(
    ctx: Context, call: Call, cand: Candidate, attempt: int, reported: int | None
) -> Completion:
    """An embeddings attempt: tokens as the provider reported them, else as counted here
    (flagged as estimated)."""
    if reported is not None and not (
        isinstance(reported, int) and 0 <= reported <= MAX_USAGE_TOKENS
    ):
        reported = None  # absurd or negative: counted here instead, flagged
    n = reported if reported is not None else cand.prompt_tokens
    usage = Usage(input_tokens=n, estimated=reported is None)
    cost = price(usage, cand.row) if cand.row else Cost(unpriced=True)
    at = clock.now()
    _settle_reservation(ctx, call, cost.total, usage.total_tokens, at=at)
    done = call.completion(cand, "", usage, cost)
    record(ctx, call, cand, attempt, "ok", done, None, at)
    return done


def failed(
    ctx: Context,
    call: Call,
    cand: Candidate,
    attempt: int,
    exc: CostlineError,
    latency_ms: float,
    partial: str = "",
) -> float | None:
    """Record the failed attempt; return the delay before retrying, or None to move on.
    A stream cut after ``partial`` text was billed: its estimate settles the reservation."""
    exc.provider = exc.provider or cand.provider
    exc.model = exc.model or cand.model
    call.last = exc
    ctl = ctx.controls
    if ctl is not None:
        retryable = isinstance(exc, RetryableError | MalformedResponse)
        ctl.routing.observe(cand.model, latency_ms, False, retryable)
    at = clock.now()
    cost, used = record_error(ctx, call, cand, exc, attempt, partial, at)
    if partial:  # the prompt and the partial answer, as priced
        _settle_reservation(ctx, call, cost.total, used, at=at)
    return ctx.delay(attempt, exc)


def abandoned(
    ctx: Context,
    call: Call,
    cand: Candidate,
    attempt: int,
    partial: str,
    ttft_ms: float | None,
) -> None:
    """A call whose caller left mid-attempt (a stream's consumer, a cancelled task, Ctrl-C):
    the prompt and the partial answer were billed upstream, so they are estimated (flagged),
    priced, settled and recorded."""
    exc = ClientDisconnected(
        f"the caller went away after {len(partial)} characters of the answer; "
        "the upstream call was cancelled",
        provider=cand.provider,
        model=cand.model,
    )
    call.last = exc
    usage = estimated_usage(cand, partial)
    cost = price(usage, cand.row, batch=call.req.batch) if cand.row else Cost(unpriced=True)
    done = call.completion(cand, partial, usage, cost, ttft_ms=ttft_ms)
    at = clock.now()
    _settle_reservation(ctx, call, cost.total, usage.total_tokens, at=at)
    record(ctx, call, cand, attempt, "error", done, exc, at)


def _settle_reservation(
    ctx: Context,
    call: Call,
    cost: int,
    tokens: int,
    close: str | None = None,
    *,
    at: datetime,
) -> BreakerState | None:
    """The reservation held for this call becomes its actual cost and tokens, in the budget
    window holding ``at`` (its usage event's ts). ``close``: a breaker to close in the same
    state step (``BudgetGuard.settle``); its state when it was."""
    if ctx.controls is not None and call.decision is not None:
        closed = ctx.controls.guard.settle(call.decision, cost, tokens, close, at.timestamp())
        call.decision = None
        return closed
    return None
