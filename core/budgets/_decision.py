"""What an admission decided: the Decision, its reservations and the budgets it saw."""

from __future__ import annotations

from dataclasses import dataclass

from core.control import Budget
from core.errors import BudgetExceeded, CostlineError, RateLimited

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
    rate_limited: RateLimited | None = None
    budget: Budget | None = None  # the budget that blocked or asks to degrade
    utilisation: float | None = None  # that budget's utilisation before this call
    over_soft: bool = False  # admitted past a soft limit (critical or degraded call)
    uses: tuple[BudgetUse, ...] = ()
    holds: tuple[Hold, ...] = ()
    reason: str = ""
    settled: bool = False

    @property
    def retry_after(self) -> float | None:
        return None if self.rate_limited is None else self.rate_limited.retry_after

    @property
    def error(self) -> CostlineError | None:
        return self.blocked or self.rate_limited
