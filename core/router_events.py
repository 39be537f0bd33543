"""Step 8's records: the usage event of a call's outcome, and the Completion of a failed one.

Every outcome (success, failed attempt, cache hit, skip, block) becomes exactly one event.
"""

from __future__ import annotations

from core import tokens
from core.errors import BudgetExceeded, CostlineError, RateLimited, UnpricedModel
from core.pricing import price
from core.router_plan import Candidate, Plan, prompt_text
from core.types import Completion, Cost, Usage
from core.usage import UsageEvent
from core.usage._schema import Status


def usage_event(
    plan: Plan,
    cand: Candidate,
    attempt: int,
    status: Status,
    done: Completion,
    exc: CostlineError | None,
    *,
    bodies: bool,
) -> UsageEvent:
    """The event for one attempt's outcome; prompt and response only when ``bodies``."""
    req, u, c = plan.req, done.usage, done.cost
    return UsageEvent(
        request_id=req.request_id,
        ts=plan.now(),
        org=req.org,
        project=req.project,
        user=req.user,
        task=req.task,
        app=req.app,
        tags=req.tags,
        provider=cand.provider,
        model=cand.model,
        requested_model=plan.requested_model or None,
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
        degraded=plan.degraded,
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


def estimated_usage(cand: Candidate, text: str) -> Usage:
    """Usage a provider did not report: the prompt as counted, ``text`` as the output."""
    out = tokens.count_text(cand.model, text)
    return Usage(input_tokens=cand.prompt_tokens, output_tokens=out, estimated=True)


def failed_call(
    plan: Plan, cand: Candidate | None, exc: CostlineError, attempt: int, partial: str = ""
) -> tuple[Candidate, Completion, Status]:
    """(candidate, Completion, status) of a failed attempt or a call stopped before any.

    A stream cut mid-way was still generated (and billed): its partial text is estimated and
    priced, never $0. ``attempt`` 0 means no provider was called.
    """
    model = plan.req.model or exc.model or ""
    cand = cand or Candidate(model, exc.provider or "", model, None)
    usage, cost = Usage(), Cost(unpriced=isinstance(exc, UnpricedModel))
    if partial:
        usage = estimated_usage(cand, partial)
        cost = price(usage, cand.row) if cand.row else Cost(unpriced=True)
    failed = plan.completion(
        cand,
        partial,
        usage,
        cost,
        ai_called=attempt > 0,
        reason=None if cand.model else plan.route_reason,
    )
    status: Status = "error"
    if isinstance(exc, BudgetExceeded):
        status = "blocked"
    elif isinstance(exc, RateLimited) and attempt == 0:
        status = "rate_limited"
    return cand, failed, status
