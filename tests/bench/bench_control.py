"""Control plane on SQLite: the router's poll, a full snapshot, and write latency."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from core.control import SYSTEM, Budget, ControlPlane, RoutingPolicy, Watcher


def _median_us(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def run(quick: bool) -> dict[str, float]:
    home = Path(os.environ.get("COSTLINE_HOME", ".costline"))
    url = f"sqlite:///{home / 'bench-control.db'}"
    plane = ControlPlane(url)
    n_rows, n = (10, 30) if quick else (200, 300)
    for i in range(n_rows):
        plane.upsert_budget(
            Budget(
                id=f"b{i}",
                name=f"Budget {i}",
                scope="project",
                scope_value=f"p{i}",
                limit_usd=Decimal(100 + i),
            ),
            SYSTEM,
        )
        plane.upsert_policy(RoutingPolicy(task=f"task{i}", primary_model="gpt-4o-mini"), SYSTEM)
    watcher = Watcher(plane, min_interval_s=1.0)
    counter = iter(range(10**9))

    def write() -> None:
        i = next(counter)
        plane.upsert_budget(Budget(id="bench", name="Bench", limit_usd=Decimal(i + 1)), SYSTEM)

    def alert() -> None:
        plane.record_alert("bench", f"w{next(counter)}", 50, message="bench")

    out: dict[str, float] = {
        "control_version_poll_us": _median_us(plane.version, n),
        "control_snapshot_rows": 2 * n_rows,
        "control_snapshot_ms": _median_us(plane.snapshot, max(n // 10, 5)) / 1e3,
        "control_watcher_current_cached_us": _median_us(watcher.current, n),
        "control_upsert_budget_ms": _median_us(write, n // 3) / 1e3,
        "control_record_alert_ms": _median_us(alert, n // 3) / 1e3,
    }
    plane.close()
    return {k: round(v, 3) for k, v in out.items()}
