"""Provider adapter costs: the dryrun simulator (used by the router overhead benchmark) and
one HTTP round trip through the OpenAI adapter to the local scripted server."""

from __future__ import annotations

import statistics
import time

from core.providers import create
from core.settings import ProviderConfig
from core.types import ChatRequest, Message
from tests.servers.scripted import ScriptedServer


def _p50_us(fn: object, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000.0


def run(quick: bool) -> dict[str, float]:
    n = 500 if quick else 20000
    req = ChatRequest(
        [
            Message("system", "You are helpful."),
            Message("user", "Summarise last month's spend by project."),
        ]
    )
    dry = create(ProviderConfig("dryrun", "dryrun"))
    dry.complete(req, "gpt-4o-mini")  # warm the token counter
    out = {
        "providers_dryrun_complete_p50_us": _p50_us(lambda: dry.complete(req, "gpt-4o-mini"), n),
        "providers_dryrun_stream_p50_us": _p50_us(
            lambda: list(dry.stream(req, "gpt-4o-mini")), n // 10
        ),
    }
    with ScriptedServer() as srv:
        p = create(ProviderConfig("bench", "openai", srv.openai_url, "sk-bench"))
        p.complete(req, "gpt-4o-mini")
        m = 20 if quick else 300
        out["providers_openai_http_complete_p50_us"] = _p50_us(
            lambda: p.complete(req, "gpt-4o-mini"), m
        )
        out["providers_openai_http_stream_p50_us"] = _p50_us(
            lambda: list(p.stream(req, "gpt-4o-mini")), m
        )
        p.close()
    return {k: round(v, 2) for k, v in out.items()}
