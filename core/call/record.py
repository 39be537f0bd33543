"""Step 8, record: every outcome (success, failed attempt, cache hit, skip, block) becomes
exactly one usage event, plus an OpenTelemetry span when tracing is on."""

from __future__ import annotations

from core import clock, tokens
from core.errors import BudgetExceeded, CostlineError, RateLimitExceeded, UnpricedModel
from core.pricing import price
from core.types import ChatRequest, Completion, Cost, Usage
from core.usage import Status, UsageEvent

from .context import Context
from .state import Call, Candidate

__all__ = ["estimated_usage", "failed_call", "prompt_text", "record", "record_error", "usage_event"]


def record(
    ctx: Context,
    call: Call,
    cand: Candidate,
    attempt: int,
    status: Status,
    done: Completion,
    exc: CostlineError | None,
) -> None:
    """Append the event of one outcome to the usage log and trace it."""
    project = call.req.project
    bodies = project is not None and project in ctx.settings.log_bodies_projects
    ctx.log.append(usage_event(call, cand, attempt, status, done, exc, bodies=bodies))
    ctx.tracer.record(call.start_ns, call.req, done, exc)


def record_error(
    ctx: Context,
    call: Call,
    cand: Candidate | None,
    exc: CostlineError,
    attempt: int,
    partial: str = "",
) -> Cost:
    """Record a failed attempt (``attempt`` 0: a call stopped before any); returns its cost."""
    cand, failed, status = failed_call(call, cand, exc, attempt, partial)
    record(ctx, call, cand, attempt, status, failed, exc)
    return failed.cost


def usage_event(
    call: Call,
    cand: Candidate,
    attempt: int,
    status: Status,
    done: Completion,
    exc: CostlineError | None,
    *,
    bodies: bool,
) -> UsageEvent:
    """The event for one attempt's outcome; prompt and response only when ``bodies``."""
    req, u, c = call.req, done.usage, done.cost
    return UsageEvent(
        request_id=req.request_id,
        ts=clock.now(),
        org=req.org,
        project=req.project,
        user=req.user,
        task=req.task,
        app=req.app,
        tags=req.tags,
        provider=cand.provider,
        model=cand.model,
        requested_model=call.requested_model or None,
        status=status,
        error_type=exc.error_type if exc else None,
        error_message=exc.message if exc else None,
        attempt=attempt,
        input_tokens=u.input_tokens,
        cached_input_tokens=u.cached_input_tokens,
        cache_write_tokens=u.cache_write_tokens,
        output_tokens=u.output_tokens,
        reasoning_tokens=u.reasoning_tokens,
        usage_estimated=u.estimated,
        cost_picousd=c.total,
        cost_input_picousd=c.input,
        cost_cached_input_picousd=c.cached_input,
        cost_cache_write_picousd=c.cache_write,
        cost_output_picousd=c.output,
        cost_reasoning_picousd=c.reasoning,
        saved_picousd=done.saved.total,
        unpriced=c.unpriced,
        latency_ms=done.latency_ms,
        ttft_ms=done.ttft_ms,
        cache_hit=done.cache_hit,
        ai_called=done.ai_called,
        degraded=call.degraded,
        route_reason=done.route_reason,
        criticality=req.criticality,
        source=req.source,
        prompt=prompt_text(req) if bodies else None,
        response=done.text if bodies else None,
        metadata=dict(req.metadata),
        cache_write_1h_tokens=u.cache_write_1h_tokens,
        price_flags=c.flags,
        key=req.key,
    )


def prompt_text(req: ChatRequest) -> str:
    """The prompt as stored when bodies are logged: one 'role: content' line per message."""
    return "\n".join(f"{m.role}: {m.content}" for m in req.messages)


def estimated_usage(cand: Candidate, text: str) -> Usage:
    """Usage a provider did not report: the prompt as counted, ``text`` as the output."""
    out = tokens.count_text(cand.model, text)
    return Usage(input_tokens=cand.prompt_tokens, output_tokens=out, estimated=True)


def failed_call(
    call: Call, cand: Candidate | None, exc: CostlineError, attempt: int, partial: str = ""
) -> tuple[Candidate, Completion, Status]:
    """(candidate, Completion, status) of a failed attempt or a call stopped before any.

    A stream cut mid-way was still generated (and billed): its partial text is estimated and
    priced, never $0. ``attempt`` 0 means no provider was called.
    """
    model = call.req.model or exc.model or ""
    cand = cand or Candidate(model, exc.provider or "", model, None)
    usage, cost = Usage(), Cost(unpriced=isinstance(exc, UnpricedModel))
    if partial:
        usage = estimated_usage(cand, partial)
        cost = price(usage, cand.row) if cand.row else Cost(unpriced=True)
    failed = call.completion(
        cand,
        partial,
        usage,
        cost,
        ai_called=attempt > 0,
        reason=None if cand.model else call.route_reason,
    )
    status: Status = "error"
    if isinstance(exc, BudgetExceeded):
        status = "blocked"
    elif isinstance(exc, RateLimitExceeded):
        status = "rate_limited"
    return cand, failed, status
