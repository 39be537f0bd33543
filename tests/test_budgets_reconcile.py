"""Budget counters are a cache of the usage log (issue 12, section 1): rebuilt when a router
starts, rebuilt when Redis lost them (epoch key), reconciled periodically with drift reported
and corrected. Real Router, real SQLite/Redis, real usage log."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from test_controls_support import ENGINEER, make_plane, make_router, redis_server

from core.control import Budget, ControlPlane
from core.controls import Controls
from core.errors import BudgetExceeded, CostlineError
from core.pricing import load_catalog
from core.router import Router
from core.settings import Settings
from core.state import MemoryState, ResilientState, SharedState, make_state
from core.types import ChatRequest, Message
from core.usage import Reader


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = make_plane()
    p.upsert_budget(Budget(id="cap", name="cap", limit_usd=Decimal(1), action="block"), ENGINEER)
    yield p
    p.close()


def call(i: int) -> ChatRequest:
    return ChatRequest([Message("user", f"reconcile {i}")], model="dryrun-small", max_tokens=30)


def logged_spend(r: Router) -> int:
    r.log.flush()
    with Reader(r.settings.home) as rd:
        return int(rd.events(columns=["cost_picousd"]).cost_picousd.sum())


def counters(r: Router) -> tuple[int, int]:
    """(committed, committed + reserved) of the 'cap' budget's current window."""
    assert r.controls is not None
    b = next(b for b in r.controls.snapshot().budgets if b.id == "cap")
    key = r.controls.guard.window(b).usd_key
    c, total = r.controls.state.get_values([key + ":c", key])
    return c, total


def test_a_new_router_starts_from_the_logged_spend(plane):
    """Per-process memory counters: today a restarted router started from $0."""
    with make_router(plane, MemoryState()) as first:
        for i in range(5):
            first.complete(call(i))
        spent = logged_spend(first)
    assert spent > 0
    with make_router(plane, MemoryState()) as second:
        assert counters(second) == (spent, spent)
        assert second.reconciler is not None and second.reconciler.drifts  # it said so


def test_reconcile_corrects_drift_both_ways_and_reports_it(plane, caplog):
    with make_router(plane, SharedState(Reader().home)) as r:
        for i in range(4):
            r.complete(call(i))
        spent = logged_spend(r)
        assert counters(r) == (spent, spent)
        rec = r.reconciler
        assert rec is not None
        assert rec.reconcile() == []  # in line: nothing to correct
        key = counters_key(r)
        state = r.controls.state if r.controls else None
        assert isinstance(state, SharedState)
        # a settle applied twice (a Redis stall did this): the counter is above the log
        state.apply_deltas([(key + ":c", 777, None), (key, 777, None)])
        assert rec.reconcile() == []  # maybe a settle not logged yet: only noted
        time.sleep(1.1)  # a lowering compares a snapshot at least MIN_LAG_S old
        caplog.set_level(logging.WARNING, logger="core.reconcile")
        drift = rec.reconcile()
        assert [d.corrected for d in drift] == [-777]
        assert counters(r) == (spent, spent)
        # a lost settle: below the log, raised at once
        state.apply_deltas([(key + ":c", -500, None), (key, -500, None)])
        assert [d.corrected for d in rec.reconcile()] == [500]
        assert counters(r) == (spent, spent)
        # a reservation that leaked into the total (K above K:c + holds): trued up
        state.add(key, 321)
        assert [d.corrected for d in rec.reconcile()] == [-321]
        assert counters(r) == (spent, spent)
        assert state.counters("budget_drift") == {
            "budget_drift_corrections": 3,
            "budget_drift_picousd": 777 + 500 + 321,
        }
        assert any("budget counter drift" in m.getMessage() for m in caplog.records)


def counters_key(r: Router) -> str:
    assert r.controls is not None
    b = next(b for b in r.controls.snapshot().budgets if b.id == "cap")
    return r.controls.guard.window(b).usd_key


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_that_lost_its_counters_is_rebuilt_before_admitting(plane, policy):
    """FLUSHALL (or a restart) empties Redis: the epoch changed, so admission waits for the
    rebuild from the log. Today the counters silently restarted from $0."""
    with redis_server() as server:
        state = make_state(server.url)
        assert isinstance(state, ResilientState)
        state.retry_interval_s = 0.05
        controls = Controls(load_catalog(), plane=plane, state=state, redis_policy=policy)
        with Router(Settings.from_env(), controls=controls) as r:
            for i in range(4):
                r.complete(call(i))
            spent = logged_spend(r)
            assert counters(r)[0] == spent
            redis.Redis.from_url(server.url).flushall()
            done, refused = 0, 0
            deadline = time.monotonic() + 20
            while not (state.healthy and done >= 3) and time.monotonic() < deadline:
                try:
                    r.complete(call(100 + done + refused))
                    done += 1
                except CostlineError:  # fail-closed refuses until the rebuild
                    refused += 1
                time.sleep(0.02)
            assert refused > 0 if policy == "closed" else refused == 0
            assert state.healthy and state.outages == 1
            now_spent = logged_spend(r)
            assert counters(r)[0] == now_spent  # the log's spend, not $0 + the new calls


@pytest.mark.slow
def test_redis_stalls_leave_no_drift_after_reconciling(plane):
    """Redis paused for 0.6 s six times under load: calls time out (the script still runs
    later) and settle twice. Today the counters stayed off the log for good."""
    with redis_server() as server:
        state = make_state(server.url, policy="open")
        assert isinstance(state, ResilientState)
        state.retry_interval_s = 0.05
        with make_router(plane, state) as r:
            stop = threading.Event()

            def work(t: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    r.complete(call(t * 100_000 + i))

            threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for th in threads:
                th.start()
            admin = redis.Redis.from_url(server.url)
            try:
                for _ in range(6):
                    time.sleep(0.3)
                    admin.execute_command("CLIENT", "PAUSE", "600", "ALL")
                    time.sleep(0.8)
            finally:
                stop.set()
                for th in threads:
                    th.join()
            deadline = time.monotonic() + 10
            while not state.healthy and time.monotonic() < deadline:
                r.complete(call(-1))
                time.sleep(0.05)
            assert state.outages >= 1 and r.reconciler is not None
            print("round1", r.reconciler.reconcile(), counters(r))
            time.sleep(1.1)
            print("round2", r.reconciler.reconcile(), counters(r))
            spent = logged_spend(r)
            c, total = counters(r)
            assert c == spent, f"committed {c} vs log {spent}"
            assert total >= c  # the reserved part is never negative


def test_two_processes_of_one_home_lower_an_excess_once(plane):
    """Every router process of a home reconciles (gateway workers, batch jobs). Each one
    saw the same excess at its previous round; on main each lowered it, so N processes took
    N times the excess off and the budget admitted that much past its limit until the next
    raise."""
    home = Reader().home
    with make_router(plane, SharedState(home)) as r1, make_router(plane, SharedState(home)) as r2:
        for i in range(4):
            r1.complete(call(i))
        spent = logged_spend(r1)
        key = counters_key(r1)
        state = r1.controls.state if r1.controls else None
        assert isinstance(state, SharedState)
        state.apply_deltas([(key + ":c", 777, None), (key, 777, None)])  # a double settle
        rec1, rec2 = r1.reconciler, r2.reconciler
        assert rec1 is not None and rec2 is not None
        assert rec1.reconcile() == [] and rec2.reconcile() == []  # both note the excess
        time.sleep(1.1)
        lowered = [d.corrected for d in rec1.reconcile() + rec2.reconcile()]
        assert lowered == [-777], lowered
        assert counters(r1) == (spent, spent)
        rec1.close()  # the process that lowers goes away: another one takes over
        r1.close()
        state = r2.controls.state if r2.controls else None
        assert isinstance(state, SharedState)
        state.apply_deltas([(key + ":c", 555, None), (key, 555, None)])
        assert rec2.reconcile() == []
        time.sleep(1.1)
        assert [d.corrected for d in rec2.reconcile()] == [-555]
        assert counters(r2) == (spent, spent)


def test_the_drift_metric_counts_past_int64_on_redis(plane):
    """Two rounds each lowering a counter by $5M (a settle applied twice by a very large
    org): the metric's money passes 2**63 pUSD and stays exact. One Redis HINCRBY counter
    refused the second round (overflow) and the metric silently stopped counting."""
    big = 5_000_000 * 10**12 + 123  # over 2**62: two of them overflow an int64
    with redis_server() as server:
        state = make_state(server.url)
        with make_router(plane, state) as r:
            r.complete(call(0))
            spent = logged_spend(r)
            rec = r.reconciler
            assert rec is not None
            key = counters_key(r)
            assert rec.reconcile() == []
            for _ in range(2):
                state.apply_deltas([(key + ":c", big, None), (key, big, None)])
                assert rec.reconcile() == []  # maybe a settle not logged yet: only noted
                time.sleep(1.1)  # a lowering compares a snapshot at least MIN_LAG_S old
                assert [d.corrected for d in rec.reconcile()] == [-big]
                assert counters(r) == (spent, spent)
            money = state.counters("budget_drift_")
            got = money.get("budget_drift_usd", 0) * 10**12 + money.get("budget_drift_picousd", 0)
            assert got == 2 * big, money
            from core.reconcile import drift_picousd

            assert drift_picousd(state) == got
            assert state.counters("budget_drift_corrections") == {"budget_drift_corrections": 2}


def tighten_to(plane: ControlPlane, spent: int) -> None:
    """The 'cap' budget's limit set to exactly ``spent`` pUSD: the log holds the whole limit."""
    limit = Decimal(spent).scaleb(-12)
    plane.upsert_budget(Budget(id="cap", name="cap", limit_usd=limit, action="block"), ENGINEER)


def test_a_router_started_while_redis_is_away_enforces_the_logged_spend(plane):
    """Fail-open, Redis down when a router starts: its local counters start from the usage log.
    On main they started from $0, so each process started during an outage could spend a
    whole limit more, however much the log already held."""
    with make_router(plane, MemoryState()) as first:
        for i in range(3):
            first.complete(call(i))
        spent = logged_spend(first)
    tighten_to(plane, spent)
    with redis_server() as server:
        url = server.url
    state = make_state(url, policy="open")  # nothing listens there any more
    assert isinstance(state, ResilientState)
    state.retry_interval_s = 60
    with make_router(plane, state) as r:
        with pytest.raises(BudgetExceeded):
            r.complete(call(10))
        assert not state.healthy
        assert logged_spend(r) == spent


def test_a_round_during_an_outage_raises_the_local_counters_to_the_log(plane):
    """Fail-open, Redis stopped: each process enforces from what it last saw, and each round
    raises that to the usage log, so another process's logged spend counts before Redis is
    back; once back, each replays only its own outage spend. On main, rounds were skipped
    while Redis was away and the process admitted past the limit."""
    with redis_server() as server:
        states = [make_state(server.url, policy="open") for _ in range(2)]
        for st in states:
            assert isinstance(st, ResilientState)
            st.retry_interval_s = 0.3
        with make_router(plane, states[0]) as a, make_router(plane, states[1]) as b:
            a.complete(call(0))
            b.complete(call(1))
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSTOP)  # Redis stalls: calls time out
            try:
                for i in range(3):
                    b.complete(call(10 + i))  # served from b's own memory
                a.complete(call(20))
                assert not any(st.healthy for st in states)
                b.log.flush()
                spent = logged_spend(a)
                tighten_to(plane, spent)
                limit = Decimal(spent).scaleb(-12)
                assert a.controls is not None
                deadline = time.monotonic() + 10  # the edit reaches a's snapshot
                while next(x for x in a.controls.snapshot().budgets if x.id == "cap").limit_usd != (
                    limit
                ):
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                assert a.reconciler is not None
                a.reconciler.reconcile()  # while Redis is away: a's counters raised to the log
                with pytest.raises(BudgetExceeded):
                    a.complete(call(21))  # b's spend is in the log, so it counts here too
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            deadline = time.monotonic() + 20
            while not states[0].healthy:  # a replays its outage deltas, then rebuilds
                assert time.monotonic() < deadline, "Redis never came back"
                counters(a)
                time.sleep(0.05)
            assert counters(a)[0] == spent  # a replayed its own call only, not b's again
            while not states[1].healthy:  # b replays its own (the log held them already:
                assert time.monotonic() < deadline  # above the log, refusing early)
                counters(b)
                time.sleep(0.05)
            assert counters(a)[0] >= spent
            a.reconciler.reconcile()
            time.sleep(1.1)  # a lowering compares a snapshot at least MIN_LAG_S old
            a.reconciler.reconcile()
            assert counters(a)[0] == spent
