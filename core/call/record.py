"""Step 8, record: every outcome (success, failed attempt, cache hit, skip, block) becomes
exactly one usage event, plus an OpenTelemetry span when tracing is on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core import clock, tokens
from core.errors import BudgetExceeded, CostlineError, RateLimitExceeded, UnpricedModel
from core.pricing import price
from core.types import ChatRequest, Completion, Cost, Usage
from core.usage import Status

from .context import Context
from .state import Call, Candidate

__all__ = [
    "estimated_usage",
    "failed_call",
    "prompt_text",
    "record",
    "record_error",
    "usage_row",
]


def record(
    ctx: Context,
    call: Call,
    cand: Candidate,
    attempt: int,
    status: Status,
    done: Completion,
    exc: CostlineError | None,
    at: datetime | None = None,
) -> None:
    """Append the event of one outcome to the usage log and trace it. ``at``: its ts (the
    time its budget reservation settled, if any), else now."""
    project = call.req.project
    bodies = project is not None and project in ctx.settings.log_bodies_projects
    row = usage_row(call, cand, attempt, status, done, exc, bodies=bodies, at=at)
    ctx.log.append_row(row)
    ctx.tracer.record(call.start_ns, call.req, done, exc)


def record_error(
    ctx: Context,
    call: Call,
    cand: Candidate | None,
    exc: CostlineError,
    attempt: int,
    partial: str = "",
    at: datetime | None = None,
) -> tuple[Cost, int]:
    """Record a failed attempt (``attempt`` 0: a call stopped before any); returns its cost
    and tokens (a stream cut mid-way: the prompt and the partial answer, as priced)."""
    cand, failed, status = failed_call(call, cand, exc, attempt, partial)
    record(ctx, call, cand, attempt, status, failed, exc, at)
    return failed.cost, failed.usage.total_tokens


def usage_row(
    call: Call,
    cand: Candidate,
    attempt: int,
    status: Status,
    done: Completion,
    exc: CostlineError | None,
    *,
    bodies: bool,
    at: datetime | None = None,
) -> tuple[Any, ...]:
    """The event of one attempt's outcome as the usage log stores it: its values in
    ``core.usage.COLUMNS`` order (what ``event_row(UsageEvent(...))`` gives), built once
    with no ``UsageEvent`` in between. Prompt and response only when ``bodies``; ``ts`` is
    ``at`` (default: now)."""
    req, u, c = call.req, done.usage, done.cost
    return (
        req.request_id,
        at or clock.now(),  # ts
        req.org,
        req.project,
        req.user,
        req.task,
        req.app,
        req.tags,
        cand.provider,
        cand.model,
        call.requested_model or None,
        status,
        exc.error_type if exc else None,
        exc.message if exc else None,
        attempt,
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.estimated,  # usage_estimated
        c.total,  # cost_picousd
        c.input,
        c.cached_input,
        c.cache_write,
        c.output,
        c.reasoning,
        done.saved.total,  # saved_picousd
        c.unpriced,
        done.latency_ms,
        done.ttft_ms,
        done.cache_hit,
        done.ai_called,
        call.degraded,
        done.route_reason,
        req.criticality,
        req.source,
        prompt_text(req) if bodies else None,  # prompt
        done.text if bodies else None,  # response
        req.metadata,  # serialised at once: no copy needed
        u.cache_write_1h_tokens,
        c.flags,  # price_flags
        req.key,
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
