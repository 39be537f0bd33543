"""Shared embedded budget counters and reconciliation with the usage log (issue 12, section 1).

- ``shared_check_*``: one ``SharedState.admit`` (1 rate item + 2 budget items, as the router
  does) in ``$COSTLINE_HOME/state/budgets.db`` (SQLite WAL, BEGIN IMMEDIATE), wall p50/p99
  and CPU per check; ``shared_settle_p50_us``: the settle after it.
- ``shared_check_2proc_p50_us``: the same while a second process checks the same counters
  flat out (contention on the one write lock).
- ``reconcile_round_ms`` / ``_cpu_ms``: one ``Reconciler.reconcile()`` round (3 budgets) over
  a log of ``reconcile_events`` events in this month (segments) plus 2,000 in a journal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from core import clock
from core.control import SYSTEM, Actor, Budget, ControlPlane
from core.control.auth import create_user
from core.controls import Controls
from core.pricing import load_catalog
from core.reconcile import Reconciler
from core.settings import costline_home
from core.state import BudgetItem, RateItem, SharedState
from core.usage import UsageEvent, UsageLog

from .bench_state import percentiles

RATES = [RateItem("user:42:rpm", "token_bucket", 10**9, 60.0)]
BUDGETS = [
    BudgetItem("org:acme:2025-06", 10**18, 3_000_000, 40 * 86400),
    BudgetItem("user:42:2025-06-01", None, 3_000_000, 2 * 86400),
]
HAMMER = """
import sys, time
from pathlib import Path
from core.state import BudgetItem, SharedState
st = SharedState(Path(sys.argv[1]))
items = [BudgetItem("org:acme:2025-06", 10**18, 3_000_000, 40 * 86400)]
print("go", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    st.admit([], items)
    st.apply_deltas([("org:acme:2025-06", -3_000_000, None)])
st.close()
"""


def cpu_per_call_us(fn: object, n: int) -> float:
    call = fn  # type: ignore[assignment]
    t0 = time.process_time()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.process_time() - t0) / n * 1e6


def bench_shared(home: Path, n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    st = SharedState(home, "bench:")
    settle = [("org:acme:2025-06", 0, None), ("org:acme:2025-06:c", 3_000_000, None)]

    def check() -> None:
        st.admit(RATES, BUDGETS)
        st.apply_deltas(settle)

    out["shared_check_p50_us"], out["shared_check_p99_us"] = percentiles(
        lambda: st.admit(RATES, BUDGETS), n
    )
    out["shared_settle_p50_us"], _ = percentiles(lambda: st.apply_deltas(settle), n)
    out["shared_check_settle_cpu_us"] = cpu_per_call_us(check, n)
    kid = subprocess.Popen(
        [sys.executable, "-c", HAMMER, str(home), "30"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert kid.stdout is not None and kid.stdout.readline().strip() == "go"
        out["shared_check_2proc_p50_us"], out["shared_check_2proc_p99_us"] = percentiles(
            lambda: st.admit(RATES, BUDGETS), n
        )
    finally:
        kid.kill()
        kid.wait(10)
        st.close()
    return out


def bench_reconcile(home: Path, events: int) -> dict[str, float]:
    plane = ControlPlane(model_exists=load_catalog().has)
    eng = Actor("bench-eng", "engineer")
    create_user(plane, eng.username, "correct horse battery", eng.role, SYSTEM)
    for bid, scope, value in (
        ("all", "global", None),
        ("acme", "org", "org1"),
        ("u", "user", "u7"),
    ):
        plane.upsert_budget(
            Budget(
                id=bid,
                name=bid,
                scope=scope,
                scope_value=value,
                limit_usd=Decimal(10**6),
                action="block",
            ),
            eng,
        )
    now = clock.now()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max(1.0, (now - start).total_seconds() - 60)
    log = UsageLog(home)
    batch = []
    for i in range(events + 2000):
        batch.append(
            UsageEvent(
                request_id=f"req_{i:032x}",
                ts=start + timedelta(seconds=span * i / (events + 2000)),
                org=f"org{i % 3}",
                user=f"u{i % 50}",
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=500,
                output_tokens=100,
                cost_picousd=135_000_000,
            )
        )
        if i == events - 1:
            log.append_many(batch)
            log.flush()  # the first ``events`` as segments, the rest stays in a journal
            batch = []
    log.append_many(batch)
    controls = Controls(load_catalog(), plane=plane, state=SharedState(home, "rec:"))
    rec = Reconciler(controls, home, interval_s=0)
    rec.rebuild()
    rounds = 5
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        rec.reconcile()
    out = {
        "reconcile_events": float(events + 2000),
        "reconcile_round_ms": (time.perf_counter() - wall) / rounds * 1000,
        "reconcile_round_cpu_ms": (time.process_time() - cpu) / rounds * 1000,
    }
    log.close()
    controls.close()
    plane.close()
    return out


def run(quick: bool) -> dict[str, float]:
    home = costline_home()
    out = bench_shared(home / "shared", 300 if quick else 3000)
    out.update(bench_reconcile(home / "reconcile", 10_000 if quick else 100_000))
    out["load_avg_1m"] = os.getloadavg()[0]
    return {k: round(v, 1) for k, v in out.items()}
