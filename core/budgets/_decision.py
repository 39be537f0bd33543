"""What an admission decided: the Decision, its reservations and the budgets it saw."""

from __future__ import annotations

from dataclasses import dataclass

from core.control import Budget
from core.errors import BudgetExceeded, CostlineError, RateLimitExceeded
from core.state import RateCharge

from ._window import Window


@dataclass(frozen=True, slots=True)
class Hold:
    """One reservation held by an admitted call."""

    budget: Budget
    window: Window
    metric: str  # 'usd' | 'tokens'
    key: str
    amount: int


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """A matching budget as this call saw it (values before the call, in-flight included)."""

    budget: Budget
    window: Window
    spent_picousd: int | None  # None: the budget has no USD limit
    tokens: int | None  # None: no token limit
    utilisation: float  # the larger of spent/limit and tokens/limit


@dataclass(slots=True)
class Line:
    """One (budget, metric) of an admission: the reservation asked for and its caps. It is
    also the item ``State.admit`` reserves (a ``core.state.Reservation``)."""

    budget: Budget
    window: Window
    metric: str  # 'usd' | 'tokens'
    key: str  # the live counter
    budget_limit: int  # the budget's limit (L) in this metric
    hard: int  # soft_multiplier x L
    amount: int  # >= 0
    cap: int | None  # what admission allows: L or hard; None: tracked only
    soft: bool  # exceeding cap asks to degrade instead of blocking
    ttl_s: float | None = None  # the counter's time to live
    value: int = 0  # the counter's value before this call (in-flight included)

    @property
    def limit(self) -> int:
        """The cap as ``State.admit`` reads it (-1: never block)."""
        return -1 if self.cap is None else self.cap


@dataclass(slots=True)
class Decision:
    """Outcome of ``BudgetGuard.admit``. Only an admitted decision holds reservations, and
    it must be settled (``settle``/``release``) exactly once."""

    model: str
    provider: str
    admitted: bool
    critical: bool = False
    degraded: bool = False  # admitted as a degraded call (admit(..., degraded=True))
    degrade: bool = False  # not admitted: re-route this non-critical call to a cheaper model
    degrade_to: str | None = None  # the budget's degrade target, if it names one
    blocked: BudgetExceeded | None = None
    rate_limited: RateLimitExceeded | None = None
    budget: Budget | None = None  # the budget that blocked or asks to degrade
    utilisation: float | None = None  # that budget's utilisation before this call
    over_soft: bool = False  # admitted past a soft limit (critical or degraded call)
    reason: str = ""
    settled: bool = False
    lines: tuple[Line, ...] = ()  # every matching (budget, metric); reserved when admitted
    charges: tuple[RateCharge, ...] = ()  # tokens-per-minute limits' reservations, if admitted

    @property
    def uses(self) -> tuple[BudgetUse, ...]:
        """Each matching budget as this call saw it (one entry per budget)."""
        out: dict[str, BudgetUse] = {}
        for ln in self.lines:
            prev = out.get(ln.budget.id)
            v = ln.value
            usd = v if ln.metric == "usd" else (prev.spent_picousd if prev else None)
            tok = v if ln.metric == "tokens" else (prev.tokens if prev else None)
            util = max(utilisation(v, ln.budget_limit), prev.utilisation if prev else 0.0)
            out[ln.budget.id] = BudgetUse(ln.budget, ln.window, usd, tok, util)
        return tuple(out.values())

    @property
    def holds(self) -> tuple[Hold, ...]:
        """The reservations an admitted decision holds until it is settled."""
        if not self.admitted:
            return ()
        return tuple(Hold(ln.budget, ln.window, ln.metric, ln.key, ln.amount) for ln in self.lines)

    @property
    def retry_after(self) -> float | None:
        return None if self.rate_limited is None else self.rate_limited.retry_after

    @property
    def error(self) -> CostlineError | None:
        return self.blocked or self.rate_limited


def utilisation(value: int, limit: int) -> float:
    if limit > 0:
        return value / limit
    return 0.0 if value <= 0 else float("inf")
