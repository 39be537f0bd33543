"""Live utilisation of every budget from the usage log, and the what-if replay.

Utilisation is computed from the usage log (``Reader``) over each budget's current window
[start, end) and its scope, so it counts every router's calls - other processes, other hosts,
Redis or not - not just this process's live counters. After a "reset now" the window counts
from the reset (the audit log has its time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from console import auth
from console.queries.pricing import catalog
from console.queries.usage import cached, reader
from core import clock, reports
from core.control import Budget, RoutingPolicy
from core.replay import ReplayResult, replay
from core.reports import Utilisation

__all__ = ["Utilisation", "run_replay", "utilisation", "utilisation_now"]


@cached
def utilisation(
    home: str, version: str, plane_version: int, budgets: tuple[Budget, ...], now: datetime
) -> list[Utilisation]:
    """Every budget's spend in its current window (one scan of the log), projected to the
    window's end at the rate so far, with the thresholds alerted this window (``core.reports``,
    as ``GET /api/v1/budgets/{id}/status`` and the alert worker)."""
    cat = catalog()

    def canonical(m: str) -> str:
        return cat.canonical(m) if cat.has(m) else m

    return reports.utilisation(reader(), auth.plane(), budgets, now, canonical)


def utilisation_now() -> datetime:
    return clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)


def run_replay(
    start: datetime, end: datetime, budgets: Sequence[Budget], policies: Sequence[RoutingPolicy]
) -> ReplayResult:
    """Replay the logged calls of [start, end) under the proposal and today's rate limits
    (nothing is written)."""
    limits = auth.plane().rate_limits()
    return replay(reader(), start, end, budgets, policies, catalog=catalog(), rate_limits=limits)


@dataclass(frozen=True)
class Baseline:
    """The replay of the unchanged configuration (today's budgets, policies when routed, rate
    limits) and what explains its gap to the log."""

    result: ReplayResult
    config_changes: int  # budget, policy and rate-limit changes audited inside the period
    rate_limits: int  # rate limits configured today
    routed: bool


def run_baseline(start: datetime, end: datetime, routed: bool) -> Baseline:
    plane = auth.plane()
    policies = plane.policies() if routed else []
    result = run_replay(start, end, plane.budgets(), policies)
    changes = sum(
        1
        for entity in ("budget", "routing_policy", "rate_limit")
        for a in plane.audit(limit=10_000, entity=entity)
        if start <= a.ts < end
    )
    return Baseline(result, changes, len(plane.rate_limits()), routed)
