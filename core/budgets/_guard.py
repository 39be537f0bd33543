"""BudgetGuard: step 5 of the call path - reserve before the call, settle after.

One ``admit`` is one ``State.admit`` round trip carrying every applicable rate item and one
budget item per (matching budget, limit): USD budgets reserve the estimated cost in picodollars,
token budgets the estimated tokens. The state checks and reserves all of them atomically, so
concurrent calls cannot overshoot a cap. Caps per budget ``action`` (L = limit,
H = soft_multiplier x L):

    | action  | non-critical                          | critical        |
    |---------|---------------------------------------|-----------------|
    | alert   | tracked only, never blocks            | tracked only    |
    | block   | blocked past L                        | blocked past H  |
    | degrade | past L: degrade (nothing reserved);   | blocked past H  |
    |         | with degraded=True: blocked past H    |                 |

A USD item whose estimate is $0 (an open/free model) is tracked only: it is never blocked.
After the call ``settle`` moves each reservation to the actual amount (0 on failure) and adds
it to the window's committed counter; thresholds crossed by committed spend go to the
``AlertSink`` (once per budget, window and threshold, across processes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.alerts import AlertSink
from core.control import Budget, RateLimit, validate_budget, validate_rate_limit
from core.errors import BudgetExceeded, RateLimited
from core.ratelimits import describe, rate_items
from core.state import BudgetItem, Settlement, State
from core.types import ChatRequest, pico_to_usd

from . import _format as fmt
from ._decision import BudgetUse, Decision, Hold
from ._status import BudgetStatus, budget_status, reached
from ._window import Window, matches, window

log = logging.getLogger(__name__)
Canonical = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class _Plan:
    budget: Budget
    window: Window
    metric: str
    limit: int
    hard: int
    amount: int
    cap: int | None  # None: tracked only
    soft: bool  # exceeding cap asks to degrade instead of blocking

    @property
    def key(self) -> str:
        return self.window.usd_key if self.metric == "usd" else self.window.tokens_key


def hard_cap(budget: Budget, limit: int) -> int:
    return int(Decimal(repr(float(budget.soft_multiplier))) * limit)


def utilisation(value: int, limit: int) -> float:
    if limit > 0:
        return value / limit
    return 0.0 if value <= 0 else float("inf")


class BudgetGuard:
    """Budgets and rate limits over one ``State``. ``canonical`` (e.g. ``catalog.canonical``)
    lets model-scoped budgets and limits see aliases as one model. Thread-safe."""

    def __init__(self, state: State, *, clock: Callable[[], datetime] | None = None,
                 alerts: AlertSink | None = None, canonical: Canonical | None = None):
        self.state = state
        self.alerts = alerts
        self.canonical = canonical
        self._injected_clock = clock is not None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._valid: dict[Any, Any] = {}

    # -- admission ----------------------------------------------------------------------
    def admit(self, req: ChatRequest, model: str, provider: str, est_cost_picousd: int,
              est_tokens: int, budgets: Sequence[Budget], rates: Sequence[RateLimit], *,
              degraded: bool = False) -> Decision:
        """Check and reserve for one candidate. ``degraded=True``: this call already is the
        degraded choice (or there is none), so 'degrade' budgets run on to their hard cap."""
        now = self._clock()
        critical = req.criticality == "critical"
        applied = rate_items([self._rate(r) for r in rates], req, model, provider, est_tokens,
                             self.canonical)
        plans: list[_Plan] = []
        ids: set[str] = set()
        for raw in budgets:
            b = self._budget(raw)
            if b.id in ids or not matches(b, req, model, provider, self.canonical):
                continue  # a budget listed twice counts once
            ids.add(b.id)
            win = window(b, now)
            if b.limit_picousd is not None:
                plans.append(self._plan(b, win, "usd", b.limit_picousd, est_cost_picousd,
                                        critical, degraded))
            if b.limit_tokens is not None:
                plans.append(self._plan(b, win, "tokens", b.limit_tokens, est_tokens,
                                        critical, degraded))
        done = Decision(model, provider, True, critical, degraded)
        if not plans and not applied:
            return done
        items = [BudgetItem(p.key, -1 if p.cap is None else p.cap, p.amount, p.window.ttl_s(now))
                 for p in plans]
        at = now.timestamp() if self._injected_clock else None
        adm = self.state.admit([a.item for a in applied], items, at)
        values = adm.budget_values or [0] * len(plans)
        done.uses = _uses(plans, values)
        if adm.ok:
            done.holds = tuple(Hold(p.budget, p.window, p.metric, p.key, p.amount) for p in plans)
            done.over_soft = any(p.cap is not None and v + p.amount > p.limit
                                 for p, v in zip(plans, values, strict=True))
            return done
        done.admitted = False
        if adm.reason != "budget":
            retry = adm.retry_after_s
            retry = None if retry is None or retry == float("inf") else retry
            if adm.reason == "rate" and adm.failed_index is not None:
                done.reason = describe(applied[adm.failed_index], adm.retry_after_s)
            else:
                done.reason = "live state unavailable (fail-closed policy)"
            done.rate_limited = RateLimited(done.reason, retry_after=retry, model=model,
                                            provider=provider)
            return done
        over = [(p, v) for p, v in zip(plans, values, strict=True)
                if p.cap is not None and v + p.amount > p.cap]
        if not over and adm.failed_index is not None:  # the state saw a value we did not
            over = [(plans[adm.failed_index], values[adm.failed_index])]
        hard = [(p, v) for p, v in over if not p.soft]
        p, v = (hard or over)[0]
        use = next(u for u in done.uses if u.budget is p.budget)
        done.budget, done.utilisation = p.budget, use.utilisation
        if hard:
            text = fmt.exceeded(p.budget, p.window, p.metric, v, p.limit, p.hard, p.amount,
                                p.cap or 0)
            done.blocked = BudgetExceeded(text, budget=p.budget.id, limit=_money(p, p.limit),
                                          spent=_money(p, v), window=p.window.label,
                                          model=model, provider=provider)
            done.reason = text
        else:
            done.degrade, done.degrade_to = True, p.budget.degrade_to
            done.reason = (f"{fmt.head(p.budget)} at {use.utilisation:.0%} {fmt.where(p.window)}"
                           f": non-critical call over the soft limit, degrade")
        return done

    def _plan(self, b: Budget, win: Window, metric: str, limit: int, amount: int,
              critical: bool, degraded: bool) -> _Plan:
        hard = hard_cap(b, limit)
        amount = max(0, amount)
        if b.action == "alert" or (metric == "usd" and amount == 0):
            return _Plan(b, win, metric, limit, hard, amount, None, False)
        if critical or (b.action == "degrade" and degraded):
            return _Plan(b, win, metric, limit, hard, amount, hard, False)
        return _Plan(b, win, metric, limit, hard, amount, limit, b.action == "degrade")

    # -- settlement ---------------------------------------------------------------------
    def settle(self, decision: Decision, actual_cost_picousd: int, actual_tokens: int) -> None:
        """Move the reservations to the actual amounts (0, 0 releases them) and fire any
        threshold the committed spend crossed. A second settle of one decision does nothing."""
        if decision.settled or not decision.admitted:
            return
        decision.settled = True
        if not decision.holds:
            return
        now = self._clock()
        items: list[Settlement] = []
        for h in decision.holds:
            actual = max(0, actual_cost_picousd if h.metric == "usd" else actual_tokens)
            ttl = h.window.ttl_s(now)
            if actual != h.amount:
                items.append(Settlement(h.key, h.amount, actual, ttl))
            if actual:
                items.append(Settlement(Window.committed(h.key), 0, actual, ttl))
        if items:
            self.state.settle(items)
        if self.alerts is not None and (actual_cost_picousd or actual_tokens):
            try:
                self._thresholds(decision.holds)
            except Exception:  # alerting must never break a completed call
                log.exception("budget threshold check failed")

    def release(self, decision: Decision) -> None:
        """The call failed before anything was billed: give the reservations back."""
        self.settle(decision, 0, 0)

    def _thresholds(self, holds: Sequence[Hold]) -> None:
        sink = self.alerts
        assert sink is not None
        todo: list[Hold] = []
        for h in holds:
            b, label = h.budget, h.window.label
            if any(not sink.seen("budget", b.id, label, t) for t in b.thresholds):
                todo.append(h)
        if not todo:
            return
        values = self.state.get_values([Window.committed(h.key) for h in todo])
        for h, value in zip(todo, values, strict=True):
            b = h.budget
            limit = b.limit_picousd if h.metric == "usd" else b.limit_tokens
            if limit is None:
                continue
            for t in b.thresholds:
                if reached(value, limit, t) and not sink.seen("budget", b.id, h.window.label, t):
                    usd = value if h.metric == "usd" else None
                    tok = value if h.metric == "tokens" else None
                    text = fmt.threshold(b, h.window, t, h.metric, value, limit)
                    sink.budget_alert(b, h.window.label, t, text, spent_picousd=usd,
                                      spent_tokens=tok)

    # -- console ------------------------------------------------------------------------
    def status(self, budgets: Sequence[Budget], now: datetime | None = None) -> list[BudgetStatus]:
        """Live utilisation of each budget in the window holding ``now``."""
        return budget_status(self.state, [self._budget(b) for b in budgets],
                             now or self._clock(), self.alerts)

    def window(self, budget: Budget, now: datetime | None = None) -> Window:
        return window(self._budget(budget), now or self._clock())

    # -- validation (the control plane's rules, memoised per value) ---------------------
    def _budget(self, b: Budget) -> Budget:
        got = self._checked(b, validate_budget)
        assert isinstance(got, Budget)
        return got

    def _rate(self, r: RateLimit) -> RateLimit:
        got = self._checked(r, validate_rate_limit)
        assert isinstance(got, RateLimit)
        return got

    def _checked(self, value: Any, validate: Callable[[Any], Any]) -> Any:
        try:
            got = self._valid.get(value)
        except TypeError:  # unhashable field (a list of thresholds): validate every time
            return validate(value)
        if got is None:
            got = validate(value)
            if len(self._valid) > 4096:
                self._valid.clear()
            self._valid[value] = got
        return got


def _uses(plans: Sequence[_Plan], values: Sequence[int]) -> tuple[BudgetUse, ...]:
    out: dict[str, BudgetUse] = {}
    for p, v in zip(plans, values, strict=True):
        prev = out.get(p.budget.id)
        usd = v if p.metric == "usd" else (prev.spent_picousd if prev else None)
        tok = v if p.metric == "tokens" else (prev.tokens if prev else None)
        util = max(utilisation(v, p.limit), prev.utilisation if prev else 0.0)
        out[p.budget.id] = BudgetUse(p.budget, p.window, usd, tok, util)
    return tuple(out.values())


def _money(p: _Plan, value: int) -> Decimal | int:
    return pico_to_usd(value) if p.metric == "usd" else value

