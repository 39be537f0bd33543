"""Concurrent reservations never overshoot a hard limit: threads, and two processes on Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.state import BudgetItem, RateItem, RedisState, State
from tests.child_death import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
LIMIT, SPENT, AMOUNT = 1000, 900, 7
EXPECTED = (LIMIT - SPENT) // AMOUNT  # 14 reservations fit in the last 100


def hammer(n_threads: int, admit: Callable[[], bool]) -> list[bool]:
    start = threading.Barrier(n_threads)
    results: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        start.wait()
        ok = admit()
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_fifty_threads_never_overshoot_the_hard_limit(state: State) -> None:
    state.add("month", SPENT, 3600)
    item = BudgetItem("month", LIMIT, AMOUNT, 3600)
    results = hammer(50, lambda: state.admit([], [item]).ok)
    assert results.count(True) == EXPECTED
    assert state.get_values(["month"]) == [SPENT + EXPECTED * AMOUNT]
    assert state.get_values(["month"])[0] <= LIMIT


def test_fifty_threads_share_one_bucket(state: State) -> None:
    rate = RateItem("rpm", "token_bucket", 20, 60.0)
    budget = BudgetItem("rpm-spend", None, 1)
    results = hammer(50, lambda: state.admit([rate], [budget], now=1e9).ok)
    assert results.count(True) == 20
    assert state.get_values(["rpm-spend"]) == [20]


CHILD = r"""
import sys, threading, time
from core.state import BudgetItem, RedisState
url, prefix, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
st = RedisState(url, prefix, socket_timeout=5.0)
st.ping()
item = BudgetItem("shared", int(sys.argv[4]), int(sys.argv[5]), 3600)
oks = []
def work():
    while time.monotonic() < start:
        time.sleep(0.001)
    for _ in range(5):
        oks.append(st.admit([], [item]).ok)
threads = [threading.Thread(target=work) for _ in range(5)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(oks))
"""


def test_two_processes_share_the_limit(redis_url: str) -> None:
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    st = RedisState(redis_url, prefix)
    st.add("shared", SPENT, 3600)
    # both children are up by then, then race; CLOCK_MONOTONIC is one clock for every
    # process here (a moved test clock, time-machine's, is this process's wall clock only)
    start = time.monotonic() + 2.0
    args = [redis_url, prefix, repr(start), str(LIMIT), str(AMOUNT)]
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
    counts = [int(o.strip()) for o in outs]
    assert sum(counts) == EXPECTED  # 50 attempts, 14 fit
    assert st.get_values(["shared"]) == [SPENT + EXPECTED * AMOUNT]
