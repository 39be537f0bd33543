"""Router overhead with every spend control on: Router.complete on dryrun at zero latency.

Memory live state, SQLite control plane, logging on; every call a cache miss (the prompt
varies) of a task whose policy has 3 candidates, under 3 matching budgets and 2 rate limits,
with an ALWAYS sampling strategy. Budgets and limits are wide so every call goes through.
"""

from __future__ import annotations

import gc
import time
from decimal import Decimal

from core.control import (
    SYSTEM,
    Budget,
    ControlPlane,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
)
from core.controls import Controls
from core.pricing import load_catalog
from core.router import Router
from core.settings import Settings
from core.state import MemoryState
from core.types import ChatRequest, Message

TASK = "summarize"


def setup() -> Router:
    catalog = load_catalog()
    plane = ControlPlane(model_exists=catalog.has)
    plane.upsert_policy(
        RoutingPolicy(
            task=TASK,
            primary_model="dryrun-medium",
            fallbacks=("dryrun-small", "dryrun-large"),
            strategy="cheapest",
        ),
        SYSTEM,
    )
    for scope, value in (("global", None), ("org", "acme"), ("task", TASK)):
        plane.upsert_budget(
            Budget(
                id=scope,
                name=scope,
                scope=scope,
                scope_value=value,
                limit_usd=Decimal(1_000_000),
                action="block",
            ),
            SYSTEM,
        )
    plane.upsert_rate_limit(
        RateLimit(id="per-user", scope="user", limit=10**9, window_s=60), SYSTEM
    )
    plane.upsert_rate_limit(
        RateLimit(id="per-org", scope="org", limit=10**9, window_s=60, algorithm="sliding_window"),
        SYSTEM,
    )
    plane.upsert_sampling(SamplingStrategy(key=TASK, strategy="always", min_interval_s=0), SYSTEM)
    controls = Controls(catalog, plane=plane, state=MemoryState())
    return Router(Settings.from_env(), controls=controls)


def _request(i: int) -> ChatRequest:
    return ChatRequest(
        messages=[
            Message("system", "You are terse."),
            Message("user", f"Summarise: costs rose 4% in week {i}"),
        ],
        task=TASK,
        org="acme",
        user="ann",
        max_tokens=64,
        source="bench",
    )


def measure(router: Router, n: int) -> list[float]:
    for i in range(500):  # warm tokenizer, caches, journal
        router.complete(_request(-1 - i))
    out = []
    gc.disable()
    try:
        for i in range(n):
            req = _request(i)
            t0 = time.perf_counter()
            done = router.complete(req)
            out.append((time.perf_counter() - t0) * 1e6)
            assert not done.cache_hit and done.ai_called
    finally:
        gc.enable()
    out.sort()
    return out


def run(quick: bool) -> dict[str, float]:
    n = 2_000 if quick else 20_000
    router = setup()
    try:
        t = measure(router, n)
    finally:
        router.close()
        assert router.controls is not None
        router.controls.plane.close()
    return {
        "router_overhead_controls_p50_us": round(t[len(t) // 2], 1),
        "router_overhead_controls_p99_us": round(t[int(len(t) * 0.99)], 1),
    }
