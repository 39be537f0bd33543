"""Router overhead on the bare path (controls off): Router.complete with the dryrun provider
at zero latency, logging on, over a corpus of distinct realistic prompts of mixed length
(tests/bench/_prompts.py), garbage collection on.

``cold``: each prompt's first call (nothing about it is cached anywhere); ``warm``: the same
prompts again, several passes (token counts of texts up to 2,048 characters memoised; the memo
holds 4,096 texts, so the corpus stays at 1,000 prompts per side to fit it). The limit
measured in the same run is a bare call of the dryrun provider on the same requests (it
counts the prompt too): ``*_vs_provider_x`` is router time / provider time, so machines of
different speed can be compared.

``reported``: cold calls again, to a provider that reports usage the way real upstreams do
(a ready answer, nothing counted locally): the router then never counts the prompt, since
an upper bound of its tokens settles the context window and the price tier. The dryrun
provider counts every prompt to simulate usage, so the figures above include that count.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.providers import ProviderResult, create
from core.providers.dryrun import DryRunProvider
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Usage
from tests.bench._prompts import corpus, quantile


def timed(call: Callable[[ChatRequest], object], requests: list[ChatRequest]) -> list[float]:
    out = []
    for req in requests:
        t0 = time.perf_counter()
        call(req)
        out.append((time.perf_counter() - t0) * 1e6)
    out.sort()
    return out


class Reported(DryRunProvider):
    """Answers at once with usage as an upstream reports it (no local token count)."""

    def complete(self, req: ChatRequest, model: str) -> ProviderResult:
        n = len(req.messages[-1].content) // 4 + 7
        return ProviderResult("[dryrun] reported usage", Usage(n, 20), "stop", model)


def run(quick: bool) -> dict[str, float]:
    n, passes = 1_000, 1 if quick else 5
    settings = Settings.from_env()
    provider = create(settings.provider("dryrun"))
    model = "dryrun-small"
    with Router(settings, controls=False) as router:
        timed(router.complete, corpus(300, seed=9, model=model))  # encodings, journal
        ours, theirs = corpus(n, seed=1, model=model), corpus(n, seed=2, model=model)
        bare_cold = timed(lambda r: provider.complete(r, model), theirs)
        cold = timed(router.complete, ours)
        bare_warm = timed(lambda r: provider.complete(r, model), theirs * passes)
        warm = timed(router.complete, ours * passes)
    with Router(settings, controls=False, providers={"dryrun": Reported(provider.config)}) as r:
        timed(r.complete, corpus(300, seed=8, model=model))
        reported = timed(r.complete, corpus(n, seed=3, model=model))
    p50 = {k: quantile(v, 0.5) for k, v in (("cold", cold), ("warm", warm))}
    base = {k: quantile(v, 0.5) for k, v in (("cold", bare_cold), ("warm", bare_warm))}
    return {
        "router_bare_prompts": n,
        "router_bare_cold_p50_us": p50["cold"],
        "router_bare_cold_p99_us": quantile(cold, 0.99),
        "router_bare_warm_p50_us": p50["warm"],
        "router_bare_warm_p99_us": quantile(warm, 0.99),
        "router_bare_reported_cold_p50_us": quantile(reported, 0.5),
        "router_bare_reported_cold_p99_us": quantile(reported, 0.99),
        "provider_dryrun_cold_p50_us": base["cold"],
        "provider_dryrun_warm_p50_us": base["warm"],
        "router_bare_cold_vs_provider_x": round(p50["cold"] / base["cold"], 2),
        "router_bare_warm_vs_provider_x": round(p50["warm"] / base["warm"], 2),
    }
