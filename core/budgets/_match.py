"""What applies to a call, worked out once: validated rows, budget windows and matches.

The guard asks the same questions on every call - is this row valid, which budgets and rate
limits apply to this request and candidate, which calendar window holds now - and the answers
only change when the control plane does (new rows), when a window ends, or for another
request scope. ``Matcher`` remembers them per row object and per tuple of rows (a snapshot's),
bounded, so a call pays dict lookups instead of validation, zoneinfo and matching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.control import Budget, RateLimit, validate_budget, validate_rate_limit
from core.ratelimits import AppliedLimit, rate_items, scope_value
from core.types import ChatRequest

from ._window import Window, matches, window

Canonical = Callable[[str], str]
MAX = 4096  # entries per memo; a full memo is cleared


def hard_cap(budget: Budget, limit: int) -> int:
    return int(Decimal(repr(float(budget.soft_multiplier))) * limit)


class Entry:
    """A budget as the guard applies it, kept per Budget object: the validated value, its
    limits and hard caps in integer units, and its current window (reused until it ends)."""

    __slots__ = ("raw", "budget", "usd", "hard_usd", "tokens", "hard_tokens", "wkey", "window")

    def __init__(self, raw: Budget, b: Budget) -> None:
        self.raw = raw
        self.budget = b
        self.usd = b.limit_picousd
        self.hard_usd = 0 if self.usd is None else hard_cap(b, self.usd)
        self.tokens = b.limit_tokens
        self.hard_tokens = 0 if self.tokens is None else hard_cap(b, self.tokens)
        self.wkey = (b.id, b.period, b.timezone, b.reset_generation)
        self.window: Window | None = None


Spec = tuple[Entry, bool, int, int, "int | None", bool]  # entry, usd?, limit, hard, cap, soft


@dataclass(slots=True)
class Match:
    """The budget lines and rate items that apply to one kind of request and candidate."""

    budgets: Sequence[Budget]
    rates: Sequence[RateLimit]
    specs: tuple[Spec, ...]  # caps as for a paid call (a $0 USD estimate is tracked only)
    applied: list[AppliedLimit] | None  # None: built per call (costs or keys vary)
    cacheable: bool


class Matcher:
    """Thread-safe in practice: every memo is a dict, written whole (a race computes twice)."""

    def __init__(self, canonical: Canonical | None = None) -> None:
        self.canonical = canonical
        self._valid: dict[Any, Any] = {}  # row -> validated row (by value)
        self._same: dict[int, tuple[Any, Any]] = {}  # id(row) -> (row, validated row)
        self._entries: dict[int, Entry] = {}  # id(Budget) -> entry (entry.raw is the Budget)
        self._windows: dict[tuple[Any, ...], Window] = {}  # (id, period, tz, generation)
        self._rates: dict[tuple[int, str], tuple[RateLimit, AppliedLimit]] = {}
        self._matches: dict[tuple[Any, ...], Match] = {}

    def match(
        self,
        req: ChatRequest,
        model: str,
        provider: str,
        budgets: Sequence[Budget],
        rates: Sequence[RateLimit],
        critical: bool,
        degraded: bool,
    ) -> Match:
        """What applies to this request and candidate, remembered for tuples of rows (a
        snapshot's): the same budgets, limits, scope values and flags give the same match."""
        if type(budgets) is not tuple or type(rates) is not tuple:  # lists may change
            return self._matching(req, model, provider, budgets, rates, critical, degraded)
        key = (
            id(budgets),
            id(rates),
            model,
            provider,
            req.org,
            req.project,
            req.user,
            req.task,
            req.app,
            req.key,
            critical,
            degraded,
        )
        m = self._matches.get(key)
        if m is None or m.budgets is not budgets or m.rates is not rates:
            m = self._matching(req, model, provider, budgets, rates, critical, degraded)
            if m.cacheable:
                if len(self._matches) >= MAX:
                    self._matches.clear()
                self._matches[key] = m
        return m

    def _matching(
        self,
        req: ChatRequest,
        model: str,
        provider: str,
        budgets: Sequence[Budget],
        rates: Sequence[RateLimit],
        critical: bool,
        degraded: bool,
    ) -> Match:
        specs: list[Spec] = []
        ids: set[str] = set()
        cacheable = True
        for raw in budgets:
            e = self.entry(raw)
            cacheable = cacheable and self._entries.get(id(raw)) is e
            b = e.budget
            if b.id in ids or not matches(b, req, model, provider, self.canonical):
                continue  # a budget listed twice counts once
            ids.add(b.id)
            if e.usd is not None:
                specs.append(_spec(b, True, e.usd, e.hard_usd, critical, degraded, e))
            if e.tokens is not None:
                specs.append(_spec(b, False, e.tokens, e.hard_tokens, critical, degraded, e))
        applied: list[AppliedLimit] | None = None
        if all(r.metric == "requests" and r.scope != "model" for r in map(self.rate, rates)):
            applied = self.applied(rates, req, model, provider, 1)  # the same every call
        return Match(budgets, rates, tuple(specs), applied, cacheable)

    def entry(self, raw: Budget) -> Entry:
        e = self._entries.get(id(raw))
        if e is None or e.raw is not raw:
            e = Entry(raw, self.budget(raw))
            if id(raw) not in self._same:  # unhashable (mutable) rows are checked every call
                return e
            if len(self._entries) >= MAX:
                self._entries.clear()
            self._entries[id(raw)] = e  # holding raw keeps its id from being reused
        return e

    def window(self, e: Entry, ts: float, now: datetime | None) -> Window:
        """The budget's window at ``ts``: computed (zoneinfo) once per window, then shared by
        every Budget object with the same id, period, zone and reset generation."""
        win = self._windows.get(e.wkey)
        if win is None or not win.holds(ts):
            win = window(e.budget, now if now is not None else datetime.fromtimestamp(ts, UTC))
            if len(self._windows) >= MAX:
                self._windows.clear()
            self._windows[e.wkey] = win
        e.window = win
        return win

    def applied(
        self,
        rates: Sequence[RateLimit],
        req: ChatRequest,
        model: str,
        provider: str,
        est_tokens: int,
    ) -> list[AppliedLimit]:
        """``rate_items`` of the validated rows; request-count items are reused per bucket."""
        out: list[AppliedLimit] = []
        cache = self._rates
        for raw in rates:
            r = self.rate(raw)
            if r.metric != "requests" or r.scope == "model":  # cost or key vary per call
                out += rate_items([r], req, model, provider, est_tokens, self.canonical)
                continue
            value = scope_value(r.scope, req, model, provider)
            if not value:
                continue
            k = (id(r), value)
            hit = cache.get(k)
            if hit is None or hit[0] is not r:
                got = rate_items([r], req, model, provider, est_tokens, self.canonical)
                if not got:
                    continue
                if len(cache) >= MAX:
                    cache.clear()
                hit = cache[k] = (r, got[0])
            out.append(hit[1])
        return out

    def budget(self, b: Budget) -> Budget:
        """The control plane's rules applied to ``b`` (ConfigError when it breaks one)."""
        got = self._checked(b, validate_budget)
        assert isinstance(got, Budget)
        return got

    def rate(self, r: RateLimit) -> RateLimit:
        got = self._checked(r, validate_rate_limit)
        assert isinstance(got, RateLimit)
        return got

    def _checked(self, value: Any, validate: Callable[[Any], Any]) -> Any:
        hit = self._same.get(id(value))
        if hit is not None and hit[0] is value:  # the same object again (a snapshot's row)
            return hit[1]
        try:
            got = self._valid.get(value)
        except TypeError:  # unhashable field (a list of thresholds): validate every time
            return validate(value)
        if got is None:
            got = validate(value)
            if len(self._valid) > MAX:
                self._valid.clear()
            self._valid[value] = got
        if len(self._same) >= MAX:
            self._same.clear()
        self._same[id(value)] = (value, got)  # holding value keeps its id from being reused
        return got


def _spec(
    b: Budget, usd: bool, limit: int, hard: int, critical: bool, degraded: bool, e: Entry
) -> Spec:
    if b.action == "alert":
        return (e, usd, limit, hard, None, False)
    if critical or (b.action == "degrade" and degraded):
        return (e, usd, limit, hard, hard, False)
    return (e, usd, limit, hard, limit, b.action == "degrade")
