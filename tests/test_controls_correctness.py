"""Spend controls through the real Router: what is cached, how optimize_cost orders an explicit
model's fallbacks, and what the sampling gate counts as a call."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_controls_support import (
    ENGINEER,
    MATCH,
    PROMPT,
    ask,
    budget,
    budget_plane,
    call,
    estimate,
    events,
    make_plane,
    make_router,
    sync,
    usd,
)

from core.control import ControlPlane, RoutingPolicy, SamplingStrategy
from core.errors import BudgetExceeded
from core.pricing import load_catalog
from core.router import Router
from core.settings import Settings
from core.usage import Reader

MODELS = ("dryrun-large", "dryrun-medium", "dryrun-small")


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = budget_plane()
    yield p
    p.close()


@pytest.fixture
def router(plane: ControlPlane) -> Iterator[Router]:
    r = make_router(plane)
    yield r
    r.close()


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---- a degraded answer is never cached under the task's key ------------------------------


def test_a_degraded_answer_is_not_served_from_the_cache_to_a_critical_call(plane, router):
    plane.upsert_policy(
        RoutingPolicy(task="summarize", primary_model="dryrun-large", degrade_to="dryrun-small"),
        ENGINEER,
    )
    est = estimate(router, "dryrun-large", call(**MATCH))
    budget(
        plane, "acme", scope="org", scope_value="acme", action="degrade", limit_usd=usd(est - 1)
    )  # every dryrun-large call is over the soft limit
    sync(router)
    cheap = router.complete(call(**MATCH))
    assert cheap.model == "dryrun-small" and "degraded from dryrun-large" in cheap.route_reason
    crit = router.complete(call(criticality="critical", **MATCH))  # the same prompt
    assert not crit.cache_hit and crit.ai_called and crit.model == "dryrun-large"
    again = router.complete(call(criticality="critical", **MATCH))
    assert again.cache_hit and again.model == "dryrun-large"  # full answers still cached
    ev = events(router)
    assert list(ev.degraded) == [True, False, False]
    assert list(ev.cache_hit) == [False, False, True]


# ---- optimize_cost with an explicit model and fallbacks ----------------------------------


def _cheapest() -> str:
    cat = load_catalog()
    return min(MODELS, key=lambda m: (cat.lookup(m).input, cat.lookup(m).output))


@pytest.mark.parametrize("controls", [True, False])
def test_optimize_cost_orders_an_explicit_model_and_its_fallbacks_by_cost(plane, controls):
    r = make_router(plane) if controls else Router(Settings.from_env(), controls=False)
    try:
        fallbacks = ("dryrun-medium", "dryrun-small")
        plain = r.complete(ask("hi", model="dryrun-large", fallbacks=fallbacks, cache=False))
        assert plain.model == "dryrun-large" and plain.route_reason == "dryrun-large: requested"
        cheap = r.complete(
            ask("hi", model="dryrun-large", fallbacks=fallbacks, optimize_cost=True, cache=False)
        )
        assert cheap.model == _cheapest() == "dryrun-small"
        assert cheap.route_reason.startswith("dryrun-small: cheapest of 3 (optimize_cost")
        assert "dryrun-large first" in cheap.route_reason
        asked = r.complete(
            ask(
                "hi",
                model="dryrun-small",
                fallbacks=("dryrun-large",),
                optimize_cost=True,
                cache=False,
            )
        )
        assert asked.model == "dryrun-small"
        assert asked.route_reason == "dryrun-small: requested, cheapest of 2 (optimize_cost)"
    finally:
        r.close()


# ---- the sampling gate counts real provider calls only ------------------------------------


def test_cache_hits_and_blocked_calls_are_not_counted_as_gate_calls():
    plane = make_plane()
    try:
        plane.upsert_policy(RoutingPolicy(task="regime", primary_model="dryrun-small"), ENGINEER)
        plane.upsert_sampling(
            SamplingStrategy(key="regime", strategy="always", min_interval_s=0), ENGINEER
        )
        with make_router(plane) as r:
            assert r.controls is not None
            first = r.complete(ask("tick", task="regime"))
            hit = r.complete(ask("tick", task="regime"))  # the cache answers
            assert first.ai_called and hit.cache_hit
            budget(plane, "zero", scope="task", scope_value="regime", limit_usd=usd(0))
            sync(r)
            with pytest.raises(BudgetExceeded):
                r.complete(ask("another tick", task="regime"))
            st = r.controls.gate.stats()["regime"]
            assert (st.events, st.calls, st.skipped) == (3, 1, 2)
            assert st.saved_calls == 2
    finally:
        plane.close()


def test_an_always_key_records_its_call_at_the_start_and_its_answer():
    """ALWAYS with no minimum interval is not asked (the call is recorded when it ends):
    the gate still holds the call's start as its last call, and its answer to reuse."""
    plane = make_plane()
    try:
        plane.upsert_policy(RoutingPolicy(task="regime", primary_model="dryrun-small"), ENGINEER)
        plane.upsert_sampling(
            SamplingStrategy(key="regime", strategy="always", min_interval_s=0), ENGINEER
        )
        with make_router(plane) as r:
            assert r.controls is not None
            clock = Clock()
            r.controls.gate._clock = clock
            first = r.complete(ask(PROMPT, task="regime"))
            assert first.ai_called and r.controls.gate.last_answer("regime") is first
            plane.upsert_sampling(
                SamplingStrategy(key="regime", strategy="always", min_interval_s=60), ENGINEER
            )
            sync(r)
            clock.t += 59  # 59 s after the first call started: within the new interval
            reused = r.complete(ask(f"{PROMPT} (other)", task="regime"))
            assert not reused.ai_called and reused.text == first.text
            clock.t += 1
            assert r.complete(ask(f"{PROMPT} (third)", task="regime")).ai_called
            st = r.controls.gate.stats()["regime"]
            assert (st.events, st.calls, st.skipped) == (3, 2, 1)
    finally:
        plane.close()


def test_a_cache_hit_does_not_restart_the_sampling_interval():
    plane = make_plane()
    try:
        plane.upsert_policy(RoutingPolicy(task="regime", primary_model="dryrun-small"), ENGINEER)
        plane.upsert_sampling(
            SamplingStrategy(
                key="regime", strategy="periodic", params={"interval_s": 300}, min_interval_s=0
            ),
            ENGINEER,
        )
        with make_router(plane) as r:
            assert r.controls is not None
            clock = Clock()
            r.controls.gate._clock = clock
            assert r.complete(ask(PROMPT, task="regime")).ai_called  # a real call at t
            clock.t += 301
            assert r.complete(ask(PROMPT, task="regime")).cache_hit  # due, but cached
            clock.t += 1
            due = r.complete(ask(f"{PROMPT} (new)", task="regime"))
            assert due.ai_called and not due.cache_hit  # 302 s since the last real call
            st = r.controls.gate.stats()["regime"]
            assert (st.events, st.calls, st.skipped) == (3, 2, 1)
    finally:
        plane.close()


def test_a_waiting_low_batch_is_flushed_by_the_timer():
    """No event arrives after the batch's timeout: the router's timer makes its one call."""
    plane = make_plane()
    try:
        plane.upsert_policy(RoutingPolicy(task="digest", primary_model="dryrun-small"), ENGINEER)
        plane.upsert_sampling(
            SamplingStrategy(key="digest", strategy="always", min_interval_s=0, batch_timeout_s=3),
            ENGINEER,
        )
        with make_router(plane) as r:
            assert r.controls is not None
            r.batch_tick_s = 0.05
            first = r.complete(ask("headline one", task="digest", criticality="low"))
            second = r.complete(ask("headline two", task="digest", criticality="low"))
            assert first.ai_called and not second.ai_called  # batched: the last answer
            assert r.controls.gate.stats()["digest"].pending == 2
            deadline = time.monotonic() + 10
            while True:  # the flushed call is logged after its batch left the gate
                r.log.flush()
                with Reader(r.settings.home) as reader:
                    ev = reader.events(order_by="ts", descending=False)
                if len(ev) >= 3:
                    break
                assert time.monotonic() < deadline, "the batch was never flushed"
                time.sleep(0.05)
            assert r.controls.gate.stats()["digest"].pending == 0
        assert list(ev.status) == ["ok", "skipped", "ok"]
        assert list(ev.ai_called) == [True, False, True]
        assert ev.request_id.nunique() == 3  # the flush is a call of its own
    finally:
        plane.close()


# ---- the live-state shortcuts keep their guarantees ----------------------------------------


def test_a_breaker_seen_closed_is_reused_briefly_and_open_ones_never():
    from core.routing import RoutingEngine
    from core.state import MemoryState
    from core.types import ChatRequest, Message

    cat, shared = load_catalog(), MemoryState("t:")
    a = RoutingEngine(cat, shared, breaker_threshold=2, closed_ttl_s=0.2)
    b = RoutingEngine(cat, shared, breaker_threshold=2)  # another process's engine
    req = ChatRequest([Message("user", "hi")], model="dryrun-large", fallbacks=("dryrun-small",))
    assert a.route(req, None, prompt_tokens=5).models == ("dryrun-large", "dryrun-small")
    b.observe("dryrun-large", 10, ok=False)
    b.observe("dryrun-large", 10, ok=False)  # open now, in the shared state
    assert a.route(req, None, prompt_tokens=5).models[0] == "dryrun-large"  # seen closed <0.2s
    import time

    time.sleep(0.25)
    assert a.route(req, None, prompt_tokens=5).models == ("dryrun-small",)  # asked again
    assert b.route(req, None, prompt_tokens=5).models == ("dryrun-small",)
    a.observe("dryrun-small", 10, ok=False)
    a.observe("dryrun-small", 10, ok=False)  # a's own failure opens it: a knows at once
    with pytest.raises(Exception, match="circuit open"):
        a.route(req, None, prompt_tokens=5)


def test_a_tentative_gate_call_counts_only_when_reported_called():
    from core.sampling import Event, SamplingConfig, SamplingGate

    clock = Clock()
    gate = SamplingGate({"k": SamplingConfig("periodic", interval_s=60)}, clock=clock)
    gate.record_answer("k", "an earlier answer", 5)
    d = gate.decide(Event("k", signal=1.0), tentative=True)
    assert d.call and d.reason == "first" and d.tentative is not None
    assert not gate.decide(Event("k")).call  # the call in flight already holds the interval
    gate.not_called(d)  # answered elsewhere: as if that call never happened
    again = gate.decide(Event("k"), tentative=True)
    assert again.call and again.reason == "first"
    gate.called(again)
    gate.called(again.__class__("k", True, "plain"))  # not tentative: nothing to count
    assert not gate.decide(Event("k")).call
    st = gate.stats()["k"]
    assert (st.events, st.calls, st.skipped) == (4, 1, 3)


def test_settle_returns_the_new_values_so_thresholds_need_no_second_read():
    from core.state import MemoryState, Settlement

    st = MemoryState("t:")
    assert st.settle([Settlement("b", 0, 5), Settlement("b:c", 0, 3), Settlement("b", 0, 1)]) == [
        5,
        3,
        6,
    ]
    assert st.apply_deltas([("b", -6, None), ("b:c", 2, 60.0)]) == [0, 5]
    assert st.get_values(["b", "b:c"]) == [0, 5]


def test_a_controlled_call_makes_four_redis_round_trips(plane, redis_url):
    import os

    import redis.connection

    from core.state import make_state

    plane.upsert_sampling(
        SamplingStrategy(key="summarize", strategy="always", min_interval_s=0), ENGINEER
    )
    budget(plane, "acme", scope="org", scope_value="acme", limit_usd=usd(10**15))
    state = make_state(redis_url, prefix=os.environ["COSTLINE_TEST_PREFIX"])
    sent = 0
    real = redis.connection.Connection.send_packed_command

    def count(self, *a, **kw):  # one packed send per round trip (a pipeline is one)
        nonlocal sent
        sent += 1
        return real(self, *a, **kw)

    with make_router(plane, state) as r:
        r.complete(call("warm up", **MATCH))
        redis.connection.Connection.send_packed_command = count
        try:
            for i in range(5):
                assert not r.complete(call(f"{PROMPT} {i}", **MATCH)).cache_hit
        finally:
            redis.connection.Connection.send_packed_command = real
    # cache read+miss count, admit, settle (returns committed spend) with the breaker's
    # success in the same script, cache write+count; breakers seen closed are reused,
    # thresholds need no read
    assert sent == 5 * 4
