"""ResilientState against a PRIVATE redis-server that we kill -9 and restart (never the shared one).

A probe interval of 50 ms keeps these tests short; production uses 2 s.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.errors import ConfigError
from core.state import (
    BudgetItem,
    MemoryState,
    RateItem,
    RedisState,
    ResilientState,
    Settlement,
    SharedState,
    make_state,
)
from tests.servers.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")
LOGGER = "core.state.resilient"
PREFIX = "costline-failover:"


class PrivateRedis:
    """A throwaway redis-server on a free port; ``kill()`` is SIGKILL to this process only."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def client(self) -> redis.Redis:  # type: ignore[type-arg]
        return redis.Redis(port=self.port)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    srv = PrivateRedis(tmp_path)
    srv.start()
    yield srv
    srv.kill()


def resilient(srv: PrivateRedis, policy: str = "open") -> ResilientState:
    return ResilientState(
        RedisState(srv.url, PREFIX),
        MemoryState(PREFIX),
        policy=policy,  # type: ignore[arg-type]
        retry_interval_s=0.05,
    )


def until_healthy(st: ResilientState, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not st.healthy:
        assert time.monotonic() < deadline, "did not reconnect"
        st.cache_get("poke")
        time.sleep(0.01)


def test_kill_and_restart_mid_run(server: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    st = resilient(server)
    rate = RateItem("rps", "token_bucket", 10**6, 1.0)
    spend = BudgetItem("calls", None, 1, 3600)  # tracked, never blocks: counts admits
    misses_in_outage = 0
    for i in range(300):
        if i == 100:
            server.kill()
        if i == 200:
            server.start()
        assert st.admit([rate], [spend]).ok
        st.cache_set(f"k{i}", b"v", 60)
        hit = st.cache_get(f"k{i}")
        if 100 < i < 200:
            misses_in_outage += hit is None
        time.sleep(0.001)
    until_healthy(st)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    assert len(infos) == 1 and "reachable again" in infos[0].getMessage()
    assert st.outages == 1 and st.healthy
    assert misses_in_outage == 99
    # Redis is used again: the new (empty) server holds every admit since the kill,
    # the outage ones replayed from the fallback, and new cache entries.
    raw = server.client()
    assert int(raw.get(PREFIX + "b:calls") or 0) == 200
    st.cache_set("after", b"again", 60)
    assert raw.get(PREFIX + "c:after") == b"again"
    assert st.admit([rate], [spend]).budget_values == [200]


def test_outage_spend_is_enforced_locally_and_replayed(server: PrivateRedis) -> None:
    st = resilient(server)
    budget = "org:month"
    assert st.admit([], [BudgetItem(budget, 1000, 100, 3600)]).ok
    server.client().save()  # the restarted server comes back with value 100
    server.kill()
    during = st.admit([], [BudgetItem(budget, 1000, 800, 3600)])
    assert during.ok and during.budget_values == [100]  # seeded from the last Redis value
    refused = st.admit([], [BudgetItem(budget, 1000, 200, 3600)])
    assert (refused.ok, refused.reason, refused.budget_values) == (False, "budget", [900])
    st.settle([Settlement(budget, reserved=800, actual=500, ttl_s=3600)])
    assert st.admit([], [BudgetItem(budget, 1000, 50, 3600)]).ok  # reserved in the fallback
    assert st.get_values([budget]) == [650]
    server.start()
    until_healthy(st)
    raw = server.client()
    assert int(raw.get(PREFIX + "b:" + budget) or 0) == 650
    assert 0 < raw.pttl(PREFIX + "b:" + budget) <= 3_600_000
    st.settle([Settlement(budget, reserved=50, actual=20, ttl_s=3600)])  # settles in Redis
    assert st.get_values([budget]) == [620]


def test_closed_policy_refuses_during_outage(server: PrivateRedis) -> None:
    st = resilient(server, policy="closed")
    item = BudgetItem("b", 1000, 10, 3600)
    assert st.admit([], [item]).ok
    server.kill()
    adm = st.admit([], [item])
    assert (adm.ok, adm.reason, adm.retry_after_s) == (False, "unavailable", 0.05)
    assert adm.budget_values == [10]
    assert st.breaker_allow("model") == "open"
    assert st.cache_get("x") is None
    st.settle([Settlement("b", reserved=10, actual=4, ttl_s=3600)])  # kept, replayed later
    assert not st.healthy
    server.start()
    until_healthy(st)
    assert st.admit([], [item]).ok
    assert st.get_values(["b"]) == [-6 + 10]  # fresh server: the replayed -6, then +10


def test_counters_and_deletes_replay(server: PrivateRedis) -> None:
    st = resilient(server)
    st.cache_set("stale", b"old", 60)
    server.client().save()
    server.kill()
    st.incr("hits", 3)
    st.cache_delete("stale")
    server.start()
    assert server.client().get(PREFIX + "c:stale") == b"old"
    until_healthy(st)
    assert st.counters() == {"hits": 3}
    assert st.cache_get("stale") is None


def test_scripts_reload_after_script_flush(server: PrivateRedis) -> None:
    st = RedisState(server.url, PREFIX)
    rate = RateItem("s", "token_bucket", 5, 60.0)
    assert st.admit([rate], [], now=1e9).ok
    server.client().script_flush()
    assert st.admit([rate], [], now=1e9).ok


def test_make_state_picks_the_backend(
    server: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    shared = make_state()  # one machine's processes share the budget counters
    assert isinstance(shared, SharedState)
    shared.close()
    assert isinstance(make_state("memory://"), MemoryState)
    monkeypatch.setenv("REDIS_URL", server.url)
    st = make_state(prefix="x:")
    assert isinstance(st, ResilientState) and st.primary.prefix == "x:"
    assert st.incr("n") == 1
    with pytest.raises(ConfigError, match="state URL 'postgres://nope'"):
        make_state("postgres://nope")


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_tpm_charges_settle_where_they_were_taken(server: PrivateRedis, policy: str) -> None:
    """A tokens-per-minute charge taken in Redis is corrected in Redis; one taken in the
    fallback (policy open) in the fallback; Redis away at settle: the budgets go to the
    fallback as ever and the Redis charge stays as reserved (nothing raises). Fail-closed
    refuses during the outage and charges nothing."""
    st = resilient(server, policy)
    t0 = 1_700_000_000.0

    def tpm(cost: int) -> RateItem:
        return RateItem("tpm", "sliding_window", 1_000, 60.0, None, cost, True)

    first = st.admit([tpm(600)], [BudgetItem("b", None, 10, 3600)], t0)
    assert first.ok and first.charges[0].owner is st.primary
    st.apply_deltas([("b", -4, 3600)], [(first.charges[0], 50)], t0)
    assert st.admit([tpm(950)], [], t0).ok and not st.admit([tpm(1)], [], t0).ok  # 50 + 950
    second = st.admit([], [BudgetItem("b", None, 10, 3600)], t0)
    server.kill()
    st.apply_deltas([("b", -10, 3600)], [(first.charges[0], 0)], t0)  # Redis away: no raise
    during = st.admit([tpm(700)], [], t0)
    if policy == "closed":
        assert (during.ok, during.reason, during.charges) == (False, "unavailable", ())
        return
    assert during.ok and during.charges[0].owner is st.fallback
    st.apply_deltas([], [(during.charges[0], 100)], t0)
    assert st.admit([tpm(900)], [], t0).ok and not st.admit([tpm(1)], [], t0).ok
    assert second.ok


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_a_settle_with_its_breaker_record_in_one_step_up_and_down(
    server: PrivateRedis, policy: str
) -> None:
    """``settle_and_close``: the budget deltas and a success's breaker record (the breaker
    deleted) in one Redis script; with Redis down, both in the fallback as each would be
    alone (the closed policy answers 'open' for a breaker, as ``breaker_record`` does)."""
    st = resilient(server, policy)
    raw = server.client()
    assert st.breaker_record("m", False, 1, 30.0) == "open"  # an open breaker in Redis
    assert raw.exists(PREFIX + "br:m")
    assert st.admit([], [BudgetItem("b", 1000, 100, 3600)]).ok
    assert st.settle_and_close([("b", -40, 3600)], (), None, "m") == ([60], "closed")
    assert not raw.exists(PREFIX + "br:m") and int(raw.get(PREFIX + "b:b") or 0) == 60
    server.client().save()
    server.kill()
    before = st.get_values(["b"])[0]  # the fallback's, seeded as for any outage settle
    values, breaker = st.settle_and_close([("b", 5, 3600)], (), None, "m")
    assert (values, breaker) == ([before + 5], "open" if policy == "closed" else "closed")
    assert st.get_values(["b"]) == [before + 5] and not st.healthy
