"""SharedState's budget counters: what each admit and settle writes, and what it costs.

The embedded default state (SQLite in COSTLINE_HOME) keeps, per budget key ``K``, the value
``K`` (committed + reserved), ``K:c`` (committed), and each live process's hold on ``K`` (its
reservations in flight), so a process that dies can be reaped: its holds are given back. These
tests replay random admits and settles against a plain model of those rules (the counters,
expiry and holds after every step), check the hold invariant through a crash and a reap (in
one process, and with real processes, one SIGKILLed mid-run, spending to their hard limits),
and count the SQL statements one admit and one settle take.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_controls_support import python

from core.state import BudgetItem, RateItem, SharedState
from core.state import shared as shared_mod

PREFIX = "t:"


class Model:
    """The counter rules of core/state/shared.py, one key at a time (the reference)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[int, float | None]] = {}  # key -> (value, expires)
        self.holds: dict[str, int] = {}  # key -> this owner's hold
        self.held: set[str] = set()

    def value(self, k: str, t: float) -> int:
        v, e = self.rows.get(k, (0, None))
        return 0 if e is not None and e <= t else v

    def put(self, k: str, delta: int, ttl: float | None, t: float) -> int:
        v = self.value(k, t) + delta
        e = t + ttl if ttl is not None and ttl > 0 else self.rows.get(k, (0, None))[1]
        self.rows[k] = (v, e)
        return v

    def admit(self, items: list[BudgetItem], t: float) -> tuple[bool, list[int]]:
        values = [self.value(b.key, t) for b in items]
        for b, v in zip(items, values, strict=True):
            if b.limit is not None and b.limit != -1 and v + b.amount > b.limit:
                return False, values
        for b in items:
            self.put(b.key, b.amount, b.ttl_s, t)
            if b.amount:
                self.holds[b.key] = self.holds.get(b.key, 0) + b.amount
                self.held.add(b.key)
        return True, values

    def apply(self, deltas: list[tuple[str, int, float | None]], t: float) -> list[int]:
        out = []
        for key, delta, ttl in deltas:
            out.append(self.put(key, delta, ttl, t))
            if not delta:
                continue
            base, sign = (key[:-2], -1) if key.endswith(":c") else (key, 1)
            if base in self.held:
                self.holds[base] = self.holds.get(base, 0) + sign * delta
        self.holds = {k: v for k, v in self.holds.items() if v}
        return out


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """SharedState's expiry clock, moved by hand."""
    t = [1_700_000_000.0]
    monkeypatch.setattr(shared_mod, "now", lambda: t[0])
    yield t


def table(st: SharedState) -> dict[str, tuple[int, float | None]]:
    rows = st._con.execute("SELECT key, value, expires FROM counter").fetchall()
    return {k[len(PREFIX) + 2 :]: (v, e) for k, v, e in rows}


def holds(st: SharedState, owner: str | None = None, zeros: bool = False) -> dict[str, int]:
    """An owner's holds (a row at 0, left until a settle deletes it, holds nothing)."""
    rows = st._con.execute(
        "SELECT key, amount FROM hold WHERE owner = ?", (owner or st.owner,)
    ).fetchall()
    return {k[len(PREFIX) + 2 :]: a for k, a in rows if a or zeros}


@pytest.mark.parametrize("seed", range(6))
def test_random_admits_and_settles_follow_the_counter_rules(
    tmp_path: Path, clock: list[float], seed: int
) -> None:
    """Counters (value and expiry), holds and returned values after every step equal the
    model's: expired keys restart from 0, a key twice in one settle moves twice, a key
    settled without this process's reservation has no hold."""
    rnd = random.Random(seed)
    st, m = SharedState(tmp_path, PREFIX), Model()
    keys = [f"k{i}" for i in range(5)]
    try:
        for _ in range(300):
            clock[0] += rnd.choice((0.0, 0.5, 3.0))
            if rnd.random() < 0.5:
                chosen = rnd.sample(keys, rnd.randint(1, 4))
                items = [
                    BudgetItem(
                        k,
                        rnd.choice((None, -1, 50, 400, 10**18)),
                        rnd.choice((0, 5, 40)),
                        rnd.choice((None, 2.0, 60.0)),
                    )
                    for k in chosen
                ]
                ok, values = m.admit(items, clock[0])
                adm = st.admit([], items)
                assert (adm.ok, adm.budget_values) == (ok, values)
            else:
                deltas = [
                    (k + rnd.choice(("", ":c")), rnd.randint(-40, 40), rnd.choice((None, 60.0)))
                    for k in rnd.choices(keys, k=rnd.randint(1, 8))  # repeats included
                ]
                assert st.apply_deltas(deltas) == m.apply(deltas, clock[0])
            assert table(st) == m.rows
            assert holds(st) == {k: v for k, v in m.holds.items() if v}
            assert st.get_values(keys) == [m.value(k, clock[0]) for k in keys]
    finally:
        st.close()


def test_holds_follow_reservations_through_settles_and_a_crash(tmp_path: Path) -> None:
    """Two processes (two owners) reserve and settle on one home; at every step each key's
    value is its committed value plus every owner's hold. One dies (its lease released
    without closing, as a SIGKILL leaves it): the reap gives back exactly its holds."""
    rnd = random.Random(7)
    a, b = SharedState(tmp_path, PREFIX), SharedState(tmp_path, PREFIX)
    keys = [f"w{i}" for i in range(3)]
    open_calls: list[tuple[SharedState, list[BudgetItem]]] = []
    try:
        for _ in range(200):
            if open_calls and rnd.random() < 0.45:
                st, items = open_calls.pop(rnd.randrange(len(open_calls)))
                deltas: list[tuple[str, int, float | None]] = []
                for it in items:  # as the budget guard settles: K by actual - reserved, K:c
                    actual = rnd.choice((0, it.amount // 2, it.amount, it.amount + 3))
                    deltas += [(it.key, actual - it.amount, 3600.0)]
                    deltas += [(it.key + ":c", actual, 3600.0)] if actual else []
                st.apply_deltas(deltas)
            else:
                st = rnd.choice((a, b))
                items = [
                    BudgetItem(k, 10**9, rnd.randint(1, 50), 3600.0)
                    for k in rnd.sample(keys, rnd.randint(1, 3))
                ]
                assert st.admit([], items).ok
                open_calls.append((st, items))
            both = {k: holds(a).get(k, 0) + holds(b, b.owner).get(k, 0) for k in keys}
            values = a.get_values(keys)
            committed = a.get_values([k + ":c" for k in keys])
            assert values == [c + both[k] for k, c in zip(keys, committed, strict=True)]
        b_open = sum(it.amount for st, items in open_calls if st is b for it in items)
        assert b_open > 0 and sum(holds(b, b.owner).values()) == b_open
        os.close(b._lease)  # b "dies": its lease is free, its holds are still in the table
        assert a.reap() == 1
        mine = holds(a)
        assert a.get_values(keys) == [
            c + mine.get(k, 0)
            for k, c in zip(keys, a.get_values([k + ":c" for k in keys]), strict=True)
        ]
        assert holds(a, b.owner) == {}
    finally:
        a.close()
        b._pid = -1  # already "dead": close() must not touch its rows
        b.close()


def traced(st: SharedState) -> list[str]:
    """The first word of each SQL statement SharedState's connection runs from now on."""
    done: list[str] = []
    st._con.set_trace_callback(lambda sql: done.append(sql.split()[0]))
    return done


def test_an_admit_and_its_settle_take_one_transaction_of_few_statements_each(
    tmp_path: Path,
) -> None:
    """A call with every control on: 2 rate items (in memory) and 4 budget lines, then a
    settle of 8 deltas (each line's value and committed value). Each step is one
    transaction of a read and two writes (and a settle's delete of the holds it brought to 0),
    whatever the number of lines: 14 and 27 statements before (a read, a write and a hold
    per key)."""
    st = SharedState(tmp_path, PREFIX)
    rates = [
        RateItem("u", "token_bucket", 10**9, 60.0),
        RateItem("o", "sliding_window", 10**9, 60.0),
    ]
    keys = [f"b{i}" for i in range(4)]
    items = [BudgetItem(k, 10**18, 3_000, 3600.0) for k in keys]
    settle: list[tuple[str, int, float | None]] = []
    for k in keys:
        settle += [(k, -1_000, 3600.0), (k + ":c", 2_000, 3600.0)]
    try:
        st.admit(rates, items)
        st.apply_deltas(settle)  # warm: the reap at start, the statement cache
        done = traced(st)
        assert st.admit(rates, items).ok
        admit, done[:] = list(done), []
        st.apply_deltas(settle)
        st._con.set_trace_callback(None)
        assert admit == ["BEGIN", "SELECT", "INSERT", "INSERT", "COMMIT"]  # counters, holds
        assert done == ["BEGIN", "SELECT", "INSERT", "INSERT", "DELETE", "COMMIT"]  # holds at 0
        assert holds(st, zeros=True) == {}  # the settle gave back the whole reservation
        assert st.get_values(keys) == [4_000] * 4
    finally:
        st.close()


HAMMER = """
import random, sys, time
from pathlib import Path
from core.state import BudgetItem, SharedState
home, seed, stop = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
rnd, st = random.Random(seed), SharedState(home, "t:")
keys, limit, go = ["h0", "h1", "h2"], int(sys.argv[4]), Path(sys.argv[5])
open_calls, n = [], 0
print("ready", flush=True)
while sys.argv[5] != "-" and not go.exists():  # "-": at once
    time.sleep(0.005)
while not stop.exists():
    if len(open_calls) > 1 and (len(open_calls) > 4 or rnd.random() < 0.5):  # keeps one
        items = open_calls.pop(rnd.randrange(len(open_calls)))
        deltas = []
        for it in items:
            actual = it.amount if rnd.random() < 0.7 else rnd.randint(0, it.amount)  # never above
            deltas.append((it.key, actual - it.amount, 3600.0))
            if actual:
                deltas.append((it.key + ":c", actual, 3600.0))
        st.apply_deltas(deltas)
    else:
        chosen = rnd.sample(keys, rnd.randint(1, 3))
        items = [BudgetItem(k, limit, rnd.randint(1, 500), 3600.0) for k in chosen]
        if st.admit([], items).ok:
            open_calls.append(items)
            n += 1
            if n == 1:
                print("holding", flush=True)  # one reservation open from here on
for items in open_calls:  # a graceful stop: release what is still reserved
    st.apply_deltas([(it.key, -it.amount, 3600.0) for it in items])
st.close()
print("done", n, flush=True)
"""


def test_processes_killed_mid_run_leave_no_reservation_and_no_overshoot(tmp_path: Path) -> None:
    """Three processes reserve and settle on the same keys (one hard limit each) as fast as
    they can, each keeping at least one reservation open; one is SIGKILLed mid-run, possibly
    mid-transaction. After the others ran on to the limits and stopped, and a reap, every
    key's value is its committed value (no reservation leaked or given back twice) and no
    committed value passed the limit."""
    limit = 150_000
    stop, go = tmp_path / "stop", tmp_path / "go"
    home = tmp_path / "home"
    # The one to be killed starts at once; the others when it holds a reservation. When all
    # three started together, the two others once filled every limit before the third had
    # admitted anything: it never printed "holding" and the test waited on it for ever.
    kids = [
        python(HAMMER, str(home), str(i), str(stop), str(limit), "-" if i == 0 else str(go))
        for i in range(3)
    ]
    try:
        for k in kids:
            assert k.stdout is not None and k.stdout.readline().strip() == "ready"
        assert kids[0].stdout is not None and kids[0].stdout.readline().strip() == "holding"
        go.touch()
        time.sleep(0.3)
        kids[0].send_signal(signal.SIGKILL)  # holding at least one reservation
        kids[0].wait(10)
        time.sleep(1.5)  # the others run on, to the limits
        stop.touch()
        admitted = 0
        for k in kids[1:]:
            assert k.stdout is not None
            lines = k.stdout.read().split("\n")  # "holding" if it admitted, then "done n"
            words = [ln for ln in lines if ln.startswith("done")][0].split()
            admitted += int(words[1])
            assert k.wait(30) == 0
        assert admitted > 0  # the others did run on
    finally:
        for k in kids:
            if k.poll() is None:
                k.kill()
            k.wait(10)
    st = SharedState(home, PREFIX)
    try:
        st.reap()  # the killed one's holds (the graceful ones gave theirs back)
        keys = ["h0", "h1", "h2"]
        committed = st.get_values([k + ":c" for k in keys])
        assert st.get_values(keys) == committed
        assert all(0 < c <= limit for c in committed), committed
        assert st.held() == {}
    finally:
        st.close()
