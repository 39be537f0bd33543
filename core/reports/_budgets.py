"""Budget utilisation from the usage log: spend in each budget's current window, the
run-rate projection to the window's end, and the thresholds alerted (console Budgets page,
``GET /api/v1/budgets/{id}/status`` and the alert worker use the same numbers).

The log is the source of truth (live counters are a cache of it); a reset budget counts from
its last reset. Money is integer picodollars.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.budgets import hard_cap, model_names, window
from core.control import Budget, ControlPlane
from core.usage import Reader

SCOPE_COLUMNS = {"org": "org", "project": "project", "user": "user", "task": "task", "key": "key"}
TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
US = timedelta(microseconds=1)
Canonical = Callable[[str], str]
METHOD = (
    "Projected at window end: spend so far this window (from the usage log) divided by the"
    " time elapsed, times the window's length (run rate), no higher than the cap of a"
    " blocking or degrading budget. Runs out: the day that run rate reaches the limit."
)
WARN_PERCENT = 80  # amber from 80 % of the limit projected


def percent_text(pct: float) -> str:
    """A whole percent from ``Utilisation.used_percent`` / ``projected_percent``: '79%',
    '1,250%'; '∞%' for spend against a limit of 0."""
    return f"{int(pct):,}%" if math.isfinite(pct) else "∞%"


def _percent(value: int, limit: int | None) -> float:
    """``value`` as a whole percent of ``limit``, rounded down, in exact integer arithmetic:
    79.99999 % reads 79 %, never the 80 % at which a budget turns amber. 0 without a limit;
    inf: spend against a limit of 0."""
    if limit is None:
        return 0
    if not limit:
        return 0 if value <= 0 else math.inf
    return (100 * max(value, 0)) // limit


def _share(value: int, limit: int | None) -> float:
    if not limit:
        return 0.0 if value <= 0 else float("inf")
    return value / limit


@dataclass(frozen=True)
class Utilisation:
    """One budget in its current window, from the usage log (money in picodollars)."""

    budget: Budget
    start: datetime  # window start, or the last reset in it
    end: datetime
    label: str
    spent_picousd: int
    tokens: int
    projected_picousd: int
    projected_tokens: int
    alerts: tuple[int, ...]
    unpriced: int = 0  # calls in the window and scope logged unpriced: in no spend figure

    @property
    def utilisation(self) -> float:
        return max(self.usd_share, self.token_share)

    @property
    def usd_share(self) -> float:
        limit = self.budget.limit_picousd
        return _share(self.spent_picousd, limit) if limit is not None else 0.0

    @property
    def token_share(self) -> float:
        limit = self.budget.limit_tokens
        return _share(self.tokens, limit) if limit is not None else 0.0

    @property
    def used_percent(self) -> float:
        """The spend (or tokens) so far as the whole percent shown: rounded down, exactly."""
        b = self.budget
        return max(
            _percent(self.spent_picousd, b.limit_picousd), _percent(self.tokens, b.limit_tokens)
        )

    @property
    def projected_percent(self) -> float:
        """The projection at the window's end as the whole percent shown (as ``used_percent``)."""
        b = self.budget
        usd, tok = self.projected_picousd, self.projected_tokens
        return max(_percent(usd, b.limit_picousd), _percent(tok, b.limit_tokens))

    @property
    def projected_share(self) -> float:
        b = self.budget
        usd = _share(self.projected_picousd, b.limit_picousd) if b.limit_picousd is not None else 0
        tok = _share(self.projected_tokens, b.limit_tokens) if b.limit_tokens is not None else 0
        return float(max(usd, tok))

    @property
    def cap_picousd(self) -> int | None:
        """The most this window can spend: a blocking or degrading budget refuses every call
        past soft_multiplier x its limit (None: an alert-only or token-only budget)."""
        b = self.budget
        if b.action == "alert" or b.limit_picousd is None:
            return None
        return hard_cap(b, b.limit_picousd)

    @property
    def capped(self) -> bool:
        """True when the run rate would take the window past its cap (it stops there)."""
        cap = self.cap_picousd
        return cap is not None and self.projected_picousd > cap

    @property
    def projected_spend_picousd(self) -> int:
        """The projected spend, no higher than the cap."""
        cap = self.cap_picousd
        return min(self.projected_picousd, cap) if cap is not None else self.projected_picousd

    @property
    def severity(self) -> str:
        """'ok', 'warning' (projected at 80 % of the limit or more) or 'critical' (at or over
        the limit, or already past it)."""
        pct = max(self.projected_percent, self.used_percent)  # the numbers shown
        if pct >= 100:
            return "critical"
        return "warning" if pct >= WARN_PERCENT else "ok"

    @property
    def remaining_picousd(self) -> int | None:
        """What is left of the USD limit this window (negative when over; None: no limit)."""
        limit = self.budget.limit_picousd
        return None if limit is None else limit - self.spent_picousd

    def exhausts_at(self) -> datetime | None:
        """When the run rate since the window start reaches the USD limit, if that happens
        before the window ends and has not happened yet (None otherwise)."""
        limit = self.budget.limit_picousd
        if limit is None or self.spent_picousd <= 0 or self.spent_picousd >= limit:
            return None
        if self.projected_picousd < limit:
            return None
        span = (self.end - self.start) // US
        at = self.start + US * (span * limit // self.projected_picousd)
        return at if at < self.end else None


def reset_times(plane: ControlPlane, budgets: Sequence[Budget]) -> dict[str, datetime]:
    """When each reset budget was last reset (its newest ``budget.reset`` audit entry, read
    directly: edits after the reset do not hide it)."""
    ids = [b.id for b in budgets if b.reset_generation]
    return {
        i: ts if ts.tzinfo else ts.replace(tzinfo=UTC) for i, ts in plane.last_resets(ids).items()
    }


ADMITTED_FACTS = "cache_hits < requests"
"""Rows of the view ``facts`` a budget counts: not cache hits. A cache hit never reaches
admission (its $0 answer is logged with the original call's usage), so the guard's counters
never hold its tokens. A rollup row of pruned events mixes hits and calls: counted whole
unless every event in it is a hit (more than the counter holds, never less: a reconcile may
raise a counter from it, never lower one)."""
ADMITTED_EVENTS = "NOT coalesce(cache_hit, false)"  # the same over the view ``events``


def condition(b: Budget, canonical: Canonical) -> tuple[str, list[object]]:
    """SQL condition of a budget's scope over the events (values as ? parameters)."""
    if b.scope == "global":
        return "TRUE", []
    if b.scope_value is None:
        return "FALSE", []
    if b.scope in SCOPE_COLUMNS:
        return f'"{SCOPE_COLUMNS[b.scope]}" = ?', [b.scope_value]
    if b.scope == "provider":
        return "lower(provider) = lower(?)", [b.scope_value]
    names = model_names(b.scope_value, canonical)  # as admission matches them
    return f"lower(model) IN ({', '.join('?' * len(names))})", list(names)


def project(value: int, elapsed_us: int, length_us: int) -> int:
    """The window's end value at the rate so far (integer arithmetic)."""
    if value <= 0 or elapsed_us <= 0:
        return value
    return value * length_us // elapsed_us


def utilisation(
    reader: Reader,
    plane: ControlPlane,
    budgets: Sequence[Budget],
    now: datetime,
    canonical: Canonical = str,
) -> list[Utilisation]:
    """Every budget's spend in its current window (one scan of the log), projected to the
    window's end at the rate so far, with the thresholds alerted this window. ``now`` is an
    exclusive end (the console rounds it up to the next minute): a budget's current window is
    the one holding the last instant before it, so in a day's last minute a daily budget shows
    that day, not the empty next one."""
    if not budgets:
        return []
    resets = reset_times(plane, budgets)
    spans = []
    last = now - timedelta(microseconds=1)
    for b in budgets:
        w = window(b, last)
        spans.append((max(w.start.astimezone(UTC), resets.get(b.id, w.start)), w))
    tokens = " + ".join(f"coalesce({c}, 0)" for c in TOKEN_COLUMNS)
    cols, params = [], []
    for i, (b, (start, w)) in enumerate(zip(budgets, spans, strict=True)):
        cond, cond_params = condition(b, canonical)
        where = f"ts >= ? AND ts < ? AND {ADMITTED_FACTS} AND {cond}"
        cols.append(
            f"CAST(coalesce(sum(cost_picousd) FILTER (WHERE {where}), 0) AS VARCHAR)"
            f" AS c{i}, coalesce(sum({tokens}) FILTER (WHERE {where}), 0) AS t{i},"
            f" coalesce(sum(unpriced) FILTER (WHERE {where}), 0)::BIGINT AS u{i}"
        )
        params += [start, w.end, *cond_params] * 3
    lo = min(s for s, _ in spans)
    hi = max(w.end for _, w in spans)
    sql = f"SELECT {', '.join(cols)} FROM facts WHERE ts >= ? AND ts < ?"
    row = reader.sql(sql, [*params, lo, hi]).iloc[0]
    fired: dict[tuple[str, str], set[int]] = {}
    for a in plane.alerts(since=lo, limit=10_000):
        if a.kind == "budget":
            fired.setdefault((a.budget_id, a.window_key), set()).add(a.threshold_pct)
    out = []
    for i, (b, (start, w)) in enumerate(zip(budgets, spans, strict=True)):
        spent, used = int(row[f"c{i}"]), int(row[f"t{i}"])
        elapsed, length = (now - start) // US, (w.end - start) // US
        out.append(
            Utilisation(
                b,
                start,
                w.end,
                w.label,
                spent,
                used,
                project(spent, elapsed, length),
                project(used, elapsed, length),
                tuple(sorted(fired.get((b.id, w.label), ()))),
                int(row[f"u{i}"]),
            )
        )
    return out
