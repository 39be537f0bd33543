"""Router overhead: Router.complete with the dryrun provider at zero latency, logging on."""

from __future__ import annotations

import gc
import time

from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Message


def _request() -> ChatRequest:
    return ChatRequest(
        messages=[Message("system", "You are terse."), Message("user", "Summarise: costs rose 4%")],
        model="dryrun-small",
        org="acme",
        user="ann",
        max_tokens=64,
    )


def measure(router: Router, n: int) -> list[float]:
    for _ in range(500):  # warm caches, encodings, journal
        router.complete(_request())
    out = []
    gc.disable()
    try:
        for _ in range(n):
            req = _request()
            t0 = time.perf_counter()
            router.complete(req)
            out.append((time.perf_counter() - t0) * 1e6)
    finally:
        gc.enable()
    out.sort()
    return out


def run(quick: bool) -> dict[str, float]:
    n = 5_000 if quick else 50_000
    with Router(Settings.from_env(), controls=False) as router:
        t = measure(router, n)
    return {
        "router_overhead_p50_us": round(t[len(t) // 2], 1),
        "router_overhead_p99_us": round(t[int(len(t) * 0.99)], 1),
    }
