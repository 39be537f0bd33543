"""What-if replay speed: the demo's last 7 days (quick: 1 day) replayed under its budgets
through the real Router (core.replay), without and with routing by the task policies."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.control import ControlPlane
from core.demo import load_demo
from core.replay import replay
from core.settings import costline_home
from core.usage import Reader


def run(quick: bool) -> dict[str, float]:
    home: Path = costline_home() / "bench-replay"
    now = datetime(2026, 5, 20, 12, tzinfo=UTC)
    days = 1 if quick else 7
    load_demo(home, days=days + 3, now=now)
    end = now.replace(hour=0)
    start = end - timedelta(days=days)
    with ControlPlane(f"sqlite:///{home / 'control.db'}") as plane:
        budgets, policies = plane.budgets(), plane.policies()
    out: dict[str, float] = {}
    with Reader(home) as reader:
        for name, pols in (("", []), ("_policies", policies)):
            t0 = time.perf_counter()
            result = replay(reader, start, end, budgets, pols)
            seconds = time.perf_counter() - t0
            out[f"replay{name}_{days}d_s"] = round(seconds, 2)
            out[f"replay{name}_calls_per_s"] = round(result.replayed / seconds)
        out[f"replay_{days}d_calls"] = result.replayed
    return out
