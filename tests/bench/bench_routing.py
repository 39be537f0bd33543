"""Routing decision and cache key latency (memory state, no I/O).

``routing_decision_us`` / ``_p99_us``: one ``route()`` for a 3-candidate balanced policy with
latency history (target p50 <= 20 us). ``cache_key_us``: normalise + sha256 of a 3-message
request. ``cache_get_hit_us``: a memory-state hit, decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.cache import ResponseCache, cache_key
from core.control import RoutingPolicy
from core.pricing import Catalog, PriceRow
from core.routing import RoutingEngine
from core.state import MemoryState
from core.types import ChatRequest, Completion, Cost, Message, Usage


def percentiles(fn: Callable[[], object], n: int, warmup: int = 200) -> tuple[float, float]:
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
    n = 2000 if quick else 20000
    catalog = Catalog(
        [
            PriceRow.from_usd("gpt-4o", "openai", input="2.50", output="10", quality=88),
            PriceRow.from_usd("gpt-4o-mini", "openai", input="0.15", output="0.60", quality=70),
            PriceRow.from_usd(
                "claude-3-5-haiku", "anthropic", input="0.80", output="4", quality=75
            ),
        ]
    )
    engine = RoutingEngine(catalog, MemoryState("bench:"))
    for model, ms in (("gpt-4o", 900.0), ("gpt-4o-mini", 450.0)):
        engine.observe(model, ms, ok=True)
    policy = RoutingPolicy(
        "summarize", "gpt-4o", fallbacks=("gpt-4o-mini", "claude-3-5-haiku"), strategy="balanced"
    )
    req = ChatRequest(
        messages=[
            Message("system", "You summarise support tickets."),
            Message("user", "Customer cannot log in after reset. " * 20),
            Message("assistant", "Understood."),
        ],
        task="summarize",
    )
    scores = {"gpt-4o": 0.9}
    out: dict[str, float] = {}
    out["routing_decision_us"], out["routing_decision_p99_us"] = percentiles(
        lambda: engine.route(req, policy, prompt_tokens=1200, scores=scores), n
    )
    out["cache_key_us"], _ = percentiles(lambda: cache_key(req), n)
    cache = ResponseCache(MemoryState("bench:"))
    cache.put(
        req,
        Completion(
            "Login fails after reset.",
            Usage(1200, 0, 0, 30),
            Cost(1, 0, 0, 1),
            "gpt-4o-mini",
            "openai",
            400.0,
            "r",
        ),
    )
    out["cache_get_hit_us"], _ = percentiles(lambda: cache.get(req), n)
    return {k: round(v, 2) for k, v in out.items()}
