"""Budget counters shared by every process on one machine: SQLite (WAL) in COSTLINE_HOME.

The embedded default when ``REDIS_URL`` is unset. Several router processes sharing one
``COSTLINE_HOME`` (web workers, batch jobs, a restarted process) check and reserve budget in
one ``BEGIN IMMEDIATE`` transaction each, so together they enforce one budget, and the counters
survive restarts. Rate-limit buckets, circuit breakers and the response cache stay in process
memory (``self.local``): they protect the process, not the money.

Layout of ``$COSTLINE_HOME/state/budgets.db``::

    counter(key, value, expires)   the same values as MemoryState's budget keys
                                   (``K`` = committed + reserved, ``K:c`` = committed)
    hold(owner, key, amount)       each live process's share of ``K - K:c`` (its reservations)
    meta(name, value)              'epoch': set once the counters were rebuilt from the log

Per call: an admit is one ``BEGIN IMMEDIATE`` transaction of three statements whatever the
number of budget lines (a SELECT of every key, an INSERT .. ON CONFLICT adding every amount, one
adding this process's holds); a settle is one of four (the same, and a DELETE of the holds it
brought to 0). The check, the reservation and the hold commit together or not at all.

Crash safety: every process holds an exclusive ``flock`` on ``state/owners/<owner>.lock``
for its lifetime. A process that dies (SIGKILL included) releases it; the next process to
``reap()`` (at start and every ``reap_interval_s``) finds the lock free and gives the dead
owner's reservations back, so they never leak. SQLite's WAL keeps the file consistent when a
writer is killed mid-transaction.

Durability: WAL with ``synchronous = NORMAL``: a commit is written to the WAL but not fsynced
(checkpoints are). A killed process loses nothing it committed (the kernel holds the write). A
power cut or kernel crash may lose the last transactions before the WAL's last sync, never
part of one (WAL frames are checksummed), so counters and holds stay in step: the machine's
router processes died with it, the next start reaps their holds, and the counters, a cache of
the usage log, are rebuilt from the log before the first call (``Reconciler.rebuild``:
committed spend raised to what the log holds). ``synchronous = FULL`` would add an fsync to
every admit and settle for a guarantee the log already gives.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.private import create_private, private_dir, private_open
from core.state.base import (
    COUNTER_MAX,
    DEFAULT_PREFIX,
    Admission,
    Bounds,
    BreakerState,
    ConditionalAdmit,
    Delta,
    RateFix,
    RateItem,
    Reason,
    Reservation,
    Settlement,
    condition_holds,
)
from core.state.memory import MAX_NAMES, MemoryState

DB_NAME = "budgets.db"
BUSY_TIMEOUT_MS = 30_000
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counter"
    " (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS hold (owner TEXT NOT NULL, key TEXT NOT NULL,"
    " amount INTEGER NOT NULL, PRIMARY KEY (owner, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_GET = "SELECT value, expires FROM counter WHERE key = ?"
_GET_ROW = "SELECT key, value, expires FROM counter WHERE key = ?"
_PUT = (
    "INSERT INTO counter (key, value, expires) VALUES (?, ?, ?) ON CONFLICT (key)"
    " DO UPDATE SET value = excluded.value, expires = coalesce(excluded.expires, expires)"
)


def state_dir(home: Path) -> Path:
    return home / "state"


class SharedState(ConditionalAdmit):
    """Budget counters in SQLite, shared by the processes of one ``home``; the rest in memory.

    Thread-safe and fork-safe (a forked child opens its own connection and owner lock)."""

    def __init__(
        self,
        home: Path,
        prefix: str = DEFAULT_PREFIX,
        *,
        reap_interval_s: float = 5.0,
        local: MemoryState | None = None,
    ) -> None:
        self.home = home
        self.prefix = prefix
        self.dir = state_dir(home)
        self.path = self.dir / DB_NAME
        self.reap_interval_s = reap_interval_s
        self.local = local if local is not None else MemoryState(prefix)
        self.epoch: str | None = None
        self._names: dict[str, str] = {}  # budget key -> its name in the counter table
        self._lock = threading.Lock()
        self._open()

    # -- connection, owner, reaping ---------------------------------------------------------
    def _open(self) -> None:
        self._pid = os.getpid()
        private_dir(self.dir)  # 0700 (an older 0755 one is tightened), as all of COSTLINE_HOME
        owners = private_dir(self.dir / "owners")
        create_private(self.path)  # 0600 before SQLite makes it; never opened here (locks)
        self.owner = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._lease_path = owners / f"{self.owner}.lock"
        self._lease = private_open(self._lease_path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self._lease, fcntl.LOCK_EX)  # held until this process exits
        con = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")  # WAL: safe against a killed process
        with self._tx(con):
            for sql in SCHEMA:
                con.execute(sql)
        self._con = con
        self._cur = con.cursor()  # the hot path's statements (no cursor made per statement)
        self._held: set[str] = set()  # budget keys this process has reserved on
        self._next_reap = 0.0
        self.reap()

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # a forked child: its own connection and lease
            with contextlib.suppress(OSError):
                os.close(self._lease)
            self._open()

    @contextlib.contextmanager
    def _tx(self, con: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken up front)."""
        c = con or self._con
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def reap(self) -> int:
        """Give back the reservations of processes that died; return how many owners."""
        self._next_reap = time.monotonic() + self.reap_interval_s
        with self._lock:
            owners = [r[0] for r in self._con.execute("SELECT DISTINCT owner FROM hold")]
        dead = [o for o in owners if o != self.owner and not self._alive(o)]
        if not dead:
            return 0
        with self._lock, self._tx() as con:
            for owner in dead:
                rows = con.execute(
                    "SELECT key, amount FROM hold WHERE owner = ?", (owner,)
                ).fetchall()
                for key, amount in rows:
                    con.execute("UPDATE counter SET value = value - ? WHERE key = ?", (amount, key))
                con.execute("DELETE FROM hold WHERE owner = ?", (owner,))
            con.execute("DELETE FROM counter WHERE expires IS NOT NULL AND expires < ?", (now(),))
        for owner in dead:
            with contextlib.suppress(OSError):
                (self.dir / "owners" / f"{owner}.lock").unlink()
        return len(dead)

    def _alive(self, owner: str) -> bool:
        """Its lease is locked (flock: works across PID namespaces on one kernel)."""
        try:
            fd = os.open(self.dir / "owners" / f"{owner}.lock", os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
        finally:
            os.close(fd)
        return False

    def _maybe_reap(self) -> None:
        self._check_fork()
        if time.monotonic() >= self._next_reap:
            self.reap()

    # -- budgets ------------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        full = self._names.get(key)
        if full is None:
            full = self.local._name("b", key)
            if len(self._names) >= MAX_NAMES:
                self._names.clear()
            self._names[key] = full
        return full

    @staticmethod
    def _value(con: sqlite3.Connection, k: str, t: float) -> int:
        row = con.execute(_GET, (k,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= t):
            return 0
        return int(row[0])

    @staticmethod
    def _rows(
        con: sqlite3.Connection | sqlite3.Cursor, keys: list[str]
    ) -> dict[str, tuple[int, float | None]]:
        """(value, expires) of each of ``keys`` that has a row, in one statement."""
        if len(keys) <= MAX_ROWS:
            return {k: (v, e) for k, v, e in con.execute(_get_many(len(keys)), keys)}
        return {
            k: (v, e)
            for part in _chunks(keys, 1)
            for k, v, e in con.execute(_get_many(len(part)), part)
        }

    @classmethod
    def _values(
        cls, con: sqlite3.Connection | sqlite3.Cursor, keys: list[str], t: float
    ) -> list[int]:
        """Each key's value, 0 when absent or expired."""
        rows = cls._rows(con, keys)
        return [
            0 if r is None or (r[1] is not None and r[1] <= t) else r[0]
            for r in map(rows.get, keys)
        ]

    def admit(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
        over: Bounds | None = None,
        under: Bounds = (),
    ) -> Admission:
        self._maybe_reap()
        if not rates:
            return self._admit_budgets(budgets, over, under)
        local = self.local
        t = time.time() if now is None else now
        with local._lock:  # rates are checked, then budgets, then the rates are taken
            mono = time.monotonic()
            plans = []
            for i, r in enumerate(rates):
                retry, plan = local._check_rate(r, t, mono)
                if plan is None:
                    values = self.get_values([b.key for b in budgets]) if budgets else []
                    return Admission(False, "rate", i, retry, values)
                plans.append(plan)
            adm = self._admit_budgets(budgets, over, under)
            if adm.ok:
                adm.charges = local._commit_rates(rates, plans, t, mono)
            return adm

    def _admit_budgets(
        self, budgets: Sequence[Reservation], over: Bounds | None = None, under: Bounds = ()
    ) -> Admission:
        """Read every key, check, then add every amount and this process's holds: one
        transaction of three statements between BEGIN IMMEDIATE and COMMIT (a SELECT of every
        key, an INSERT .. ON CONFLICT adding to every counter, one adding to the holds),
        whatever the number of budgets; a refusal writes nothing."""
        if not budgets:
            return Admission(True)
        names, name = self._names, self._name
        keys = [names.get(b.key) or name(b.key) for b in budgets]
        t = now()
        con = self._cur
        with self._lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                values = self._values(con, keys, t)
                refused = _refusal(budgets, values, over, under)
                if refused is None:
                    rows: list[Any] = []
                    holds: list[Any] = []
                    for k, b in zip(keys, budgets, strict=True):
                        rows += (k, b.amount, _expires(b.ttl_s, t))
                        if b.amount:
                            holds += (k, b.amount)
                    for part in _chunks(rows, 3):
                        con.execute(_add(len(part) // 3), [t, *part])
                    for part in _chunks(holds, 2):
                        con.execute(_hold(len(part) // 2), [self.owner, *part])
                    self._held.update(holds[::2])
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")  # a refusal wrote nothing
        if refused is not None:
            return Admission(False, refused[0], refused[1], None, values)
        return Admission(True, None, None, None, values)

    def settle(self, items: Sequence[Settlement]) -> list[int]:
        return self.apply_deltas([(s.key, s.actual - s.reserved, s.ttl_s) for s in items])

    def apply_deltas(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix] = (), at: float | None = None
    ) -> list[int]:
        """value += delta per key, in one transaction; the new values. This process's hold on
        ``K`` follows ``K - K:c`` (a settle moves its reservation into committed spend).
        ``fixes`` correct rate charges to the tokens used, in process memory (where the
        rate buckets live: ``MemoryState.fix_rates``).

        One statement reads every key, one adds every delta, one moves the holds by their net
        change and one deletes those at 0. The new values are worked out from the ones read,
        key by key as the add statement goes (SQLite's ``RETURNING`` cost more than the read).
        """
        self._check_fork()
        if fixes:
            self.local.fix_rates(fixes, at)  # ``at``: the rates' time (None: now)
        if not deltas:
            return []
        names, name = self._names, self._name
        keys = [names.get(d[0]) or name(d[0]) for d in deltas]
        t = now()
        rows: list[Any] = []
        net: dict[str, int] = {}
        held = self._held
        for k, (raw, delta, ttl) in zip(keys, deltas, strict=True):
            rows += (k, delta, _expires(ttl, t))
            if delta:
                if raw.endswith(":c"):
                    base = names.get(raw[:-2]) or name(raw[:-2])
                    if base in held:
                        net[base] = net.get(base, 0) - delta
                elif k in held:
                    net[k] = net.get(k, 0) + delta
        holds: list[Any] = []
        for k, d in net.items():
            if d:
                holds += (k, d)
        con = self._cur
        with self._lock:
            con.execute("BEGIN IMMEDIATE")
            try:
                rows_now = self._rows(con, keys)
                out: list[int] = []
                for i, k in enumerate(keys):  # each key in turn, as the add statement goes
                    v, e = rows_now.get(k, (0, None))
                    v = min(COUNTER_MAX, (0 if e is not None and e <= t else v) + rows[3 * i + 1])
                    e = rows[3 * i + 2] if rows[3 * i + 2] is not None else e
                    rows_now[k] = (v, e)
                    out.append(v)
                for part in _chunks(rows, 3):
                    con.execute(_add(len(part) // 3), [t, *part])
                for part in _chunks(holds, 2):
                    con.execute(_hold(len(part) // 2), [self.owner, *part])
                if holds:
                    con.execute("DELETE FROM hold WHERE owner = ? AND amount = 0", (self.owner,))
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        return out

    def get_values(self, keys: Sequence[str]) -> list[int]:
        self._check_fork()
        name, t = self._name, now()
        with self._lock:
            return self._values(self._con, [name(k) for k in keys], t)

    def add(self, key: str, amount: int, ttl_s: float | None = None) -> int:
        self._check_fork()
        k, t = self._name(key), now()
        with self._lock, self._tx() as con:
            value = min(COUNTER_MAX, self._value(con, k, t) + amount)
            con.execute(_PUT, (k, value, _expires(ttl_s, t)))
        return value

    def raise_committed(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        """For each (budget key K, floor, ttl): raise committed ``K:c`` to at least ``floor``
        and ``K`` by as much (atomic); also lift ``K`` to ``K:c`` if below. What was added."""
        self._check_fork()
        t = now()
        out: list[int] = []
        with self._lock, self._tx() as con:
            for key, floor, ttl in items:
                k, kc = self._name(key), self._name(key + ":c")
                committed, total = self._value(con, kc, t), self._value(con, k, t)
                diff = max(0, min(floor, COUNTER_MAX) - committed)
                top = min(COUNTER_MAX, max(total + diff, committed + diff))
                con.execute(_PUT, (kc, committed + diff, _expires(ttl, t)))
                con.execute(_PUT, (k, top, _expires(ttl, t)))
                out.append(diff)
        return out

    def true_up(self, keys: Sequence[str]) -> list[int]:
        """Set each budget key ``K`` to ``K:c`` + the live owners' holds on it (the exact
        value); return the drift corrected per key (new - old)."""
        self._check_fork()
        t = now()
        out: list[int] = []
        with self._lock, self._tx() as con:
            for key in keys:
                k, kc = self._name(key), self._name(key + ":c")
                row = con.execute("SELECT sum(amount) FROM hold WHERE key = ?", (k,)).fetchone()
                want = min(COUNTER_MAX, self._value(con, kc, t) + int(row[0] or 0))
                have = self._value(con, k, t)
                if want != have:
                    con.execute("UPDATE counter SET value = ? WHERE key = ?", (want, k))
                out.append(want - have)
        return out

    def held(self) -> dict[str, int]:
        """Reservations in flight per budget key, over every live owner (for reconciling)."""
        with self._lock:
            rows = self._con.execute("SELECT key, sum(amount) FROM hold GROUP BY key").fetchall()
        return {str(k): int(v) for k, v in rows}

    def meta(self, name: str) -> str | None:
        with self._lock:
            row = self._con.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self._lock, self._tx() as con:
            con.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # -- in-process parts -------------------------------------------------------------------
    def breaker_allow(self, key: str, now: float | None = None) -> BreakerState:
        return self.local.breaker_allow(key, now)

    def breaker_allow_many(
        self, keys: Sequence[str], now: float | None = None
    ) -> list[BreakerState]:
        return self.local.breaker_allow_many(keys, now)

    def breaker_record(
        self,
        key: str,
        success: bool,
        threshold: int,
        cooldown_s: float,
        now: float | None = None,
    ) -> BreakerState:
        return self.local.breaker_record(key, success, threshold, cooldown_s, now)

    def cache_get(self, key: str) -> bytes | None:
        return self.local.cache_get(key)

    def cache_get_counted(self, key: str, hit: str, miss: str) -> bytes | None:
        return self.local.cache_get_counted(key, hit, miss)

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.local.cache_set(key, value, ttl_s)

    def cache_set_counted(self, key: str, value: bytes, ttl_s: float, counter: str) -> None:
        self.local.cache_set_counted(key, value, ttl_s, counter)

    def cache_delete(self, key: str) -> None:
        self.local.cache_delete(key)

    def incr(self, key: str, n: int = 1) -> int:
        return self.local.incr(key, n)

    def counters(self, prefix: str = "") -> dict[str, int]:
        return self.local.counters(prefix)

    def close(self) -> None:
        """Give back this process's reservations and release the lease."""
        if os.getpid() != self._pid:
            return
        with contextlib.suppress(sqlite3.Error), self._lock, self._tx() as con:
            rows: list[Any] = con.execute(
                "SELECT key, amount FROM hold WHERE owner = ?", (self.owner,)
            ).fetchall()
            for key, amount in rows:
                con.execute("UPDATE counter SET value = value - ? WHERE key = ?", (amount, key))
            con.execute("DELETE FROM hold WHERE owner = ?", (self.owner,))
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
        with contextlib.suppress(OSError):
            self._lease_path.unlink()
            os.close(self._lease)


def now() -> float:
    """Wall-clock seconds for key expiry (shared by processes, like Redis's own clock)."""
    return time.time()


def _expires(ttl_s: float | None, t: float) -> float | None:
    return t + ttl_s if ttl_s is not None and ttl_s > 0 else None


MAX_ROWS = 200  # rows per multi-row statement (3 parameters each, far below SQLite's limit)


def _chunks(flat: list[Any], width: int, rows: int = MAX_ROWS) -> list[list[Any]]:
    """``flat`` (rows of ``width`` values, one after another) in parts of ``rows`` rows."""
    step = width * rows
    if len(flat) <= step:
        return [flat] if flat else []
    return [flat[i : i + step] for i in range(0, len(flat), step)]


@functools.cache
def _get_many(n: int) -> str:
    """n keys' rows: one primary-key lookup each (``key IN (...)`` builds a temporary
    index of the list first, which cost more than the lookups)."""
    return " UNION ALL ".join([_GET_ROW] * n)


@functools.cache
def _add(n: int) -> str:
    """``value += delta`` for n (key, delta, expires) rows, ``?1`` the time: a value whose
    ``expires`` has passed restarts from 0 (what ``_value`` reads for it); a row without a
    new ``expires`` keeps its own. A sum past ``COUNTER_MAX`` stops there (SQLite would turn
    it into a REAL, rounded, silently)."""
    rows = ", ".join(f"(?{3 * i + 2}, ?{3 * i + 3}, ?{3 * i + 4})" for i in range(n))
    return (
        f"INSERT INTO counter (key, value, expires) VALUES {rows} ON CONFLICT (key) DO UPDATE"
        " SET value = CASE WHEN expires IS NOT NULL AND expires <= ?1 THEN excluded.value"
        f" WHEN excluded.value > 0 AND value > {COUNTER_MAX} - excluded.value THEN {COUNTER_MAX}"
        " ELSE value + excluded.value END, expires = coalesce(excluded.expires, expires)"
    )


@functools.cache
def _hold(n: int) -> str:
    """``amount += delta`` for n (key, delta) rows of owner ``?1``."""
    rows = ", ".join(f"(?1, ?{2 * i + 2}, ?{2 * i + 3})" for i in range(n))
    return (
        f"INSERT INTO hold (owner, key, amount) VALUES {rows}"
        " ON CONFLICT (owner, key) DO UPDATE SET amount = amount + excluded.amount"
    )


def _refusal(
    budgets: Sequence[Reservation], values: Sequence[int], over: Bounds | None, under: Bounds
) -> tuple[Reason, int | None] | None:
    """Why ``admit`` refuses at these values (reason, failed index), or None."""
    if over is not None and not condition_holds(values, over, under):
        return "condition", None
    for i, b in enumerate(budgets):
        limit = b.limit
        if limit is not None and limit != -1 and values[i] + b.amount > limit:
            return "budget", i
    return None
