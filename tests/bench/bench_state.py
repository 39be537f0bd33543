"""Live-state check latency: one admit with 1 rate item + 2 budget items, as the router does.

``redis_ping_p50_us`` is the bare loopback round trip, for scale. Redis figures are left out
(``redis_skipped: 1``) when no Redis answers at COSTLINE_BENCH_REDIS_URL (default loopback).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import redis

from core.state import BudgetItem, MemoryState, RateItem, RedisState, ResilientState

RATES = [RateItem("user:42:rpm", "token_bucket", 10**9, 60.0)]
BUDGETS = [
    BudgetItem("org:acme:2025-06", 10**18, 3_000_000, 40 * 86400),
    BudgetItem("user:42:2025-06-01", None, 3_000_000, 2 * 86400),
]


def percentiles(fn: Callable[[], object], n: int, warmup: int = 50) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return samples[n // 2] / 1000, samples[min(n - 1, int(n * 0.99))] / 1000


def run(quick: bool) -> dict[str, float]:
    n = 300 if quick else 3000
    out: dict[str, float] = {}
    mem = MemoryState("bench:")
    out["memory_check_p50_us"], out["memory_check_p99_us"] = percentiles(
        lambda: mem.admit(RATES, BUDGETS), n
    )
    url = os.environ.get("COSTLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"costline-bench-{uuid.uuid4().hex[:8]}:"
    rs = RedisState(url, prefix, socket_timeout=2.0)
    try:
        rs.ping()
    except redis.exceptions.ConnectionError:
        out["redis_skipped"] = 1
        return out
    try:
        out["redis_ping_p50_us"], _ = percentiles(rs.ping, n)
        out["redis_check_p50_us"], out["redis_check_p99_us"] = percentiles(
            lambda: rs.admit(RATES, BUDGETS), n
        )
        resilient = ResilientState(rs, MemoryState(prefix))
        out["resilient_check_p50_us"], _ = percentiles(lambda: resilient.admit(RATES, BUDGETS), n)
        rs.cache_set("hit", b"x" * 2000, 60)
        out["redis_cache_get_p50_us"], _ = percentiles(lambda: rs.cache_get("hit"), n)
    finally:
        keys = list(rs.client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            rs.client.delete(*keys)
        rs.close()
    return {k: round(v, 1) for k, v in out.items()}
