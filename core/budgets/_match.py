"""What applies to a call, worked out once per control-plane snapshot.

The guard asks the same questions on every call - are these rows valid, which budgets and rate
limits apply to this request and candidate, which calendar window holds now - and the answers
only change when the control plane does (a new snapshot), when a window ends, or for another
request scope. ``Index`` answers them for one snapshot's rows: the tuples the router hands the
guard (``Controls.active_budgets`` and ``snapshot.rate_limits``) are the same objects until the
control-plane version changes, so the guard keeps one index and builds the next when other
rows arrive. Each row is validated once, each budget keeps its window until the window ends,
and what applies is remembered per request scope and candidate. Rows passed as lists (which
may change) or with unhashable fields get an index per call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.control import Budget, RateLimit, validate_budget, validate_rate_limit
from core.ratelimits import AppliedLimit, rate_items, scope_value
from core.state import COUNTER_MAX, RateItem
from core.types import ChatRequest

from ._window import Window, matches, window

Canonical = Callable[[str], str]
NO_SHORTCUT = "\0"  # Match.soft_to: no optimistic degrade for this match
MAX = 4096  # remembered matches per index (request scopes x candidates); a full one is cleared


def hard_cap(budget: Budget, limit: int) -> int:
    return int(Decimal(repr(float(budget.soft_multiplier))) * limit)


def counter_cap(budget: Budget, limit: int) -> int:
    """``hard_cap`` as the guard enforces it: no higher than the counters hold (a row
    stored before larger limits were refused blocks critical calls at the edge)."""
    return min(COUNTER_MAX, hard_cap(budget, limit))


class Entry:
    """A budget as the guard applies it: the validated row, its limits and hard caps in
    integer units, and its current window (reused until it ends)."""

    __slots__ = ("budget", "usd", "hard_usd", "tokens", "hard_tokens", "window")

    def __init__(self, b: Budget) -> None:
        self.budget = b
        self.usd = b.limit_picousd
        self.hard_usd = 0 if self.usd is None else counter_cap(b, self.usd)
        self.tokens = b.limit_tokens
        self.hard_tokens = 0 if self.tokens is None else counter_cap(b, self.tokens)
        self.window: Window | None = None

    def window_at(self, ts: float, now: datetime | None) -> Window:
        """The window holding POSIX time ``ts`` (``now``: the same time, when at hand)."""
        win = self.window
        if win is None or not win.holds(ts):
            win = window(self.budget, now if now is not None else datetime.fromtimestamp(ts, UTC))
            self.window = win
        return win


Spec = tuple[Entry, bool, int, int, "int | None", bool]  # entry, usd?, limit, hard, cap, soft


@dataclass(slots=True)
class Match:
    """The budget lines and rate items that apply to one kind of request and candidate.

    For the optimistic degrade (``BudgetGuard.admit_instead``): ``soft_to`` is the one
    ``degrade_to`` every soft line's budget names (``NO_SHORTCUT`` when the lines name
    several, or there is no soft line, or the rate items vary per call), ``degrading`` whether
    the last admission of this match asked to degrade, and ``pair`` the last degrade target's
    match with, for each of these specs, the index of the same (budget, metric) in its specs
    (None: the target's lines or rate items differ, no shortcut)."""

    specs: tuple[Spec, ...]  # caps as for a paid call (a $0 USD estimate is tracked only)
    applied: list[AppliedLimit] | None  # None: built per call (costs or keys vary)
    items: list[RateItem] | None  # applied's rate items (what State.admit reads)
    soft_to: str | None = NO_SHORTCUT
    degrading: bool = False
    pair: tuple[Match, tuple[int, ...] | None] | None = None

    def lines_in(self, target: Match) -> tuple[int, ...] | None:
        """Where each of this match's (budget, metric) lines sits in ``target``'s lines,
        when ``target`` has every one of them and the same rate items; else None."""
        pair = self.pair
        if pair is not None and pair[0] is target:
            return pair[1]
        got: tuple[int, ...] | None = None
        if self.applied is not None and target.applied is not None and self.items == target.items:
            where = {(id(s[0]), s[1]): j for j, s in enumerate(target.specs)}
            pos = [where.get((id(s[0]), s[1])) for s in self.specs]
            got = None if None in pos else tuple(j for j in pos if j is not None)
        self.pair = (target, got)
        return got


class Index:
    """One snapshot's budgets and rate limits as the guard applies them. Thread-safe in
    practice: its memos are dicts written whole (a race computes twice)."""

    def __init__(
        self, budgets: Sequence[Budget], rates: Sequence[RateLimit], canonical: Canonical | None
    ) -> None:
        self.budgets, self.rates, self.canonical = budgets, rates, canonical
        self.entries = [Entry(validate_budget(b, stored=True)) for b in budgets]
        self.limits = [validate_rate_limit(r) for r in rates]
        self._items: dict[tuple[int, str], AppliedLimit] = {}  # (limit, bucket value) -> item
        self._matches: dict[tuple[Any, ...], Match] = {}

    def match(
        self, req: ChatRequest, model: str, provider: str, critical: bool, degraded: bool
    ) -> Match:
        """What applies to this request and candidate."""
        key = (
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
        if m is None:
            m = self._matching(req, model, provider, critical, degraded)
            if len(self._matches) >= MAX:
                self._matches.clear()
            self._matches[key] = m
        return m

    def _matching(
        self, req: ChatRequest, model: str, provider: str, critical: bool, degraded: bool
    ) -> Match:
        specs: list[Spec] = []
        ids: set[str] = set()
        for e in self.entries:
            b = e.budget
            if b.id in ids or not matches(b, req, model, provider, self.canonical):
                continue  # a budget listed twice counts once
            ids.add(b.id)
            if e.usd is not None:
                specs.append(_spec(b, True, e.usd, e.hard_usd, critical, degraded, e))
            if e.tokens is not None:
                specs.append(_spec(b, False, e.tokens, e.hard_tokens, critical, degraded, e))
        applied: list[AppliedLimit] | None = None
        if all(r.metric == "requests" and r.scope != "model" for r in self.limits):
            applied = self.applied(req, model, provider, 1)  # the same every call
        tos = {s[0].budget.degrade_to for s in specs if s[5]}  # the soft lines' targets
        soft_to = tos.pop() if len(tos) == 1 and applied is not None else NO_SHORTCUT
        items = None if applied is None else [a.item for a in applied]
        return Match(tuple(specs), applied, items, soft_to)

    def applied(
        self, req: ChatRequest, model: str, provider: str, est_tokens: int
    ) -> list[AppliedLimit]:
        """``rate_items`` of the rows; request-count items are reused per bucket."""
        out: list[AppliedLimit] = []
        for i, r in enumerate(self.limits):
            if r.metric != "requests" or r.scope == "model":  # cost or key vary per call
                out += rate_items([r], req, model, provider, est_tokens, self.canonical)
                continue
            value = scope_value(r.scope, req, model, provider)
            if not value:
                continue
            k = (i, value)
            hit = self._items.get(k)
            if hit is None:
                got = rate_items([r], req, model, provider, est_tokens, self.canonical)
                if not got:
                    continue
                if len(self._items) >= MAX:
                    self._items.clear()
                hit = self._items[k] = got[0]
            out.append(hit)
        return out


class Matcher:
    """The guard's current ``Index``: kept while the same snapshot's rows come in."""

    def __init__(self, canonical: Canonical | None = None) -> None:
        self.canonical = canonical
        self._index: Index | None = None

    def index(self, budgets: Sequence[Budget], rates: Sequence[RateLimit]) -> Index:
        ix = self._index
        if ix is not None and ix.budgets is budgets and ix.rates is rates:
            return ix
        ix = Index(budgets, rates, self.canonical)
        if type(budgets) is tuple and type(rates) is tuple and _hashable(budgets, rates):
            self._index = ix  # a snapshot's rows; lists and mutable rows may change
        return ix


def _hashable(*rows: Sequence[Any]) -> bool:
    try:
        for r in rows:
            hash(tuple(r))
    except TypeError:  # a list field (thresholds): validated on every call
        return False
    return True


def _spec(
    b: Budget, usd: bool, limit: int, hard: int, critical: bool, degraded: bool, e: Entry
) -> Spec:
    if b.action == "alert":
        return (e, usd, limit, hard, None, False)
    if critical or (b.action == "degrade" and degraded):
        return (e, usd, limit, hard, hard, False)
    return (e, usd, limit, hard, limit, b.action == "degrade")
