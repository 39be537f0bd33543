"""admit_first: walk the router's ordered candidates until one is admitted.

A rate-limited or over-budget candidate is skipped in favour of the next. A candidate that a
'degrade' budget sends elsewhere is re-admitted as a degraded call on the target the router
names (``degrade(decision)``; e.g. the budget's or the task policy's ``degrade_to``), or on the
same model when there is none (it may then run to the budget's hard cap). When nothing is left
the caller gets ``RateLimitExceeded`` (smallest ``retry_after``) if any candidate was rate-limited,
else the first ``BudgetExceeded``.

The optimistic degrade: a degraded call costs two admissions (the candidate, told to degrade,
then its target). When the last admission of the same candidate (same request scope and
snapshot) asked to degrade, the target is admitted first, in one step conditioned on the
candidate still being one the budgets send elsewhere (``BudgetGuard.degrade_hint`` and
``admit_instead``); the outcome - decisions, reasons, reservations - is the two-step one. When
the condition fails (the counter fell: a settle, the reconciler, a new window; or a hard line
is now over), or the target's budget lines or rate items differ from the candidate's, nothing
was reserved and the two steps run as before. So ``degrade(decision)`` may be asked before the
candidate's own admission, with a Decision carrying only ``model``, ``provider`` and
``degrade_to``: it must depend on those alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from core.control import Budget, RateLimit
from core.errors import CostlineError, RateLimitExceeded
from core.types import ChatRequest

from ._decision import Decision
from ._guard import BudgetGuard


class Estimate(NamedTuple):
    """A candidate as the guard needs it: where it goes and what it may cost (a tuple:
    ``admit_instead`` takes it as is)."""

    model: str
    provider: str
    cost_picousd: int
    tokens: int


@dataclass(slots=True)
class Choice:
    """The admitted candidate. ``index`` is its position in the candidates (for a degraded
    call: the candidate it replaced); ``skipped`` lists (model, reason) of those passed over;
    ``asked`` is, for a degraded call with a ``degrade`` callback, the decision that asked to
    degrade (it names the budget; from the optimistic degrade it has no ``lines``)."""

    decision: Decision
    estimate: Estimate
    index: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    degraded_from: str | None = None
    asked: Decision | None = None

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
        if degrade is not None:  # the optimistic degrade (module docstring)
            hint = guard.degrade_hint(req, est.model, est.provider, budgets, rates)
            if hint is not None:
                use = degrade(hint) or est
                pair = guard.admit_instead(req, est, use, budgets, rates)
                if pair is not None:
                    return Choice(pair[1], use, i, skipped, est.model, pair[0])
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
                by = d if degrade is not None else None
                return Choice(again, use, i, skipped, est.model, by)
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
