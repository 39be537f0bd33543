"""One contract, three backends: MemoryState, RedisState and ResilientState on a healthy Redis.

Time-dependent algorithms get an injected ``now``; only key TTLs (which follow the backend's own
clock, as Redis does) are tested with short sleeps.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.state import (
    BudgetItem,
    MemoryState,
    RateItem,
    RedisState,
    ResilientState,
    Settlement,
    SharedState,
    State,
    make_key,
)
from core.state.base import MAX_KEY_LEN

T0 = 1_700_000_000.0  # an injected wall-clock time


@pytest.fixture(params=["memory", "shared", "redis", "resilient"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[State]:
    if request.param == "memory":
        yield MemoryState("t:")
        return
    if request.param == "shared":  # SQLite in COSTLINE_HOME, shared by processes
        shared = SharedState(tmp_path, "t:")
        yield shared
        shared.close()
        return
    url = request.getfixturevalue("redis_url")
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    primary = RedisState(url, prefix, socket_timeout=2.0)
    st: State = primary
    if request.param == "resilient":
        st = ResilientState(primary, MemoryState(prefix))
    yield st
    st.close()


def tb(key: str, limit: int, window_s: float, burst: int | None = None, cost: int = 1) -> RateItem:
    return RateItem(key, "token_bucket", limit, window_s, burst=burst, cost=cost)


def sw(key: str, limit: int, window_s: float, cost: int = 1) -> RateItem:
    return RateItem(key, "sliding_window", limit, window_s, cost=cost)


# -- token bucket ------------------------------------------------------------------------------
def test_token_bucket_burst_then_refill(state: State) -> None:
    r = [tb("u1", limit=10, window_s=60, burst=3)]  # refills 1 every 6 s
    assert [state.admit(r, [], now=T0).ok for _ in range(4)] == [True, True, True, False]
    denied = state.admit(r, [], now=T0)
    assert (denied.reason, denied.failed_index) == ("rate", 0)
    assert denied.retry_after_s == pytest.approx(6.0)
    assert not state.admit(r, [], now=T0 + 5.9).ok
    assert state.admit(r, [], now=T0 + 6.0).ok
    assert not state.admit(r, [], now=T0 + 6.0).ok


def test_token_bucket_refill_caps_at_burst(state: State) -> None:
    r = [tb("u2", limit=10, window_s=60, burst=3)]
    assert state.admit(r, [], now=T0).ok
    later = T0 + 3600
    assert [state.admit(r, [], now=later).ok for _ in range(4)] == [True, True, True, False]


def test_token_bucket_costs_tokens(state: State) -> None:
    r = [tb("tpm", limit=1000, window_s=60, cost=600)]  # burst defaults to limit
    assert state.admit(r, [], now=T0).ok
    denied = state.admit(r, [], now=T0)
    assert denied.retry_after_s == pytest.approx(200 / (1000 / 60))
    assert state.admit(r, [], now=T0 + 12.0).ok
    too_big = state.admit([tb("tpm2", 1000, 60, cost=1001)], [], now=T0)
    assert not too_big.ok and too_big.retry_after_s == math.inf


def test_token_bucket_uses_server_clock_without_now(state: State) -> None:
    r = [tb("clock", limit=2, window_s=3600)]
    assert [state.admit(r, []).ok for _ in range(3)] == [True, True, False]
    assert state.admit(r, []).retry_after_s == pytest.approx(1800, abs=5)


# -- sliding window ----------------------------------------------------------------------------
def test_sliding_window_exact_log(state: State) -> None:
    r = [sw("w1", limit=3, window_s=10)]
    assert [state.admit(r, [], now=T0 + t).ok for t in (0, 1, 2)] == [True] * 3
    denied = state.admit(r, [], now=T0 + 3)
    assert not denied.ok and denied.retry_after_s == pytest.approx(7.0)
    assert not state.admit(r, [], now=T0 + 9.99).ok
    assert state.admit(r, [], now=T0 + 10).ok  # the entry at T0 left the window
    assert not state.admit(r, [], now=T0 + 10.5).ok
    assert state.admit(r, [], now=T0 + 11).ok


def test_sliding_window_weighted_costs(state: State) -> None:
    def item(cost: int) -> list[RateItem]:
        return [sw("w2", limit=100, window_s=60, cost=cost)]

    assert state.admit(item(60), [], now=T0).ok
    assert state.admit(item(30), [], now=T0 + 10).ok
    denied = state.admit(item(20), [], now=T0 + 20)
    assert not denied.ok and denied.retry_after_s == pytest.approx(40.0)
    assert state.admit(item(10), [], now=T0 + 20).ok
    assert state.admit(item(60), [], now=T0 + 60).ok  # 60 at T0 expired: 40 + 60
    assert state.admit(item(101), [], now=T0 + 60).retry_after_s == math.inf


# -- admit is all-or-nothing -------------------------------------------------------------------
def test_failing_budget_leaves_rates_untouched(state: State) -> None:
    rates = [tb("aon-b", limit=2, window_s=60), sw("aon-w", limit=2, window_s=60)]
    budgets = [BudgetItem("aon-ok", 1000, 10, 60), BudgetItem("aon-full", 100, 101, 60)]
    adm = state.admit(rates, budgets, now=T0)
    assert (adm.ok, adm.reason, adm.failed_index) == (False, "budget", 1)
    assert adm.retry_after_s is None
    assert state.get_values(["aon-ok", "aon-full"]) == [0, 0]
    # both rate items still hold their full capacity of 2
    assert [state.admit(rates, [], now=T0).ok for _ in range(3)] == [True, True, False]


def test_failing_rate_leaves_earlier_rates_and_budgets_untouched(state: State) -> None:
    assert state.admit([tb("aon-2", 1, 60)], [], now=T0).ok  # empty it
    rates = [tb("aon-1", 1, 60), tb("aon-2", 1, 60)]
    adm = state.admit(rates, [BudgetItem("aon-b2", 100, 5)], now=T0)
    assert (adm.ok, adm.reason, adm.failed_index) == (False, "rate", 1)
    assert adm.budget_values == [0]
    assert state.get_values(["aon-b2"]) == [0]
    assert state.admit([tb("aon-1", 1, 60)], [], now=T0).ok


# -- budgets -----------------------------------------------------------------------------------
def test_budget_reserve_settle_arithmetic(state: State) -> None:
    assert state.add("b1", 900, 60) == 900
    adm = state.admit([], [BudgetItem("b1", 1000, 50, 60)])
    assert adm.ok and adm.budget_values == [900]
    assert state.get_values(["b1"]) == [950]
    state.settle([Settlement("b1", reserved=50, actual=30, ttl_s=60)])
    assert state.get_values(["b1", "missing"]) == [930, 0]
    over = state.admit([], [BudgetItem("b1", 1000, 71, 60)])
    assert (over.ok, over.reason, over.failed_index, over.budget_values) == (
        False,
        "budget",
        0,
        [930],
    )
    assert state.admit([], [BudgetItem("b1", 1000, 70, 60)]).ok  # exactly at the limit
    assert state.get_values(["b1"]) == [1000]
    assert state.admit([], [BudgetItem("b1", 1000, 0, 60)]).ok  # amount 0: a read


def test_budget_values_are_exact_beyond_float_precision(state: State) -> None:
    limit = 10**18  # $1M in picodollars: far past 2**53
    state.add("big", limit - 3)
    assert state.admit([], [BudgetItem("big", limit, 3)]).ok
    assert not state.admit([], [BudgetItem("big", limit, 1)]).ok
    state.settle([Settlement("big", reserved=3, actual=2)])
    assert state.get_values(["big"]) == [limit - 1]
    assert state.admit([], [BudgetItem("big", limit, 1)]).budget_values == [limit - 1]


def test_negative_values_compare_correctly(state: State) -> None:
    state.settle([Settlement("neg", reserved=5, actual=0)])  # settles after the key expired
    assert state.get_values(["neg"]) == [-5]
    assert state.admit([], [BudgetItem("neg", 0, 5)]).ok
    assert not state.admit([], [BudgetItem("neg", 0, 1)]).ok


def test_untracked_limits_never_block(state: State) -> None:
    for limit in (None, -1):
        key = f"alert-{limit}"
        for _ in range(3):
            assert state.admit([], [BudgetItem(key, limit, 10**15)]).ok
        assert state.get_values([key]) == [3 * 10**15]


def test_budget_window_key_expires(state: State) -> None:
    assert state.admit([], [BudgetItem("short", 100, 40, ttl_s=0.4)]).ok
    assert state.get_values(["short"]) == [40]
    time.sleep(0.6)
    assert state.get_values(["short"]) == [0]


# -- circuit breaker ---------------------------------------------------------------------------
def test_breaker_opens_after_threshold_and_closes_on_success(state: State) -> None:
    for _ in range(2):
        assert state.breaker_record("m", False, threshold=3, cooldown_s=10, now=T0) == "closed"
    assert state.breaker_allow("m", now=T0) == "closed"
    assert state.breaker_record("m", False, threshold=3, cooldown_s=10, now=T0) == "open"
    assert state.breaker_allow("m", now=T0 + 9.9) == "open"
    assert state.breaker_allow("m", now=T0 + 10) == "half_open"
    assert state.breaker_allow("m", now=T0 + 10) == "open"  # the probe is taken
    assert state.breaker_record("m", True, threshold=3, cooldown_s=10, now=T0 + 11) == "closed"
    assert state.breaker_allow("m", now=T0 + 11) == "closed"


def test_breaker_failed_probe_reopens(state: State) -> None:
    for _ in range(2):
        state.breaker_record("p", False, threshold=2, cooldown_s=5, now=T0)
    assert state.breaker_allow("p", now=T0 + 5) == "half_open"
    assert state.breaker_record("p", False, threshold=2, cooldown_s=5, now=T0 + 6) == "open"
    assert state.breaker_allow("p", now=T0 + 10.9) == "open"  # cooldown counts from T0 + 6
    assert state.breaker_allow("p", now=T0 + 11) == "half_open"
    # a probe that never reports is given up after one more cooldown
    assert state.breaker_allow("p", now=T0 + 15) == "open"
    assert state.breaker_allow("p", now=T0 + 16) == "half_open"


def test_settle_and_close_settles_and_closes_the_breaker_in_one_step(state: State) -> None:
    """Where a backend offers ``settle_and_close``: the budget deltas applied (new values
    back) and the breaker closed, as ``apply_deltas`` then a success's ``breaker_record``."""
    if isinstance(state, SharedState):
        # it settles in SQLite and closes breakers apart: the router must not find the step
        assert getattr(state, "settle_and_close", None) is None
        return
    step = state.settle_and_close  # type: ignore[attr-defined]
    for _ in range(2):
        state.breaker_record("sc", False, threshold=2, cooldown_s=30, now=T0)
    assert state.breaker_allow("sc", now=T0 + 1) == "open"
    assert state.admit([], [BudgetItem("sc-b", 1000, 100, 3600)], now=T0).ok
    assert step([("sc-b", -40, 3600), ("sc-b:c", 60, 3600)], (), None, "sc") == ([60, 60], "closed")
    assert state.get_values(["sc-b", "sc-b:c"]) == [60, 60]
    assert state.breaker_allow("sc", now=T0 + 1) == "closed"


def test_breaker_success_resets_consecutive_failures(state: State) -> None:
    for ok in (False, False, True, False, False):
        state.breaker_record("c", ok, threshold=3, cooldown_s=5, now=T0)
    assert state.breaker_allow("c", now=T0) == "closed"


def test_breaker_single_probe_under_contention(state: State) -> None:
    for _ in range(3):
        state.breaker_record("race", False, threshold=3, cooldown_s=1, now=T0)
    start = threading.Barrier(20)
    seen: list[str] = []

    def probe() -> None:
        start.wait()
        seen.append(state.breaker_allow("race", now=T0 + 2))

    threads = [threading.Thread(target=probe) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == ["half_open"] + ["open"] * 19


# -- cache, counters, keys ---------------------------------------------------------------------
def test_cache_roundtrip_ttl_and_delete(state: State) -> None:
    blob = bytes(range(256)) * 4
    state.cache_set("req-1", blob, ttl_s=30)
    state.cache_set("req-2", b"short", ttl_s=0.4)
    assert state.cache_get("req-1") == blob
    assert state.cache_get("req-2") == b"short"
    assert state.cache_get("req-3") is None
    time.sleep(0.6)
    assert state.cache_get("req-2") is None
    state.cache_delete("req-1")
    assert state.cache_get("req-1") is None


def test_long_keys_are_hashed_and_stay_distinct(state: State) -> None:
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    state.cache_set(a, b"A", 30)
    state.cache_set(b, b"B", 30)
    assert (state.cache_get(a), state.cache_get(b)) == (b"A", b"B")
    state.add(a, 5)
    assert state.get_values([a, b]) == [5, 0]
    assert state.admit([tb(a, 1, 60)], [], now=T0).ok
    assert state.admit([tb(b, 1, 60)], [], now=T0).ok


def test_counters(state: State) -> None:
    assert state.incr("cache.hits") == 1
    assert state.incr("cache.hits", 4) == 5
    assert state.incr("cache.misses") == 1
    assert state.incr("saved_pico", 10**15) == 10**15
    assert state.counters("cache.") == {"cache.hits": 5, "cache.misses": 1}
    assert state.counters()["saved_pico"] == 10**15


# -- Redis specifics ---------------------------------------------------------------------------
def test_make_key_namespaces_and_hashes() -> None:
    assert make_key("costline:", "b", "org:acme") == "costline:b:org:acme"
    long = make_key("costline:", "c", "k" * 300)
    assert len(long) <= MAX_KEY_LEN and long.startswith("costline:c:#")
    assert long == make_key("costline:", "c", "k" * 300)
    assert long != make_key("costline:", "c", "k" * 301)


def test_redis_keys_live_under_the_prefix(redis_url: str) -> None:
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    st = RedisState(redis_url, prefix)
    other = RedisState(redis_url, prefix + "other:")
    st.cache_set("k" * 300, b"v", 30)
    st.add("b", 7)
    assert other.get_values(["b"]) == [0] and other.cache_get("k" * 300) is None
    raw = redis.Redis.from_url(redis_url)
    names = {k.decode() for k in raw.scan_iter(match=prefix + "*")}
    assert names == {make_key(prefix, "c", "k" * 300), prefix + "b:b"}
    assert max(len(n) for n in names) <= MAX_KEY_LEN
    raw.close()
