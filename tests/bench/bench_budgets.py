"""Budget guard cost per call: admit (1 rate limit + 2 matching budgets) then settle.

Memory and Redis; Redis figures are left out (``budgets_redis_skipped: 1``) when no Redis
answers at COSTLINE_BENCH_REDIS_URL (default loopback).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import redis

from core.budgets import BudgetGuard
from core.control import Budget, RateLimit
from core.state import MemoryState, RedisState, State
from core.types import ChatRequest, Message

REQ = ChatRequest([Message("user", "hi")], org="acme", user="u42")
BUDGETS = [
    Budget(id="all", name="All", limit_usd=Decimal("1e6"), action="block"),
    Budget(
        id="acme",
        name="Acme",
        scope="org",
        scope_value="acme",
        period="day",
        limit_usd=Decimal("1e6"),
        limit_tokens=10**15,
        action="degrade",
    ),
    Budget(id="other", name="Other", scope="org", scope_value="beta", limit_usd=Decimal(1)),
]
RATES = [RateLimit(id="per-user", scope="user", limit=10**9, window_s=60)]


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


def call(guard: BudgetGuard) -> Callable[[], None]:
    def one() -> None:
        d = guard.admit(REQ, "gpt-4o", "openai", 3_000_000, 500, BUDGETS, RATES)
        guard.settle(d, 2_000_000, 400)

    return one


def run(quick: bool) -> dict[str, float]:
    n = 300 if quick else 3000
    out: dict[str, float] = {}
    mem: State = MemoryState("bench:")
    out["budgets_memory_call_p50_us"], out["budgets_memory_call_p99_us"] = percentiles(
        call(BudgetGuard(mem)), n
    )
    url = os.environ.get("COSTLINE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"costline-bench-{uuid.uuid4().hex[:8]}:"
    rs = RedisState(url, prefix, socket_timeout=2.0)
    try:
        rs.ping()
    except redis.exceptions.ConnectionError:
        out["budgets_redis_skipped"] = 1
        return out
    try:
        out["budgets_redis_call_p50_us"], out["budgets_redis_call_p99_us"] = percentiles(
            call(BudgetGuard(rs)), n
        )
    finally:
        keys = list(rs.client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            rs.client.delete(*keys)
        rs.close()
    return out
