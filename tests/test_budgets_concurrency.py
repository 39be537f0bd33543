"""50 concurrent calls against a nearly spent hard limit: reservations never let spend pass it.

Threads on MemoryState, threads on real Redis, and two processes sharing Redis. Admitted calls
settle at their estimate (then exactly 14 fit) or below it, as the router's max-cost estimate
is an upper bound (then settling frees room and more fit, but spend still stays under).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from core import clock
from core.budgets import BudgetGuard, window
from core.control import Budget
from core.state import RedisState, State
from core.types import PICO, ChatRequest, Message
from tests.child_death import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
CENT = PICO // 100
LIMIT = Budget(
    id="acme",
    name="Acme",
    scope="org",
    scope_value="acme",
    period="month",
    limit_usd=Decimal("1.00"),
    action="block",
    timezone="UTC",
)
SPENT, EST, ACTUAL = 90 * CENT, 7 * CENT // 10, 6 * CENT // 10  # $0.90, $0.007, $0.006
FITS = (PICO - SPENT) // EST  # 14 reservations of $0.007 fit in the last $0.10
REQ = ChatRequest([Message("user", "hi")], org="acme")


def prespend(guard: BudgetGuard) -> None:
    d = guard.admit(REQ, "gpt-4o", "openai", SPENT, 0, [LIMIT], [])
    assert d.admitted
    guard.settle(d, SPENT, 0)


def values(guard: BudgetGuard) -> tuple[int, int]:
    w = window(LIMIT, clock.now())
    live, committed = guard.state.get_values([w.usd_key, w.committed(w.usd_key)])
    return live, committed


@pytest.mark.parametrize("actual", [EST, ACTUAL])
def test_fifty_concurrent_calls_never_overshoot(state: State, actual: int) -> None:
    guard = BudgetGuard(state)
    prespend(guard)
    start = threading.Barrier(50)
    admitted: list[bool] = []
    peaks: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        start.wait()
        d = guard.admit(REQ, "gpt-4o", "openai", EST, 0, [LIMIT], [])
        if d.admitted:
            peaks.append(values(guard)[0])
            time.sleep(0.01)  # the "provider call": reservations overlap
            guard.settle(d, actual, 0)
        else:
            assert d.blocked is not None
        with lock:
            admitted.append(d.admitted)

    threads = [threading.Thread(target=call) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = admitted.count(True)
    assert n == FITS if actual == EST else FITS <= n <= (PICO - SPENT) // actual
    assert max(peaks) <= PICO
    assert values(guard) == (SPENT + n * actual, SPENT + n * actual)
    assert values(guard)[0] <= PICO


CHILD = r"""
import sys, threading, time
from datetime import UTC, datetime
from decimal import Decimal
from core import clock
from core.budgets import BudgetGuard
from core.control import Budget
from core.state import RedisState
from core.types import ChatRequest, Message
url, prefix, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
est, actual = int(sys.argv[4]), int(sys.argv[5])
wall = float(sys.argv[6])  # the parent's wall clock minus CLOCK_MONOTONIC: its month is ours
clock.set_clock(lambda: datetime.fromtimestamp(wall + time.monotonic(), UTC))
st = RedisState(url, prefix, socket_timeout=5.0)
st.ping()
guard = BudgetGuard(st)
limit = Budget(id="acme", name="Acme", scope="org", scope_value="acme", period="month",
               limit_usd=Decimal("1.00"), action="block", timezone="UTC")
req = ChatRequest([Message("user", "hi")], org="acme")
oks = []
def work():
    while time.monotonic() < start:
        time.sleep(0.001)
    for _ in range(5):
        d = guard.admit(req, "gpt-4o", "openai", est, 0, [limit], [])
        oks.append(d.admitted)
        if d.admitted:
            time.sleep(0.005)
            guard.settle(d, actual, 0)
threads = [threading.Thread(target=work) for _ in range(5)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(oks))
"""


def test_two_processes_share_one_limit_through_redis(redis_url: str) -> None:
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    guard = BudgetGuard(RedisState(redis_url, prefix, socket_timeout=5.0))
    prespend(guard)
    # both children are up by then, then race; CLOCK_MONOTONIC is one clock for every
    # process here (a moved test clock, time-machine's, is this process's wall clock only)
    start = time.monotonic() + 2.0
    # the children count the budget's window on this process's clock, moved or not
    wall = clock.timestamp() - time.monotonic()
    args = [redis_url, prefix, repr(start), str(EST), str(ACTUAL), repr(wall)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", die_with_parent() + CHILD, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    n = sum(int(o.strip()) for o in outs)  # 50 attempts in all
    assert FITS <= n <= (PICO - SPENT) // ACTUAL  # 14 fit at once; settling frees a little
    live, committed = values(guard)
    assert live == committed == SPENT + n * ACTUAL <= PICO
