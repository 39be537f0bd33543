"""Spend controls through the real Router: task routing, the response cache, sampling.

Every test edits the control plane as a real engineer and calls ``Router.complete`` on the
dryrun provider (real catalog prices, zero latency); assertions read the usage log back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_controls_support import ENGINEER, ask, events, make_plane, make_router, sync

from core.control import (
    CacheSetting,
    ControlPlane,
    RoutingPolicy,
    SamplingStrategy,
    Weights,
)
from core.providers.dryrun import DryRunProvider
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest
from core.usage import Filters, Reader

CANDIDATES = ("dryrun-medium", "dryrun-small", "dryrun-reasoner")  # primary: dryrun-large


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = make_plane()
    yield p
    p.close()


@pytest.fixture
def router(plane: ControlPlane) -> Iterator[Router]:
    r = make_router(plane)
    yield r
    r.close()


def policy(plane: ControlPlane, task: str = "summarize", **kw: Any) -> RoutingPolicy:
    kw.setdefault("primary_model", "dryrun-large")
    kw.setdefault("fallbacks", CANDIDATES)
    return plane.upsert_policy(RoutingPolicy(task=task, **kw), ENGINEER)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---- 1. task routing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "weights", "model", "why"),
    [
        ("explicit", Weights(), "dryrun-large", "dryrun-large: primary for task summarize"),
        ("cheapest", Weights(), "dryrun-small", "dryrun-small: cheapest of 4 for task summarize"),
        (
            "quality",
            Weights(),
            "dryrun-reasoner",
            "dryrun-reasoner: highest quality of 4 for task summarize",
        ),
        (
            "balanced",
            Weights(cost=1, latency=0, quality=0),
            "dryrun-small",
            "dryrun-small: best balanced score of 4 for task summarize",
        ),
        (
            "balanced",
            Weights(cost=0, latency=0, quality=1),
            "dryrun-reasoner",
            "dryrun-reasoner: best balanced score of 4 for task summarize",
        ),
    ],
)
def test_task_policy_strategy_picks_the_model_and_logs_why(
    plane, router, strategy, weights, model, why
):
    policy(plane, strategy=strategy, weights=weights)
    sync(router)
    done = router.complete(ask(task="summarize", org="acme"))
    assert done.model == model and done.cost.total > 0
    assert done.route_reason.startswith(why)
    assert "\n" not in done.route_reason and len(done.route_reason) < 200
    ev = events(router)
    assert len(ev) == 1
    row = ev.iloc[0]
    assert row.model == model and row.status == "ok" and row.task == "summarize"
    assert row.route_reason == done.route_reason
    assert row.requested_model == "dryrun-large"  # the policy's primary


class PerModelLatency(DryRunProvider):
    """dryrun with a fixed latency per model, so 'fastest' has something to rank."""

    DELAY_S = {
        "dryrun-large": 0.040,
        "dryrun-medium": 0.001,
        "dryrun-small": 0.020,
        "dryrun-reasoner": 0.060,
    }

    def complete(self, req: ChatRequest, model: str) -> Any:
        time.sleep(self.DELAY_S[model])
        return super().complete(req, model)


def test_fastest_uses_latency_the_router_observed(plane):
    settings = Settings.from_env()
    provider = PerModelLatency(settings.provider("dryrun"))
    policy(plane, strategy="fastest")
    with make_router(plane, providers={"dryrun": provider}) as r:
        for m in ("dryrun-large", *CANDIDATES):  # explicit calls feed the latency EWMA
            r.complete(ask(f"warm {m}", model=m))
        done = r.complete(ask(task="summarize"))
        assert done.model == "dryrun-medium"
        assert done.route_reason.startswith("dryrun-medium: fastest of 4 for task summarize (")
        assert events(r).iloc[-1].route_reason == done.route_reason


@pytest.mark.parametrize("strategy", ["explicit", "quality"])
def test_optimize_cost_prefers_the_cheaper_candidate(plane, router, strategy):
    policy(plane, strategy=strategy)
    sync(router)
    plain = router.complete(ask("first", task="summarize"))
    cheap = router.complete(ask("second", task="summarize", optimize_cost=True))
    assert plain.model in ("dryrun-large", "dryrun-reasoner")
    assert cheap.model == "dryrun-small" and "optimize_cost" in cheap.route_reason
    ev = events(router)
    assert list(ev.model) == [plain.model, "dryrun-small"]
    assert int(ev.cost_picousd.iloc[1]) < int(ev.cost_picousd.iloc[0])


def test_task_without_policy_is_rejected_and_logged(router):
    from core.errors import BadRequest

    with pytest.raises(BadRequest, match="no routing policy for task 'nope'"):
        router.complete(ask(task="nope"))
    assert list(events(router).status) == ["error"]


# ---- 2. cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", [{"model": "dryrun-medium"}, {"task": "summarize"}])
def test_identical_second_request_is_a_free_hit_that_records_the_saving(plane, router, target):
    policy(plane)
    sync(router)
    first = router.complete(ask("what is a budget?", **target))
    second = router.complete(ask("what is a budget?", **target))
    assert first.cost.total > 0 and not first.cache_hit
    assert second.cache_hit and second.cost.total == 0
    assert second.saved.total == first.cost.total and second.text == first.text
    ev = events(router)
    assert list(ev.cache_hit) == [False, True]
    hit = ev[ev.cache_hit]
    assert len(hit) == 1
    assert int(hit.cost_picousd.iloc[0]) == 0
    assert int(hit.saved_picousd.iloc[0]) == first.cost.total
    assert "cache hit" in hit.route_reason.iloc[0]
    with Reader(router.settings.home) as rd:
        assert rd.totals()["saved_picousd"] == first.cost.total


def test_cache_false_neither_reads_nor_writes(router):
    a = router.complete(ask("q", model="dryrun-small"))
    b = router.complete(ask("q", model="dryrun-small", cache=False))  # not served
    c = router.complete(ask("r", model="dryrun-small", cache=False))
    d = router.complete(ask("r", model="dryrun-small"))  # c was not stored
    assert not b.cache_hit and b.cost.total == a.cost.total > 0
    assert not c.cache_hit and not d.cache_hit and d.cost.total > 0
    assert router.complete(ask("r", model="dryrun-small")).cache_hit  # d was stored
    assert list(events(router).cache_hit) == [False, False, False, False, True]


def test_personal_requests_are_never_served_from_or_stored_in_the_cache(router):
    shared = router.complete(ask("my salary?", model="dryrun-small", user="alice"))
    for user in ("bob", "alice"):
        got = router.complete(ask("my salary?", model="dryrun-small", user=user, personal=True))
        assert not got.cache_hit and got.cost.total > 0
    router.complete(ask("my diary", model="dryrun-small", user="carol", personal=True))
    dave = router.complete(ask("my diary", model="dryrun-small", user="dave", personal=True))
    assert not dave.cache_hit and shared.cost.total > 0
    ev = events(router)
    assert not ev.cache_hit.any() and (ev.cost_picousd > 0).all()


def test_personalised_task_is_never_shared_across_users(plane, router):
    policy(plane, task="inbox", personalised=True)
    sync(router)
    a = router.complete(ask("summarise my inbox", task="inbox", user="alice"))
    b = router.complete(ask("summarise my inbox", task="inbox", user="bob"))
    assert not a.cache_hit and not b.cache_hit and b.cost.total > 0
    assert list(events(router).cache_hit) == [False, False]


def test_ttl_per_task_from_policy_and_cache_setting(plane, router):
    policy(plane, task="news", cache_ttl_s=60)
    plane.upsert_cache_setting(CacheSetting(task="chat", ttl_s=5), ENGINEER)
    sync(router)
    assert router.controls is not None
    clock = Clock()
    router.controls.cache.clock = clock
    policy(plane, task="chat", primary_model="dryrun-small", fallbacks=())
    sync(router)
    router.complete(ask("headlines", task="news"))
    router.complete(ask("hi", task="chat"))
    clock.t += 4
    assert router.complete(ask("hi", task="chat")).cache_hit  # 4 s < 5 s
    clock.t += 2
    assert not router.complete(ask("hi", task="chat")).cache_hit  # 6 s: expired
    assert router.complete(ask("headlines", task="news")).cache_hit  # 6 s < 60 s
    clock.t += 60
    assert not router.complete(ask("headlines", task="news")).cache_hit  # 66 s: expired
    assert list(events(router).cache_hit) == [False, False, True, False, True, False]


def test_ttl_per_request_bounds_storage_and_reads(router):
    assert router.controls is not None
    clock = Clock()
    router.controls.cache.clock = clock
    router.complete(ask("a", model="dryrun-small", ttl=10))  # stored for 10 s only
    clock.t += 11
    assert not router.complete(ask("a", model="dryrun-small")).cache_hit
    router.complete(ask("b", model="dryrun-small"))  # stored for the default 24 h
    clock.t += 30
    assert not router.complete(ask("b", model="dryrun-small", ttl=20)).cache_hit  # too old
    assert router.complete(ask("b", model="dryrun-small", ttl=3600)).cache_hit


# ---- 5. sampling --------------------------------------------------------------------------


def test_periodic_sampling_skips_reuses_the_last_answer_and_counts_the_savings(plane, router):
    policy(plane, task="regime", primary_model="dryrun-medium", fallbacks=())
    plane.upsert_sampling(
        SamplingStrategy(
            key="regime", strategy="periodic", params={"interval_s": 300}, min_interval_s=0
        ),
        ENGINEER,
    )
    sync(router)
    assert router.controls is not None
    clock = Clock()
    router.controls.gate._clock = clock  # no sleeping for the 300 s period
    first = router.complete(ask("tick 0", task="regime"))
    assert first.ai_called and first.cost.total > 0
    skipped = [router.complete(ask(f"tick {i}", task="regime")) for i in range(1, 5)]
    for s in skipped:
        assert not s.ai_called and s.cost.total == 0
        assert s.text == first.text and s.saved.total == first.cost.total > 0
        assert "sampling" in s.route_reason
    critical = router.complete(ask("crash!", task="regime", criticality="critical"))
    assert critical.ai_called and critical.cost.total > 0 and critical.text != first.text
    after = router.complete(ask("tick 5", task="regime"))
    assert not after.ai_called and after.text == critical.text
    assert after.saved.total == critical.cost.total
    clock.t += 301
    due = router.complete(ask("tick 6", task="regime"))
    assert due.ai_called and due.cost.total > 0

    ev = events(router)
    assert list(ev.status) == ["ok", *["skipped"] * 4, "ok", "skipped", "ok"]
    assert list(ev.ai_called) == [True, False, False, False, False, True, False, True]
    saved = 4 * first.cost.total + critical.cost.total
    with Reader(router.settings.home) as rd:
        t = rd.totals(Filters(status="skipped"))
        assert t["requests"] == 5 and t["ai_skipped"] == 5
        assert t["cost_picousd"] == 0 and t["saved_picousd"] == saved
        assert rd.totals(Filters(task="regime"))["ai_skipped"] == 5
        by = rd.spend_by(["ai_called"], None, Filters(task="regime"))
        row = by[~by.ai_called.astype(bool)].iloc[0]
        assert int(row.requests) == 5 and int(row.saved_picousd) == saved


def test_sampling_strategy_removed_at_runtime_calls_again(plane, router):
    policy(plane, task="regime", primary_model="dryrun-small", fallbacks=())
    plane.upsert_sampling(
        SamplingStrategy(
            key="regime", strategy="periodic", params={"interval_s": 3600}, min_interval_s=0
        ),
        ENGINEER,
    )
    sync(router)
    router.complete(ask("a", task="regime"))
    assert not router.complete(ask("b", task="regime")).ai_called
    plane.delete_sampling("regime", ENGINEER)
    sync(router)
    assert router.complete(ask("c", task="regime")).ai_called


def test_a_low_priority_event_with_no_answer_to_reuse_still_gets_one(plane, router):
    policy(plane, task="digest", primary_model="dryrun-small", fallbacks=())
    plane.upsert_sampling(
        SamplingStrategy(
            key="digest",
            strategy="periodic",
            params={"interval_s": 300},
            min_interval_s=0,
            batch_size=10,
        ),
        ENGINEER,
    )
    sync(router)
    first = router.complete(ask("first", task="digest", criticality="background"))
    assert first.ai_called and first.text and first.model == "dryrun-small"
    later = router.complete(ask("second", task="digest", criticality="background"))
    assert not later.ai_called and later.text == first.text  # batched: the last answer
    ev = events(router)
    assert list(ev.status) == ["ok", "skipped"] and list(ev.model) == ["dryrun-small"] * 2
