"""Router overhead with every spend control on: Router.complete on dryrun at zero latency.

SQLite control plane, logging on, garbage collection on, on two live states in turn, each in
a fresh COSTLINE_HOME: ``router_controls_*`` on ``MemoryState`` (counters in this process
only), then ``router_controls_shared_*`` on the embedded default when no ``REDIS_URL`` is set,
``SharedState`` (budget counters in ``$COSTLINE_HOME/state/budgets.db``, SQLite WAL, shared by
every process on the machine: one write transaction to admit, one to settle; rate limits,
breakers and the response cache in process memory, as with MemoryState). Each call is a
distinct realistic prompt of mixed length (tests/bench/_prompts.py) of a task whose policy
ranks 3 candidates by quality, under 3 matching hard budgets (global, org, task) and 2 rate
limits, with an ALWAYS sampling strategy. A 4th budget, the org's soft one, is sized so it
fires part-way: past its soft limit calls degrade to the cheaper model, so the degrade path is
measured too (``router_controls_degraded_share``).

``cold``: each prompt's first call (a cache miss); ``cache_hit``: the prompts whose first
answer was cached, again (several passes; 1,000 prompts keep within the memory cache's bound,
so every one is a hit). A degraded call's answer is never cached (a cheaper model's answer
never stands for the task's), so the degraded prompts are not in it: called again they are
not cache hits but warm degraded calls. The same keys with ``shared`` after
``router_controls_`` are the same figures on SharedState.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

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
from core.settings import Settings, costline_home
from core.state import MemoryState, SharedState
from core.types import ChatRequest
from tests.bench._prompts import corpus, quantile
from tests.bench.bench_router import timed

TASK = "summarize"


def setup(state: Callable[[], MemoryState | SharedState] = MemoryState) -> Router:
    catalog = load_catalog()
    plane = ControlPlane(model_exists=catalog.has)
    plane.upsert_policy(
        RoutingPolicy(
            task=TASK,
            primary_model="dryrun-medium",
            fallbacks=("dryrun-small", "dryrun-large"),
            strategy="quality",
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
    controls = Controls(catalog, plane=plane, state=state())
    return Router(Settings.from_env(), controls=controls)


def requests(n: int, seed: int) -> list[ChatRequest]:
    return corpus(n, seed, task=TASK, org="acme", user="ann", source="bench")


def size_org_budget(router: Router, n: int) -> None:
    """An org budget whose soft limit is reached part-way through the measured calls."""
    warm = [router.complete(r) for r in requests(300, seed=9)]  # tokenizer, journal
    mean = sum(d.cost.total for d in warm) // len(warm)
    assert router.controls is not None
    router.controls.plane.upsert_budget(
        Budget(
            id="org-soft",
            name="acme soft",
            scope="org",
            scope_value="acme",
            limit_usd=Decimal(mean * (300 + n // 5)) / 10**12,
            action="degrade",
            degrade_to="dryrun-small",
            soft_multiplier=1000.0,
        ),
        SYSTEM,
    )
    # In force from the first measured call, its counter holding the warm-up spend (as the
    # sizing above assumes). Left to the watcher's next poll (up to 1 s of calls later) and
    # the reconciler's first round (30 s), both came part-way through the measured calls or
    # not at all, and the degraded share swung from 0 to 0.46 from run to run.
    router.controls.watcher.refresh()
    router.controls.snapshot()
    assert router.reconciler is not None
    router.reconciler.rebuild()


@contextmanager
def fresh_home() -> Iterator[Path]:
    """A COSTLINE_HOME of its own (control plane, usage log, counters) for one measurement."""
    old = os.environ.get("COSTLINE_HOME")
    with tempfile.TemporaryDirectory(prefix="controls-", dir=costline_home()) as tmp:
        os.environ["COSTLINE_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                del os.environ["COSTLINE_HOME"]
            else:
                os.environ["COSTLINE_HOME"] = old


def measure(name: str, state: Callable[[], MemoryState | SharedState], quick: bool) -> dict:
    n, passes = 1_000, 1 if quick else 5
    router = setup(state)
    try:
        size_org_budget(router, n)
        reqs = requests(n, seed=1)
        done = []
        cold = timed(lambda r: done.append(router.complete(r)), reqs)
        cached = [
            r for r, d in zip(reqs, done, strict=True) if "degraded from" not in d.route_reason
        ]
        answers = []
        hits = timed(lambda r: answers.append(router.complete(r)), cached * passes)
        assert all(a.cache_hit for a in answers)
    finally:
        router.close()
        assert router.controls is not None
        router.controls.plane.close()
    degraded = sum("degrade" in d.route_reason for d in done) / len(done)
    return {
        f"{name}_prompts": n,
        f"{name}_cold_p50_us": quantile(cold, 0.5),
        f"{name}_cold_p99_us": quantile(cold, 0.99),
        f"{name}_cache_hit_p50_us": quantile(hits, 0.5),
        f"{name}_cache_hit_prompts": len(cached),
        f"{name}_degraded_share": round(degraded, 2),
    }


def run(quick: bool) -> dict[str, float]:
    with fresh_home():
        out = measure("router_controls", MemoryState, quick)
    with fresh_home() as home:
        out.update(measure("router_controls_shared", lambda: SharedState(home), quick))
    return out
