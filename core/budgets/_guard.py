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
A degraded call is two admissions (the candidate, told to degrade, then the target with
``degraded=True``), or one with the optimistic degrade (``degrade_hint``, ``admit_instead``):
the target admitted in one ``State.admit_if`` step on the condition that the candidate would
still be told to degrade (docs/architecture.md, "Degrading").
After the call ``settle`` moves each reservation to the actual amount (0 on failure) and adds
it to the window's committed counter - the window holding the settle's time, which is the
usage event's ``ts``: a call answered after its admission's window ended gives the
reservation back there and counts in the new window (docs/architecture.md, "Windows and
ts") - and corrects each tokens-per-minute rate limit's charge
(the reservation, taken at admission) to the tokens used, in the same state step; thresholds
crossed by committed spend go to the ``AlertSink`` (once per budget, window and threshold,
across processes).

Per call the guard does no validation, zoneinfo or matching (``Index`` works them out once per
control-plane snapshot, a budget's window once per window), and no extra read for thresholds:
the settle step returns the committed values it wrote, and only a threshold those values
reached (and this sink has not recorded) goes to the sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from core import clock as clock_
from core.alerts import AlertSink
from core.control import Budget, RateLimit, validate_budget
from core.errors import BudgetExceeded, RateLimitExceeded
from core.ratelimits import AppliedLimit, describe
from core.state import Admission, BreakerState, Delta, RateFix, Settlement, State
from core.types import ChatRequest, pico_to_usd

from . import _format as fmt
from ._decision import Decision, Line, utilisation
from ._match import NO_SHORTCUT, Canonical, Match, Matcher, hard_cap
from ._status import BudgetStatus, budget_status, reached
from ._window import GRACE_S, Window, window

log = logging.getLogger(__name__)
__all__ = ["BudgetGuard", "hard_cap"]


class BudgetGuard:
    """Budgets and rate limits over one ``State``. ``canonical`` (e.g. ``catalog.canonical``)
    lets model-scoped budgets and limits see aliases as one model. Thread-safe."""

    def __init__(
        self,
        state: State,
        *,
        clock: Callable[[], datetime] | None = None,
        alerts: AlertSink | None = None,
        canonical: Canonical | None = None,
    ):
        self.state = state
        self.alerts = alerts
        self._m = Matcher(canonical)  # the current snapshot's Index
        self._injected_clock = clock is not None
        self._clock = clock or clock_.now

    @property
    def canonical(self) -> Canonical | None:
        return self._m.canonical

    @canonical.setter
    def canonical(self, value: Canonical | None) -> None:
        self._m = Matcher(value)

    def _now(self) -> tuple[float, datetime | None]:
        """(POSIX seconds, the clock's datetime or None when not needed yet)."""
        if self._injected_clock:
            now = self._clock()
            return now.timestamp(), now
        return clock_.timestamp(), None

    # -- admission ----------------------------------------------------------------------
    def admit(
        self,
        req: ChatRequest,
        model: str,
        provider: str,
        est_cost_picousd: int,
        est_tokens: int,
        budgets: Sequence[Budget],
        rates: Sequence[RateLimit],
        *,
        degraded: bool = False,
    ) -> Decision:
        """Check and reserve for one candidate. ``degraded=True``: this call already is the
        degraded choice (or there is none), so 'degrade' budgets run on to their hard cap."""
        ts, now = self._now()
        critical = req.criticality == "critical"
        ix = self._m.index(budgets, rates)
        match = ix.match(req, model, provider, critical, degraded)
        applied, items = match.applied, match.items
        if applied is None or items is None:  # token-metric or model-scoped limits: per call
            applied = ix.applied(req, model, provider, est_tokens)
            items = [a.item for a in applied]
        lines = _lines(match, ts, now, est_cost_picousd, est_tokens)
        done = Decision(model, provider, True, critical, degraded)
        if not lines and not applied:
            return done
        at = ts if self._injected_clock else None
        adm = self.state.admit(items, lines, at)  # lines: Reservations
        _judge(done, lines, adm, applied)
        if done.degrade:
            match.degrading = True  # the next call of this kind may try admit_instead
        return done

    def degrade_hint(
        self,
        req: ChatRequest,
        model: str,
        provider: str,
        budgets: Sequence[Budget],
        rates: Sequence[RateLimit],
    ) -> Decision | None:
        """The optimistic degrade, first half: when the last admission of this candidate
        (same request scope, same snapshot) asked to degrade and the shortcut may apply (not
        ruled out for its last target), the Decision it would ask with again (model,
        provider, ``degrade_to``; no budget yet), so the caller can estimate the target
        before ``admit_instead``. Else None."""
        if req.criticality == "critical" or getattr(self.state, "admit_if", None) is None:
            return None
        ix = self._m.index(budgets, rates)
        match = ix.match(req, model, provider, False, False)
        if not match.degrading or match.soft_to == NO_SHORTCUT:
            return None
        if match.pair is not None and match.pair[1] is None:  # its last target did not pair
            return None
        return Decision(model, provider, False, degrade=True, degrade_to=match.soft_to)

    def admit_instead(
        self,
        req: ChatRequest,
        primary: tuple[str, str, int, int],
        target: tuple[str, str, int, int],
        budgets: Sequence[Budget],
        rates: Sequence[RateLimit],
    ) -> tuple[Decision, Decision] | None:
        """The optimistic degrade, second half: admit ``target`` (model, provider, cost,
        tokens) as the degraded call in one ``State.admit_if`` step, on the condition that
        the counter values it reads are ones at which ``admit(primary)`` asks to degrade -
        some soft line of the primary over its limit, none of its other lines over its cap
        (the rate items are the same, so they pass for both). That is the outcome of
        ``admit(primary)`` then ``admit(target, degraded=True)`` at one instant: the pair
        (the primary's Decision as ``admit`` builds it - budget, utilisation, reason,
        ``degrade_to`` - but without its lines, which nothing reserved; and the target's
        admitted Decision). None, with nothing reserved or taken, when the shortcut does not
        apply (the target's budget lines or rate items differ from the primary's, a State
        without ``admit_if``) or the state refused (the caller then takes the two steps)."""
        admit_if = getattr(self.state, "admit_if", None)
        if admit_if is None or req.criticality == "critical":
            return None
        ts, now = self._now()
        ix = self._m.index(budgets, rates)
        pm = ix.match(req, primary[0], primary[1], False, False)
        tm = ix.match(req, target[0], target[1], False, True)
        where = pm.lines_in(tm)
        applied, items = tm.applied, tm.items
        if where is None or applied is None or items is None:
            return None
        cost, tokens = max(0, primary[2]), max(0, primary[3])
        plan: list[tuple[int, Budget, int, int, int]] = []  # (target line, budget, L, cap, amount)
        over: list[tuple[int, int]] = []  # (target line, value above which the primary is over)
        under: list[tuple[int, int]] = []
        for (e, usd, lim, _, cap, soft), j in zip(pm.specs, where, strict=True):
            amount = tokens if not usd else cost
            if cap is not None and (amount or not usd):  # a $0 USD line is tracked only
                plan.append((j, e.budget, lim, cap, amount))
                (over if soft else under).append((j, cap - amount))
            else:
                plan.append((j, e.budget, lim, -1, amount))
        if not over:  # a free primary: no soft line can be over
            return None
        tlines = _lines(tm, ts, now, target[2], target[3])
        at = ts if self._injected_clock else None
        adm: Admission = admit_if(items, tlines, at, over=over, under=under)
        if not adm.ok:
            if adm.reason == "condition":
                pm.degrading = False
            return None  # nothing reserved: the caller admits the primary as before
        again = Decision(target[0], target[1], True, False, True)
        _judge(again, tlines, adm, applied)
        # The primary's Decision as ``_judge`` builds it for these values: its first line over
        # its cap (every such line is soft: the condition held) names the budget.
        values = adm.budget_values
        j, b = next((j, b) for j, b, _, cap, amount in plan if values[j] + amount > cap >= 0)
        util = max(0.0, *(utilisation(values[i], lim) for i, o, lim, _, _ in plan if o is b))
        asked = Decision(primary[0], primary[1], False, degrade=True, degrade_to=b.degrade_to)
        asked.budget, asked.utilisation = b, util
        asked.reason = _degrade_reason(b, util, tlines[j].window)
        return asked, again

    # -- settlement ---------------------------------------------------------------------
    def settle(
        self,
        decision: Decision,
        actual_cost_picousd: int,
        actual_tokens: int,
        close: str | None = None,
        at: float | None = None,
    ) -> BreakerState | None:
        """Move the reservations to the actual amounts (0, 0 releases them), token rate limits'
        charges to the tokens used, and fire any threshold the committed spend crossed. A
        second settle of one decision does nothing. The spend counts in the window holding
        the settle's time: ``at`` (POSIX seconds; the call's usage event's ``ts``, so both
        name one window even at its edge) unless the guard has its own clock, else now.

        ``close``: a circuit breaker the call's success closes, recorded in the same state step
        when there is one and the state offers it (``settle_and_close``: one Redis round trip
        for both); its state then, else None (the caller records it)."""
        if decision.settled or not decision.admitted:
            return None
        decision.settled = True
        charges = decision.charges
        if not decision.lines:
            fixes = [(c, actual_tokens) for c in charges if c.item.cost != actual_tokens]
            return self._apply([], fixes, close)[1] if fixes else None
        ts, now = (at, None) if at is not None and not self._injected_clock else self._now()
        deltas: list[Delta] = []  # (key, actual - reserved, ttl): Settlements, flattened
        committed: list[tuple[Line, int]] = []  # (line, index of its committed value)
        for ln in decision.lines:
            actual = max(0, actual_cost_picousd if ln.metric == "usd" else actual_tokens)
            win = ln.window
            if actual and not win.start_ts <= ts < win.end_ts:  # not Window.holds(ts), inline
                # answered in another window than admitted: the spend counts where the usage
                # log's event (ts: recorded now) puts it, the reservation is given back here
                if ln.amount:
                    deltas.append((ln.key, -ln.amount, max(1.0, win.end_ts - ts + GRACE_S)))
                ln = _moved(ln, ts, now)
                win = ln.window
            ttl = max(1.0, win.end_ts - ts + GRACE_S)  # Window.ttl_at(ts)
            if actual != ln.amount:
                deltas.append((ln.key, actual - ln.amount, ttl))
            if actual:
                committed.append((ln, len(deltas)))
                deltas.append((ln.key + ":c", actual, ttl))  # Window.committed(key)
        # token rate limits' charges to correct (none for request counts)
        fixes = [(c, actual_tokens) for c in charges if c.item.cost != actual_tokens]
        values, closed = self._apply(deltas, fixes, close) if deltas or fixes else ([], None)
        if self.alerts is not None and committed:
            self._crossed(committed, values, len(deltas))
        return closed

    def _crossed(self, committed: list[tuple[Line, int]], values: list[int] | None, n: int) -> None:
        """Fire the thresholds the committed values reached (read again if not returned)."""
        try:
            if values is None or len(values) != n:  # a State that returns nothing
                self._thresholds([ln for ln, _ in committed])
            else:
                sink = self.alerts
                assert sink is not None
                for ln, i in committed:  # thresholds from the values settle returned
                    v, pcts = values[i], ln.budget.thresholds  # validated: increasing
                    if not pcts or v <= 0 or v * 100 < pcts[0] * ln.budget_limit:
                        continue  # not even the first threshold reached
                    # the first threshold not yet recorded: below it there is nothing to fire
                    k = sink.leading_seen("budget", ln.budget.id, ln.window.label, pcts)
                    if k < len(pcts) and v * 100 >= pcts[k] * ln.budget_limit:
                        self._fire(ln, v)
        except Exception:  # alerting must never break a completed call
            log.exception("budget threshold check failed")

    def _apply(
        self, deltas: list[Delta], fixes: list[RateFix] | None = None, close: str | None = None
    ) -> tuple[list[int] | None, BreakerState | None]:
        """One state step: the budget deltas, and the rate charges corrected (``fixes``: a
        State without ``apply_deltas`` leaves them as reserved); with ``close``, a breaker
        closed in the same step where the State can (else its state is None: not recorded)."""
        at = self._now()[0] if fixes and self._injected_clock else None
        both = getattr(self.state, "settle_and_close", None) if close is not None else None
        if both is not None:
            got, closed = both(deltas, fixes or (), at, close)
            return got, closed
        apply = getattr(self.state, "apply_deltas", None)
        if apply is not None:
            return (apply(deltas, fixes, at) if fixes else apply(deltas)), None
        if not deltas:
            return [], None
        return self.state.settle([Settlement(k, 0, d, ttl) for k, d, ttl in deltas]), None

    def release(self, decision: Decision) -> None:
        """The call failed before anything was billed: give the reservations back."""
        self.settle(decision, 0, 0)

    def _thresholds(self, lines: Sequence[Line]) -> None:
        """Read the committed values, for a State whose settle returns none."""
        sink = self.alerts
        assert sink is not None
        todo = [
            ln
            for ln in lines
            if any(
                not sink.seen("budget", ln.budget.id, ln.window.label, t)
                for t in ln.budget.thresholds
            )
        ]
        if todo:
            values = self.state.get_values([Window.committed(ln.key) for ln in todo])
            for ln, value in zip(todo, values, strict=True):
                self._fire(ln, value)

    def _fire(self, ln: Line, value: int) -> None:
        """Record each threshold ``value`` reached that this sink has not seen yet (the sink
        de-duplicates across processes through the control plane)."""
        sink = self.alerts
        assert sink is not None
        b, label = ln.budget, ln.window.label
        for t in b.thresholds:
            if reached(value, ln.budget_limit, t) and not sink.seen("budget", b.id, label, t):
                usd = value if ln.metric == "usd" else None
                tok = value if ln.metric == "tokens" else None
                text = fmt.threshold(b, ln.window, t, ln.metric, value, ln.budget_limit)
                sink.budget_alert(b, label, t, text, spent_picousd=usd, spent_tokens=tok)

    # -- console ------------------------------------------------------------------------
    def status(self, budgets: Sequence[Budget], now: datetime | None = None) -> list[BudgetStatus]:
        """Live utilisation of each budget in the window holding ``now``."""
        return budget_status(
            self.state, [self._budget(b) for b in budgets], now or self._clock(), self.alerts
        )

    def window(self, budget: Budget, now: datetime | None = None) -> Window:
        return window(self._budget(budget), now or self._clock())

    # -- validation (the control plane's rules) -----------------------------------------
    def _budget(self, b: Budget) -> Budget:
        return validate_budget(b, stored=True)


def _lines(match: Match, ts: float, now: datetime | None, cost: int, tokens: int) -> list[Line]:
    """The budget lines of one admission at POSIX time ``ts``: the reservations asked for."""
    lines: list[Line] = []
    cost, tokens = max(0, cost), max(0, tokens)
    for e, usd, lim, top, cap, soft in match.specs:
        win = e.window
        if win is None or not win.start_ts <= ts < win.end_ts:
            win = e.window_at(ts, now)
        ttl = max(1.0, win.end_ts - ts + GRACE_S)  # Window.ttl_at(ts), inline
        if not usd:
            lines.append(
                Line(e.budget, win, "tokens", win.tokens_key, lim, top, tokens, cap, soft, ttl)
            )
        elif cost:
            lines.append(Line(e.budget, win, "usd", win.usd_key, lim, top, cost, cap, soft, ttl))
        else:  # a free model's spend is tracked, never blocked
            lines.append(Line(e.budget, win, "usd", win.usd_key, lim, top, 0, None, False, ttl))
    return lines


def _moved(ln: Line, ts: float, now: datetime | None) -> Line:
    """``ln`` in the window of its budget that holds POSIX time ``ts``, with nothing
    reserved there (the settle of a call answered after its admission's window ended)."""
    win = window(ln.budget, now if now is not None else datetime.fromtimestamp(ts, UTC))
    key = win.usd_key if ln.metric == "usd" else win.tokens_key
    return replace(ln, window=win, key=key, amount=0, ttl_s=win.ttl_at(ts))


def _judge(
    done: Decision, lines: list[Line], adm: Admission, applied: Sequence[AppliedLimit]
) -> None:
    """Fill ``done`` (admitted, as made) from what the state answered for ``lines``."""
    over_soft = False
    for ln, v in zip(lines, adm.budget_values or [0] * len(lines), strict=True):
        ln.value = v
        over_soft = over_soft or (ln.cap is not None and v + ln.amount > ln.budget_limit)
    done.lines = tuple(lines)
    if adm.ok:
        done.over_soft = over_soft
        done.charges = adm.charges
        return
    done.admitted = False
    model, provider = done.model, done.provider
    if adm.reason != "budget":
        retry = adm.retry_after_s
        retry = None if retry is None or retry == float("inf") else retry
        if adm.reason == "rate" and adm.failed_index is not None:
            done.reason = describe(applied[adm.failed_index], adm.retry_after_s)
        else:
            done.reason = "live state unavailable (fail-closed policy)"
        done.rate_limited = RateLimitExceeded(
            done.reason, retry_after=retry, model=model, provider=provider
        )
        return
    over = [ln for ln in lines if ln.cap is not None and ln.value + ln.amount > ln.cap]
    if not over and adm.failed_index is not None:  # the state saw a value we did not
        over = [lines[adm.failed_index]]
    hard = [ln for ln in over if not ln.soft]
    p = (hard or over)[0]
    util = 0.0  # p's budget as ``done.uses`` has it, without building every BudgetUse
    for ln in lines:
        if ln.budget is p.budget:
            util = max(util, utilisation(ln.value, ln.budget_limit))
    done.budget, done.utilisation = p.budget, util
    if hard:
        text = fmt.exceeded(
            p.budget, p.window, p.metric, p.value, p.budget_limit, p.hard, p.amount, p.cap or 0
        )
        done.blocked = BudgetExceeded(
            text,
            budget=p.budget.id,
            limit=_money(p, p.budget_limit),
            spent=_money(p, p.value),
            window=p.window.label,
            model=model,
            provider=provider,
        )
        done.reason = text
    else:
        done.degrade, done.degrade_to = True, p.budget.degrade_to
        done.reason = _degrade_reason(p.budget, util, p.window)


def _degrade_reason(budget: Budget, util: float, win: Window) -> str:
    return (
        f"{fmt.head(budget)} at {util:.0%} {fmt.where(win)}"
        ": non-critical call over the soft limit, degrade"
    )


def _money(p: Line, value: int) -> Decimal | int:
    return pico_to_usd(value) if p.metric == "usd" else value
