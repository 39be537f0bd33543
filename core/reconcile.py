"""Budget counters as a cache of the usage log: rebuilt, reconciled, drift reported.

The usage log is the source of truth for spend; the live counters (``K`` = committed +
reserved, ``K:c`` = committed, per budget window and metric) are a fast cache of it.

- ``rebuild()`` (at router start, and when Redis answers after an outage or comes back
  empty): every current window's committed counter is raised to the log's spend. Raise-only
  and atomic per key (``raise_committed``), so it is idempotent and safe while other
  processes run. While Redis is away (at start, and at each round of an outage) the
  in-process counters the outage path enforces from are raised to this home's log instead
  (``ResilientState.raise_local``), so a router started during an outage does not start
  from $0 and other processes' logged spend counts before Redis is back.
- ``reconcile()`` (every ``interval_s``, a daemon thread): raises counters that are below the
  log (a lost Redis, a missed settle) and lowers counters that were above the log *at the
  previous round* (a settle applied twice during a Redis stall): every event settled before
  that round is in the log now, so such an excess is real drift, not lag. Each correction is
  a WARNING log line and counts in ``budget_drift_corrections`` and the money corrected in
  ``budget_drift_usd`` (whole dollars) + ``budget_drift_picousd`` (the rest), read exactly by
  ``drift_picousd`` (``State.counters``; one int64 counter would overflow). With
  ``SharedState`` the reserved part is set exactly from the live processes' holds
  (``true_up``).

Raising counts the fleet: with Redis, every ``targets()`` publishes this home's share (what
only it can read: with a bucket its journals and outbox per segment name, without one its
whole log) in ``<prefix>s:<home id>`` and adds every other named home's share, each segment
once and none the listing already holds (``fleet_extra``), so a Redis that comes back empty
is rebuilt to the sum of the hosts' spend, not the largest host's view.

With a bucket, this home's outbox (segments waiting for the upload, in neither the journals
nor the bucket) counts too: a rebuild while the bucket is away starts from all of this
home's spend.

A counter is lowered only on a *complete* view of the log: every event that can have been
settled into it must be in what this reconciler read. Raising on a partial view is safe (the
log never holds more than was spent); lowering on one lets a fleet spend past a hard limit.
The view is complete when (1) no other ``COSTLINE_HOME`` shares the counters - each home
registers its id (``home_id``) in the Redis hash ``<prefix>homes`` before it settles into
Redis, and a second id there makes every reconciler of that Redis raise-only, as another
host's journal and outbox are on its own disk - and (2) with a bucket
(``COSTLINE_EVENTS_URL``), the bucket answered. Otherwise the excess is
kept (a budget refuses a little early, never late) and counted in ``budget_drift_kept``.

Of a home's processes (gateway workers, batch jobs), only the one holding the ``flock`` on
``state/reconcile.lock`` lowers (each would otherwise take the same excess off once more);
it holds it until it closes or dies, then the next round of another process takes it. Every
process raises.

Log spend = the journals' whole records (other processes' last seconds, read first), then the
Parquet segments and pruned rollups of one listing taken after (the Budgets page's sums, as
``core.reports`` computes them), a journal whose segment is in that listing left out.
With Redis, the epoch key ``<prefix>epoch`` names the counters a router trusts; ADMIT refuses
when it changed (Redis restarted empty or was flushed), which sends ``ResilientState`` to its
outage path until ``on_recover`` has rebuilt the counters and claimed an epoch.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core import clock
from core.control import Budget
from core.controls import Controls
from core.state import MemoryState, RedisState, ResilientState, SharedState
from core.types import PICO

log = logging.getLogger(__name__)
MIN_LAG_S = 1.0  # a lowering compares counters at least this old with the log
LEAD_LOCK = "reconcile.lock"  # in $COSTLINE_HOME/state/: held by the one process that lowers
# the drift metric's money in two int64 state counters (Redis HINCRBY fails past 2**63): whole
# dollars, and the picodollars below (carried into the dollars once they reach $1)
DRIFT_USD = "budget_drift_usd"
DRIFT_PICOUSD = "budget_drift_picousd"


def count_drift(state: Any, picousd: int) -> None:
    """Add ``picousd`` to the drift metric. One round may correct more than 2**63 pUSD and
    the total only grows: a single picodollar counter overflowed (HINCRBY refused, and the
    metric silently stopped counting). Each step keeps ``drift_picousd`` exact: a carry adds
    the dollars before it takes their picodollars off (two processes carrying at once leave
    the remainder negative for a moment, never the total wrong)."""
    whole, rest = divmod(picousd, PICO)
    if whole:
        state.incr(DRIFT_USD, whole)
    if rest:
        total = int(state.incr(DRIFT_PICOUSD, rest))
        if total >= PICO:  # also moves a large remainder counted before this split
            carry = total // PICO
            state.incr(DRIFT_USD, carry)
            state.incr(DRIFT_PICOUSD, -carry * PICO)


def drift_picousd(state: Any) -> int:
    """The drift metric's exact picodollars (``budget_drift_usd`` dollars plus
    ``budget_drift_picousd``)."""
    counts = state.counters("budget_drift_")
    return int(counts.get(DRIFT_USD, 0)) * PICO + int(counts.get(DRIFT_PICOUSD, 0))


@dataclass(frozen=True, slots=True)
class Target:
    """One counter and what the log says it should hold."""

    key: str  # K (the committed counter is K:c)
    budget: str
    window: str
    metric: str  # 'usd' | 'tokens'
    log_value: int
    ttl_s: float


@dataclass(frozen=True, slots=True)
class Drift:
    budget: str
    window: str
    metric: str
    counter: int
    log_value: int
    corrected: int  # added to the counter (negative: removed)


class Reconciler:
    """Keeps one Controls' budget counters in line with the usage log of ``home``."""

    def __init__(self, controls: Controls, home: Path, interval_s: float = 30.0) -> None:
        self.controls = controls
        self.home = home
        self.interval_s = interval_s
        self.drifts: list[Drift] = []  # corrections so far (bounded), newest last
        self.rounds = 0
        self._lock = threading.Lock()
        self._prev: dict[str, tuple[float, int]] = {}  # K -> (monotonic time, K:c then)
        self.complete = True  # whether the last targets() saw every event (module docstring)
        self._lead_fd: int | None = None  # the home's reconcile.lock, once this one lowers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Rebuild now (before the first call is admitted), hook Redis recovery, and start
        the periodic reconciliation."""
        state = self.controls.state
        if isinstance(state, ResilientState):
            state.on_recover = self._on_redis_recover
            try:
                self._on_redis_recover(state.primary)
            except Exception:  # Redis away: an outage starts from the log, not from $0
                with contextlib.suppress(Exception):
                    self._raise_local(state)
        else:
            if isinstance(state, RedisState):
                with contextlib.suppress(Exception):
                    register_home(state, self.home)
            self.rebuild()
        if self.interval_s > 0:
            self._thread = threading.Thread(
                target=self._loop, name="costline-reconcile", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self._lead_fd is not None:
                os.close(self._lead_fd)  # releases the flock: another process lowers now
                self._lead_fd = None

    def leads(self) -> bool:
        """Whether this reconciler is its home's one lowering reconciler (takes the lock
        when it is free; keeps it until ``close``)."""
        if self._lead_fd is not None:
            return True
        if self._stop.is_set():
            return False
        from core.private import private_dir

        path = private_dir(self.home / "state") / LEAD_LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lead_fd = fd
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.reconcile()
            except Exception:  # a bad round must not stop the next one
                log.exception("budget reconciliation failed")

    def _on_redis_recover(self, primary: RedisState) -> None:
        """Redis answers (start, after an outage, or it lost the epoch): this home is named
        among the counters' homes (before any settle of this process reaches Redis), the
        counters are rebuilt, then trusted."""
        register_home(primary, self.home)
        self.rebuild(primary)
        primary.claim_epoch(uuid.uuid4().hex)

    # -- the log's view ---------------------------------------------------------------------
    def targets(self, now: datetime | None = None, backend: Any = None) -> list[Target]:
        """Every active budget's current-window counters and the log's spend for them. With
        Redis, the fleet's: this home publishes its share (what only it can read) and every
        other home's published share is added (``fleet_extra``)."""
        ctl = self.controls
        snap = ctl.snapshot()
        budgets = [ctl.guard._budget(b) for b in ctl.active_budgets(snap)]
        budgets = [b for b in budgets if b.limit_picousd is not None or b.limit_tokens is not None]
        if not budgets:
            return []
        at = now or clock.now()
        canonical = ctl.guard.canonical or str  # as admission: an unpriced name is itself
        with self._lock:
            view = log_view(self.home, ctl.plane, budgets, at, canonical)
            self.complete = view.complete
        spent = view.total()
        out: list[Target] = []
        ts = at.timestamp()
        for b in budgets:
            win = ctl.guard.window(b, at)
            usd, tok = spent.get(b.id, (0, 0))
            ttl = win.ttl_at(ts)
            if b.limit_picousd is not None:
                out.append(Target(win.usd_key, b.id, win.label, "usd", usd, ttl))
            if b.limit_tokens is not None:
                out.append(Target(win.tokens_key, b.id, win.label, "tokens", tok, ttl))
        redis = _redis(backend if backend is not None else ctl.state)
        if redis is None:
            return out
        try:
            extra = fleet_extra(redis, self.home, view, out)
        except Exception as exc:
            if backend is not None:  # a rebuild before Redis is trusted again: not without it
                raise
            log.warning("budget counter shares unavailable (%s: %s)", type(exc).__name__, exc)
            self.complete = False
            return out
        return [replace(t, log_value=t.log_value + extra.get(t.key, 0)) for t in out]

    # -- corrections ------------------------------------------------------------------------
    def rebuild(self, backend: Any = None) -> list[Drift]:
        """Raise every current committed counter to the log's spend (raise-only)."""
        state = backend if backend is not None else self.controls.state
        found = self.targets(backend=backend)
        if not found:
            return []
        before = state.get_values([t.key + ":c" for t in found])
        added = raise_committed(state, [(t.key, t.log_value, t.ttl_s) for t in found])
        drifts = [
            Drift(t.budget, t.window, t.metric, c, t.log_value, a)
            for t, c, a in zip(found, before, added, strict=True)
            if a
        ]
        self._report(drifts, "rebuilt from the usage log", logging.INFO)
        return drifts

    def reconcile(self) -> list[Drift]:
        """One round: raise what is below the log, lower what was above it last round."""
        state: Any = self.controls.state
        self.rounds += 1
        if isinstance(state, ResilientState) and not state.healthy:
            return self._raise_local(state)  # the recovery path rebuilds when Redis is back
        found = self.targets()
        if not found:
            return []
        complete = self.complete
        mono = time.monotonic()
        keys = [t.key for t in found]
        now = state.get_values([k + ":c" for k in keys])
        added = raise_committed(state, [(t.key, t.log_value, t.ttl_s) for t in found])
        drifts: list[Drift] = []
        lower: list[tuple[str, int, float | None]] = []
        kept = 0
        for t, c, a in zip(found, now, added, strict=True):
            if a:
                drifts.append(Drift(t.budget, t.window, t.metric, c, t.log_value, a))
                continue
            prev = self._prev.get(t.key)
            if prev is not None and mono - prev[0] >= MIN_LAG_S and prev[1] > t.log_value:
                if complete:  # asked after the counters were read: a home that just joined
                    complete = not shared_with_other_homes(state, self.home) and (
                        isinstance(state, MemoryState) or self.leads()  # memory: this process's
                    )
                if not complete:  # unseen events may account for it, or another lowers it
                    kept += 1
                    continue
                excess = prev[1] - t.log_value  # settled before the last round, not in the log
                lower += [(t.key + ":c", -excess, t.ttl_s), (t.key, -excess, t.ttl_s)]
                drifts.append(Drift(t.budget, t.window, t.metric, c, t.log_value, -excess))
        if lower:
            state.apply_deltas(lower)
        if kept:
            with contextlib.suppress(Exception):  # the metric must not fail a round
                state.incr("budget_drift_kept", kept)
        if isinstance(state, SharedState):  # the reserved part, exactly: live processes' holds
            for t, d in zip(found, state.true_up(keys), strict=True):
                if d:
                    drifts.append(Drift(t.budget, t.window, t.metric + " reserved", 0, 0, d))
        after = state.get_values([k + ":c" for k in keys])
        self._prev = {k: (mono, v) for k, v in zip(keys, after, strict=True)}
        self._report(drifts, "reconciled with the usage log")
        return drifts

    def _raise_local(self, state: ResilientState) -> list[Drift]:
        """While Redis is away: the in-process counters the outage enforces from raised to
        this home's log (other processes' spend counts; raise-only, not counted as drift)."""
        found = self.targets(backend=state.fallback)  # this home's log alone: no Redis
        added = state.raise_local([(t.key, t.log_value, t.ttl_s) for t in found])
        drifts = [
            Drift(t.budget, t.window, t.metric, t.log_value - a, t.log_value, a)
            for t, a in zip(found, added, strict=True)
            if a
        ]
        if drifts:
            log.info(
                "Redis away: %d in-process budget counters raised to the usage log", len(drifts)
            )
        return drifts

    def _report(self, drifts: Sequence[Drift], what: str, level: int = logging.WARNING) -> None:
        """Drift found by a periodic round is a WARNING; a rebuild (expected after a restart
        or an empty Redis) is INFO. Both count in the metric."""
        if not drifts:
            return
        self.drifts = (self.drifts + list(drifts))[-1000:]
        money = 0
        for d in drifts:
            log.log(
                level,
                "budget counter drift: budget %s window %s %s: counter %d, log %d; %s (%+d)",
                d.budget,
                d.window,
                d.metric,
                d.counter,
                d.log_value,
                what,
                d.corrected,
            )
            if d.metric.startswith("usd"):
                money += abs(d.corrected)
        with contextlib.suppress(Exception):  # the metric must not fail a correction
            state = self.controls.state
            state.incr("budget_drift_corrections", len(drifts))
            if money:
                count_drift(state, money)


def raise_committed(state: Any, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
    """``state.raise_committed`` (Redis, SharedState, MemoryState), for any State."""
    if isinstance(state, MemoryState):
        return memory_raise(state, items)
    got: list[int] = state.raise_committed(items)
    return got


def memory_raise(state: MemoryState, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
    out: list[int] = []
    for key, floor, ttl in items:
        committed = state.get_values([key + ":c"])[0]
        diff = max(0, floor - committed)
        if diff:
            state.apply_deltas([(key + ":c", diff, ttl), (key, diff, ttl)])
        out.append(diff)
    return out


# -- who shares the counters -------------------------------------------------------------------
HOMES = "homes"  # <prefix>homes: home id -> when it last registered (epoch seconds)
HOME_ID = "home-id"  # in $COSTLINE_HOME/state/


def home_id(home: Path) -> str:
    """This COSTLINE_HOME's id: random, made once, kept in ``state/home-id`` (two processes
    of one home, or two hosts mounting one home, share it and read the same journals)."""
    from core.private import private_dir

    path = private_dir(home / "state") / HOME_ID
    with contextlib.suppress(FileNotFoundError):
        if got := path.read_text().strip():
            return got
    fresh = uuid.uuid4().hex
    tmp = path.with_name(f".{HOME_ID}.{fresh}")
    tmp.write_text(fresh + "\n")
    try:
        os.link(tmp, path)  # the first writer wins; a racing one reads the winner's id
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


def _redis(state: Any) -> RedisState | None:
    primary = state.primary if isinstance(state, ResilientState) else state
    return primary if isinstance(primary, RedisState) else None


def register_home(state: Any, home: Path) -> None:
    """Name ``home`` among the homes whose processes settle into these Redis counters."""
    redis = _redis(state)
    if redis is not None:
        redis.client.hset(redis.prefix + HOMES, home_id(home), int(clock.now().timestamp()))


def shared_with_other_homes(state: Any, home: Path) -> bool:
    """Whether another COSTLINE_HOME settles into these counters (True when unsure). Only
    Redis is shared beyond one home (SQLite's counters live in the home, memory's in the
    process); a home that left the fleet for good stays listed until removed by hand."""
    redis = _redis(state)
    if redis is None:
        return False
    try:
        register_home(redis, home)
        ids = redis.client.hkeys(redis.prefix + HOMES)
    except Exception:
        return True
    mine = home_id(home).encode()
    return any((i if isinstance(i, bytes) else str(i).encode()) != mine for i in ids)


SHARE_SEP = "\t"  # a share's field: "<segment name>\t<counter key>"


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def fleet_extra(
    redis: RedisState, home: Path, view: LogView, targets: Sequence[Target]
) -> dict[str, int]:
    """Publish this home's counter shares, then read the others': per counter key, the spend
    the other homes hold that this view lacks.

    A home's share is what only it can read (``LogView.unshipped``: with a bucket, its
    journals and outbox, per segment name; without, its whole log), per counter, in the hash
    ``<prefix>s:<home id>``, replaced whole in one script call with the home named in
    ``<prefix>homes``; it expires with the longest current window. Another home's segment
    counts once (two homes never hold the same name: names are unique per writing process),
    and not at all once this view's listing holds it (shipped meanwhile: counted there), so a
    segment both shipped and still in a stale share is never counted twice. A share is as
    old as its home's last round or rebuild: spend logged since is not in it."""
    me = home_id(home)
    mine = view.unshipped(me)
    fields: dict[str, int] = {}
    for name, sums in mine.items():
        for t in targets:
            usd, tok = sums.get(t.budget, (0, 0))
            value = usd if t.metric == "usd" else tok
            if value:
                fields[f"{name}{SHARE_SEP}{t.key}"] = value
    ttl = max((t.ttl_s for t in targets), default=None)
    homes_key = redis.prefix + HOMES
    redis.put_shares(me, fields, ttl, homes_key, int(clock.now().timestamp()))
    others = [h for h in map(_text, redis.client.hkeys(homes_key)) if h != me]
    seen: dict[str, dict[str, int]] = {}  # counter key -> segment name -> value
    for share in redis.shares(others).values():
        for field, value in share.items():
            name, _, key = field.partition(SHARE_SEP)
            if name in mine or view.snapshot.has(name):
                continue  # in this view already
            seen.setdefault(key, {}).setdefault(name, value)
    return {key: sum(by_name.values()) for key, by_name in seen.items()}


# -- the log's spend ----------------------------------------------------------------------------
def log_spend(
    home: Path, plane: Any, budgets: Sequence[Budget], at: datetime, canonical: Any
) -> dict[str, tuple[int, int]]:
    """Per budget id: (picodollars, tokens) the usage log holds for its current window (from
    its last reset): the journals not yet converted, then exactly the segments (and pruned
    rollups) of one listing taken after reading them, so no event counts twice and none
    settled before this call is missed."""
    return log_view(home, plane, budgets, at, canonical).total()


Sums = dict[str, tuple[int, int]]  # per budget id: (picodollars, tokens)


@dataclass(frozen=True, slots=True)
class LogView:
    """What one home reads of the usage log for the budgets' current windows."""

    listed: Sums  # the segments of one listing: with a bucket, the fleet's shipped log
    local: dict[str, Sums]  # per segment name: this home's journals and outbox not listed
    snapshot: Any  # that listing (``Snapshot.has``: is a segment's spend in ``listed``)
    bucket: bool  # the listing is the bucket's, which every home reads
    complete: bool  # every event of this home settled before the read is in the view

    def total(self) -> Sums:
        out = dict(self.listed)
        for sums in self.local.values():
            for bid, (usd, tok) in sums.items():
                have = out.get(bid, (0, 0))
                out[bid] = (have[0] + usd, have[1] + tok)
        return out

    def unshipped(self, home: str) -> dict[str, Sums]:
        """What only this home can read, per segment name: with a bucket, its journals and
        outbox; without one, its whole log (one entry, ``@<home id>``: no other home reads
        its segments)."""
        if self.bucket:
            return self.local
        return {"@" + home: self.total()}


def log_view(
    home: Path, plane: Any, budgets: Sequence[Budget], at: datetime, canonical: Any
) -> LogView:
    """``log_spend``'s parts, and whether they hold every event of this home settled before
    the call (not when the bucket did not answer: its listing may lack what it holds).

    With a bucket the order is: journals, then the outbox (each segment's sums), then the
    bucket's listing. A segment counts once: from the listing if it is there, else from
    the outbox; a journal counts only if neither holds its segment."""
    from core.reports import reset_times
    from core.usage import SUFFIX, mirror_for, scan, segments_dir

    resets = reset_times(plane, budgets)  # a reset budget counts from its last reset
    journals = journal_spend(home, budgets, at, canonical, resets)  # read first ...
    mirror = mirror_for(home)  # COSTLINE_EVENTS_URL: the bucket's segments, as Reader reads
    complete = True
    outbox: dict[str, dict[str, tuple[int, int]]] = {}
    if mirror is not None:
        outbox = outbox_spend(home, resets, budgets, at, canonical)  # ... then the outbox ...
        complete = mirror.sync()
    snapshot = scan(mirror.dir if mirror is not None else segments_dir(home))  # ... then list
    listed = segment_spend(home, resets, snapshot, budgets, at, canonical)
    local = {name: sums for name, sums in outbox.items() if not snapshot.has(name)}
    for stem, sums in journals.items():
        name = stem + SUFFIX
        if snapshot.has(name) or name in outbox:
            continue  # converted meanwhile: the listing or the outbox holds its segment
        local[name] = sums
    return LogView(listed, local, snapshot, mirror is not None, complete)


_OUTBOX_SUMS: dict[tuple[str, int, int, str], dict[str, tuple[int, int]]] = {}
_OUTBOX_MAX = 100_000  # cached segment sums (a segment never changes once written)
_outbox_lock = threading.Lock()


def outbox_spend(
    home: Path,
    resets: dict[str, datetime],
    budgets: Sequence[Budget],
    at: datetime,
    canonical: Any,
    attempts: int = 5,
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per segment of this home's outbox (``events/segments/`` with a bucket), per budget
    id: (picodollars, tokens). A segment shipped (moved to the cache) while it was read is
    in the bucket's listing taken after: the outbox is listed and read again. A segment's
    sums are kept for the same budgets and spans (a long bucket outage fills the outbox:
    each round reads only the segments sealed since the last)."""
    import duckdb

    from core.usage import Snapshot, scan, segments_dir
    from core.usage import events_view_sql as _view_sql

    spans = _spans(budgets, resets, at)
    cols, params = _sum_columns(budgets, spans, canonical, facts=False)
    lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
    spec = repr(([b.id for b in budgets], cols, params))
    for _ in range(attempts):
        snapshot = scan(segments_dir(home))
        if not snapshot.active:
            return {}
        out: dict[str, dict[str, tuple[int, int]]] = {}
        todo = []
        with _outbox_lock:
            for seg in snapshot.active:
                got = _OUTBOX_SUMS.get((str(seg.path), seg.rows, seg.mtime_ns, spec))
                if got is None:
                    todo.append(seg)
                else:
                    out[seg.name] = got
        if not todo:
            return out
        part = Snapshot(tuple(todo), (), frozenset(), "")
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET threads = 1")
            con.execute(_view_sql(part, filename=True))
            sql = (
                f"SELECT filename, {', '.join(cols)} FROM events"
                " WHERE ts >= ? AND ts < ? GROUP BY filename"
            )
            rows = con.execute(sql, [*params, lo, hi]).fetchall()
        except duckdb.IOException:
            continue  # a segment left the outbox (shipped) meanwhile
        finally:
            con.close()
        found = {
            Path(row[0]).name: {
                b.id: (int(row[1 + 2 * i]), int(row[2 + 2 * i])) for i, b in enumerate(budgets)
            }
            for row in rows
        }
        with _outbox_lock:
            if len(_OUTBOX_SUMS) > _OUTBOX_MAX:
                _OUTBOX_SUMS.clear()
            for seg in todo:
                sums = found.get(seg.name, {})  # no row in any window: nothing
                _OUTBOX_SUMS[(str(seg.path), seg.rows, seg.mtime_ns, spec)] = sums
                out[seg.name] = sums
        return out
    raise RuntimeError(f"the usage outbox kept changing during {attempts} reads")


def _spans(
    budgets: Sequence[Budget], resets: dict[str, datetime], at: datetime
) -> list[tuple[datetime, datetime]]:
    """Each budget's current window, from its last reset."""
    from core.budgets import window

    spans = []
    for b in budgets:
        w = window(b, at)
        spans.append((max(w.start.astimezone(UTC), resets.get(b.id, w.start)), w.end))
    return spans


def _sum_columns(
    budgets: Sequence[Budget],
    spans: Sequence[tuple[datetime, datetime]],
    canonical: Any,
    *,
    facts: bool = True,
) -> tuple[list[str], list[Any]]:
    """Two SELECT columns per budget (picodollars, tokens in its span and scope, cache hits
    left out) and their parameters, over the view ``facts`` (else ``events``)."""
    from core.reports import ADMITTED_EVENTS, ADMITTED_FACTS, condition
    from core.usage import TOKEN_COLUMNS as TOKENS

    tokens = " + ".join(f"coalesce({c}, 0)" for c in TOKENS)
    cols: list[str] = []
    params: list[Any] = []
    for b, (start, end) in zip(budgets, spans, strict=True):
        cond, cond_params = condition(b, canonical)
        admitted = ADMITTED_FACTS if facts else ADMITTED_EVENTS
        where = f"ts >= ? AND ts < ? AND {admitted} AND {cond}"
        cols.append(
            f"CAST(coalesce(sum(cost_picousd) FILTER (WHERE {where}), 0) AS VARCHAR),"
            f" CAST(coalesce(sum({tokens}) FILTER (WHERE {where}), 0) AS VARCHAR)"
        )
        params += [start, end, *cond_params, start, end, *cond_params]
    return cols, params


def segment_spend(
    home: Path,
    resets: dict[str, datetime],
    snapshot: Any,
    budgets: Sequence[Budget],
    at: datetime,
    canonical: Any,
) -> dict[str, tuple[int, int]]:
    """The Budgets page's sums (``core.reports``) over one segments listing."""
    import duckdb

    from core.usage import events_view_sql as _view_sql
    from core.usage import facts_view_sql as _facts_sql
    from core.usage import pruned_rollups

    spans = _spans(budgets, resets, at)
    cols, params = _sum_columns(budgets, spans, canonical)
    present = [s.name for s in (*snapshot.active, *snapshot.superseded)]
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET threads = 1")
        con.execute(_view_sql(snapshot))
        con.execute(_facts_sql(pruned_rollups(home, present)))
        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        sql = f"SELECT {', '.join(cols)} FROM facts WHERE ts >= ? AND ts < ?"
        row = con.execute(sql, [*params, lo, hi]).fetchone()
    finally:
        con.close()
    assert row is not None
    return {b.id: (int(row[2 * i]), int(row[2 * i + 1])) for i, b in enumerate(budgets)}


# -- journals not yet in a segment --------------------------------------------------------------
def journal_spend(
    home: Path,
    budgets: Sequence[Budget],
    at: datetime,
    canonical: Any,
    resets: dict[str, datetime] | None = None,
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per journal stem, per budget id: (picodollars, tokens) of its events inside the
    budget's current window. Lines that do not parse are skipped (a torn tail)."""
    from core.budgets import window
    from core.usage import COLUMNS, journal_dir, split_records

    jdir = journal_dir(home)
    try:
        names = sorted(os.listdir(jdir))
    except FileNotFoundError:
        return {}
    idx = {c: i for i, c in enumerate(COLUMNS)}
    tok = [idx[c] for c in TOKEN_COLUMNS]
    spans = []
    for b in budgets:
        w = window(b, at)
        start = max(w.start.astimezone(UTC), (resets or {}).get(b.id, w.start))
        spans.append((b, start, w.end.astimezone(UTC)))
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for name in names:
        original = name.split(".recovering.", 1)[0]
        if not original.endswith(".jsonl"):
            continue
        try:
            data = (jdir / name).read_bytes()
        except OSError:
            continue
        sums = out.setdefault(original.removesuffix(".jsonl"), {})
        payloads, _, _ = split_records(data)  # whole, checksummed records only
        for payload in payloads:
            row = _row(payload)
            if row is None:
                continue
            try:
                if row[idx["cache_hit"]]:  # never admitted: in no counter (ADMITTED_FACTS)
                    continue
                ts = datetime.fromisoformat(row[idx["ts"]])
                if ts.tzinfo is None:
                    ts = ts.replace(tzinfo=UTC)
                cost = int(row[idx["cost_picousd"]] or 0)
                tokens = sum(int(row[i] or 0) for i in tok)
            except (TypeError, ValueError, IndexError):
                continue
            for b, start, end in spans:
                if start <= ts < end and _matches(b, row, idx, canonical):
                    usd, n = sums.get(b.id, (0, 0))
                    sums[b.id] = (usd + cost, n + tokens)
    return out


TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _row(payload: bytes) -> list[Any] | None:
    """One journal record's event: a JSON array in schema order."""
    try:
        row = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return row if isinstance(row, list) else None


def _matches(b: Budget, row: list[Any], idx: dict[str, int], canonical: Any) -> bool:
    """The budget's scope over one event (as ``core.reports.condition`` says in SQL)."""
    from core.budgets import model_names

    scope, want = b.scope, b.scope_value
    if scope == "global":
        return True
    if want is None:
        return False
    if scope in ("org", "project", "user", "task", "key"):
        return bool(row[idx[scope]] == want)
    if scope == "provider":
        return str(row[idx["provider"]] or "").lower() == want.lower()
    if scope == "model":
        return str(row[idx["model"]] or "").lower() in model_names(want, canonical)
    return False


def start_reconciler(controls: Controls, home: Path, interval_s: float) -> Reconciler:
    """A started Reconciler (the Router calls this once, right after its Controls)."""
    rec = Reconciler(controls, home, interval_s)
    rec.start()
    return rec
