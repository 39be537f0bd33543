"""Live utilisation of every budget from the usage log, and the what-if replay.

Utilisation is computed from the usage log (``Reader``) over each budget's current window
[start, end) and its scope, so it counts every router's calls - other processes, other hosts,
Redis or not - not just this process's live counters. After a "reset now" the window counts
from the reset (the audit log has its time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from console import auth
from console.queries.pricing import catalog
from console.queries.usage import TOKEN_COLUMNS, cached, reader
from core.budgets import hard_cap, window
from core.control import Budget, RoutingPolicy
from core.replay import ReplayResult, replay

SCOPE_COLUMNS = {"org": "org", "project": "project", "user": "user", "task": "task"}


US = timedelta(microseconds=1)


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
    def projected_share(self) -> float:
        shares = [
            _share(self.projected_picousd, self.budget.limit_picousd)
            if self.budget.limit_picousd is not None
            else 0.0,
            _share(self.projected_tokens, self.budget.limit_tokens)
            if self.budget.limit_tokens is not None
            else 0.0,
        ]
        return max(shares)

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


def _share(value: int, limit: int | None) -> float:
    if not limit:
        return 0.0 if value <= 0 else float("inf")
    return value / limit


def _reset_times(budgets: Sequence[Budget]) -> dict[str, datetime]:
    """When each reset budget was last reset (from the audit log)."""
    out: dict[str, datetime] = {}
    for b in budgets:
        if b.reset_generation:
            hits = [
                e
                for e in auth.plane().audit(limit=50, entity="budget", entity_id=b.id)
                if e.action == "budget.reset"
            ]
            if hits:
                out[b.id] = hits[0].ts if hits[0].ts.tzinfo else hits[0].ts.replace(tzinfo=UTC)
    return out


def _condition(b: Budget, canonical: Any) -> tuple[str, list[object]]:
    """SQL condition of a budget's scope over the events view (values as ? parameters)."""
    if b.scope == "global":
        return "TRUE", []
    if b.scope_value is None:
        return "FALSE", []
    if b.scope in SCOPE_COLUMNS:
        return f'"{SCOPE_COLUMNS[b.scope]}" = ?', [b.scope_value]
    if b.scope == "provider":
        return "lower(provider) = lower(?)", [b.scope_value]
    names = sorted({b.scope_value, canonical(b.scope_value)})
    return f"model IN ({', '.join('?' * len(names))})", list(names)


@cached
def utilisation(
    home: str, version: str, plane_version: int, budgets: tuple[Budget, ...], now: datetime
) -> list[Utilisation]:
    """Every budget's spend in its current window (one scan of the log), projected to the
    window's end at the rate so far, with the thresholds alerted this window."""
    if not budgets:
        return []
    cat = catalog()

    def canonical(m: str) -> str:
        return cat.canonical(m) if cat.has(m) else m

    resets = _reset_times(budgets)
    spans = []
    for b in budgets:
        w = window(b, now)
        spans.append((max(w.start.astimezone(UTC), resets.get(b.id, w.start)), w))
    tokens = " + ".join(f"coalesce({c}, 0)" for c in TOKEN_COLUMNS)
    cols, params = [], []
    for i, (b, (start, w)) in enumerate(zip(budgets, spans, strict=True)):
        cond, cond_params = _condition(b, canonical)
        where = f"ts >= ? AND ts < ? AND {cond}"
        cols.append(
            f"CAST(coalesce(sum(cost_picousd) FILTER (WHERE {where}), 0) AS VARCHAR)"
            f" AS c{i}, coalesce(sum({tokens}) FILTER (WHERE {where}), 0) AS t{i}"
        )
        params += [start, w.end, *cond_params, start, w.end, *cond_params]
    lo = min(s for s, _ in spans)
    hi = max(w.end for _, w in spans)
    sql = f"SELECT {', '.join(cols)} FROM events WHERE ts >= ? AND ts < ?"
    row = reader().sql(sql, [*params, lo, hi]).iloc[0]
    fired: dict[tuple[str, str], set[int]] = {}
    for a in auth.plane().alerts(since=lo, limit=10_000):
        if a.kind == "budget":
            fired.setdefault((a.budget_id, a.window_key), set()).add(a.threshold_pct)
    out = []
    for i, (b, (start, w)) in enumerate(zip(budgets, spans, strict=True)):
        spent, used = int(row[f"c{i}"]), int(row[f"t{i}"])
        elapsed, length = (now - start) // US, (w.end - start) // US
        label = w.label
        out.append(
            Utilisation(
                b,
                start,
                w.end,
                label,
                spent,
                used,
                _project(spent, elapsed, length),
                _project(used, elapsed, length),
                tuple(sorted(fired.get((b.id, label), ()))),
            )
        )
    return out


def _project(value: int, elapsed_us: int, length_us: int) -> int:
    """The window's end value at the rate so far (integer arithmetic)."""
    if value <= 0 or elapsed_us <= 0:
        return value
    return value * length_us // elapsed_us


def utilisation_now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)


def run_replay(
    start: datetime, end: datetime, budgets: Sequence[Budget], policies: Sequence[RoutingPolicy]
) -> ReplayResult:
    """Replay the logged calls of [start, end) under the proposal (nothing is written)."""
    return replay(reader(), start, end, budgets, policies, catalog=catalog())
