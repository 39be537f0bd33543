"""Step 5, admit: the next candidate to call, fitted to its context window and admitted by
every matching budget and rate limit.

The guard reserves the candidate's estimate atomically. A rate-limited or over-budget
candidate is skipped for the next (noted in the route reason); over a soft limit a
non-critical call degrades to the budget's (or the task policy's) cheaper model (estimated
before the candidate's own admission when the optimistic degrade applies:
docs/architecture.md, "Degrading"); when none is left the call is refused
(``BudgetExceeded`` names the budget, ``RateLimitExceeded`` carries ``retry_after``). The
reservation is released before the next candidate and at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

from core.budgets import Decision, Estimate, admit_first, scope_text
from core.control import Budget
from core.errors import PolicyError, RetryableError

from . import gate
from .context import Context
from .estimate import fit, reservation
from .record import record_error
from .route import candidate
from .state import Call, Candidate

__all__ = ["budget_text", "finish", "next_candidate", "release"]

PERIOD_WORD = {"day": "daily", "week": "weekly", "month": "monthly"}


def next_candidate(ctx: Context, call: Call) -> Candidate | None:
    """The next candidate to call, admitted by budgets and rate limits; None when done."""
    release(ctx, call)
    if call.last is not None and not isinstance(call.last, RetryableError):
        raise call.last
    rest = iter(call.pending)  # fitted lazily: later candidates only when needed
    call.pending = []
    first = next((c for c in rest if fit(ctx, call, c)), None)
    if first is None:
        if call.last is None and call.too_big is not None:
            record_error(ctx, call, None, call.too_big, 0)
            raise call.too_big
        return None
    ctl, snap = ctx.controls, call.snap
    if ctl is None or snap is None:
        call.pending = list(rest)
        return first
    fitting = [first]  # the candidates fitted so far, in order

    def estimates() -> Iterator[Estimate]:
        yield reservation(call, first)
        for c in rest:
            if fit(ctx, call, c):
                fitting.append(c)
                yield reservation(call, c)

    extra: dict[str, Candidate] = {}

    def degrade(d: Decision) -> Estimate | None:  # reads d.model and d.degrade_to only
        target = d.degrade_to or call.degrade_to
        if not target or target == d.model:
            return None
        cand = extra.get(target) or candidate(ctx, target)
        if not fit(ctx, call, cand):
            return None
        extra[target] = cand
        return reservation(call, cand)

    budgets, rates = ctl.active_budgets(snap), snap.rate_limits
    try:
        down = None if call.embedding else degrade  # an embedding has no cheaper chat model
        choice = admit_first(ctl.guard, call.req, estimates(), budgets, rates, degrade=down)
    except PolicyError as exc:
        call.last = exc
        record_error(ctx, call, first, exc, 0)
        raise
    call.decision = choice.decision
    call.pending = fitting[choice.index + 1 :] + list(rest)
    call.provider_called = True  # from here on the sampling gate counts a real call
    if choice.skipped:
        call.notes.append("skipped " + "; ".join(f"{m} ({w})" for m, w in choice.skipped))
    cand = fitting[choice.index]
    if choice.degraded_from is not None:
        d = choice.asked or choice.decision
        if choice.estimate.model != cand.model:
            cand = extra[choice.estimate.model]
        why = budget_text(d.budget, d.utilisation)
        if cand.model == choice.degraded_from:  # nothing cheaper: same model, to the cap
            call.route_reason = f"{cand.model}: {why}, over the soft limit, no degrade target"
        else:
            call.degraded = True
            call.route_reason = ctl.routing.explain_degrade(cand.model, choice.degraded_from, why)
    return cand


def release(ctx: Context, call: Call) -> None:
    """Give back the reservation held for the current candidate, if any."""
    if call.decision is not None and ctx.controls is not None:
        ctx.controls.guard.release(call.decision)
    call.decision = None


def finish(ctx: Context, call: Call) -> None:
    """End of a call, however it ended: give back any reservation, and tell the sampling
    gate when its call never reached a provider (blocked, nothing fitted)."""
    release(ctx, call)
    gate.report(ctx, call)


def budget_text(budget: Budget | None, utilisation: float | None) -> str:
    """'org=acme at 93% of monthly budget 'acme monthly''."""
    if budget is None:
        return "over budget"
    pct = f"{utilisation:.0%}" if utilisation is not None else "over"
    word = PERIOD_WORD.get(budget.period, budget.period)
    return f"{scope_text(budget)} at {pct} of {word} budget '{budget.name}'"
