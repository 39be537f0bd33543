"""admit_first: walk the router's ordered candidates until one is admitted.

A rate-limited or over-budget candidate is skipped in favour of the next. A candidate that a
'degrade' budget sends elsewhere is re-admitted as a degraded call on the target the router
names (``degrade(decision)``; e.g. the budget's or the task policy's ``degrade_to``), or on the
same model when there is none (it may then run to the budget's hard cap). When nothing is left
the caller gets ``RateLimitExceeded`` (smallest ``retry_after``) if any candidate was rate-limited,
else the first ``BudgetExceeded``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from core.control import Budget, RateLimit
from core.errors import CostlineError, RateLimitExceeded
from core.types import ChatRequest

from ._decision import Decision
from ._guard import BudgetGuard


@dataclass(frozen=True, slots=True)
class Estimate:
    """A candidate as the guard needs it: where it goes and what it may cost."""

    model: str
    provider: str
    cost_picousd: int
    tokens: int


@dataclass(slots=True)
class Choice:
    """The admitted candidate. ``index`` is its position in the candidates (for a degraded
    call: the candidate it replaced); ``skipped`` lists (model, reason) of those passed over."""

    decision: Decision
    estimate: Estimate
    index: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    degraded_from: str | None = None

    @property
    def degraded(self) -> bool:
        return self.decision.degraded


Degrade = Callable[[Decision], Estimate | None]


def admit_first(
    guard: BudgetGuard,
    req: ChatRequest,
    candidates: Iterable[Estimate],
    budgets: Sequence[Budget],
    rates: Sequence[RateLimit],
    *,
    degrade: Degrade | None = None,
) -> Choice:
    """``candidates`` may be lazy (a generator): later ones are only estimated when an
    earlier one is not admitted."""
    skipped: list[tuple[str, str]] = []
    refused: list[Decision] = []
    admit = guard.admit
    for i, est in enumerate(candidates):
        d = admit(req, est.model, est.provider, est.cost_picousd, est.tokens, budgets, rates)
        if d.admitted:
            return Choice(d, est, i, skipped)
        if d.degrade:
            target = degrade(d) if degrade is not None else None
            use = est if target is None else target
            again = admit(
                req,
                use.model,
                use.provider,
                use.cost_picousd,
                use.tokens,
                budgets,
                rates,
                degraded=True,
            )
            if again.admitted:
                return Choice(again, use, i, skipped, degraded_from=est.model)
            skipped.append((est.model, d.reason))
            if use is not est:
                skipped.append((use.model, again.reason))
            refused.append(again)
            continue
        skipped.append((est.model, d.reason))
        refused.append(d)
    if not refused:
        raise ValueError("admit_first needs at least one candidate")
    raise none_left(refused, skipped)


def none_left(refused: Sequence[Decision], skipped: Sequence[tuple[str, str]]) -> CostlineError:
    limited = [d for d in refused if d.rate_limited is not None]
    if limited:
        waits = [d.retry_after for d in limited if d.retry_after is not None]
        detail = "; ".join(f"{m}: {why}" for m, why in skipped)
        first = limited[0]
        return RateLimitExceeded(
            f"no candidate can be called now ({detail})",
            retry_after=min(waits) if waits else None,
            model=first.model,
            provider=first.provider,
        )
    blocked = next((d.blocked for d in refused if d.blocked is not None), None)
    if blocked is None:  # not reachable: a refused decision is rate-limited or blocked
        return RateLimitExceeded("no candidate was admitted: " + "; ".join(w for _, w in skipped))
    return blocked
