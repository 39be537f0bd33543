"""In-process live state: one lock, plain dicts, expiry on access (plus a sweep every 1024 writes).

The arithmetic mirrors the Lua scripts in ``_lua.py`` line for line, so both backends pass the
same contract tests. Algorithm time is wall-clock seconds (``now`` or ``time.time()``), like the
Redis server's TIME; key expiry uses ``time.monotonic()`` the way Redis uses its own clock.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.state._memcache import CacheAndCounters
from core.state.base import (
    DEFAULT_PREFIX,
    EPS,
    Admission,
    Bounds,
    BreakerState,
    ConditionalAdmit,
    Delta,
    RateCharge,
    RateFix,
    RateItem,
    Reservation,
    Settlement,
    condition_holds,
    make_key,
)

BREAKER_TTL_S = 86_400.0
SWEEP_EVERY = 1024
MAX_NAMES = 65_536  # remembered make_key results per kind


@dataclass(slots=True)
class _Log:
    """Exact sliding-window log: sorted (time, seq, cost) entries and their running sum. A deque:
    entries leave from the front one by one, in O(1) however many the window holds."""

    entries: deque[tuple[float, int, int]] = field(default_factory=deque)
    total: int = 0
    seq: int = 0


class MemoryState(ConditionalAdmit, CacheAndCounters):
    """Live state for one process. Thread-safe; nothing is shared with other processes."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, max_cache_entries: int = 10_000):
        self.prefix = prefix
        self.max_cache_entries = max_cache_entries
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self._exp: dict[str, float] = {}  # key -> monotonic deadline
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._counters: dict[str, int] = {}
        self._writes = 0
        # make_key results per kind for the bounded key sets (budgets, rates, breakers)
        self._names: dict[str, dict[str, str]] = {"b": {}, "rt": {}, "rw": {}, "br": {}}

    def _name(self, kind: str, key: str) -> str:
        """``make_key(prefix, kind, key)``, remembered (cache keys are not: they never repeat
        often enough to be worth it)."""
        names = self._names[kind]
        full = names.get(key)
        if full is None:
            full = make_key(self.prefix, kind, key)
            if len(names) >= MAX_NAMES:
                names.clear()
            names[key] = full
        return full

    # -- keyspace ---------------------------------------------------------------------------
    def _get(self, k: str, mono: float) -> Any:
        deadline = self._exp.get(k)
        if deadline is not None and deadline <= mono:
            del self._exp[k]
            self._data.pop(k, None)
            return None
        return self._data.get(k)

    def _put(self, k: str, value: Any, ttl_s: float | None, mono: float) -> None:
        """Store; a ttl replaces the expiry, no ttl keeps the current one (like INCRBY)."""
        self._data[k] = value
        if ttl_s is not None and ttl_s > 0:
            self._exp[k] = mono + ttl_s
        self._wrote(1, mono)

    def _values(self, keys: Sequence[str], mono: float) -> list[int]:
        """``_get(k) or 0`` of each key (inline: the budget keys of every call)."""
        data, exp = self._data, self._exp
        out: list[int] = []
        for k in keys:
            deadline = exp.get(k)
            if deadline is not None and deadline <= mono:
                del exp[k]
                data.pop(k, None)
                out.append(0)
            else:
                out.append(data.get(k) or 0)
        return out

    def _store(
        self, keys: Sequence[str], values: Sequence[int], ttls: Sequence[float | None], mono: float
    ) -> None:
        """``_put`` of each key (inline)."""
        data, exp = self._data, self._exp
        for k, v, ttl in zip(keys, values, ttls, strict=True):
            data[k] = v
            if ttl is not None and ttl > 0:
                exp[k] = mono + ttl
        self._wrote(len(keys), mono)

    def _wrote(self, n: int, mono: float) -> None:
        """Count writes; sweep expired keys every SWEEP_EVERY of them."""
        before = self._writes
        self._writes = before + n
        if before // SWEEP_EVERY != self._writes // SWEEP_EVERY:
            for key in [key for key, d in self._exp.items() if d <= mono]:
                del self._exp[key]
                self._data.pop(key, None)

    def _delete(self, k: str) -> None:
        self._data.pop(k, None)
        self._exp.pop(k, None)

    # -- rate limits and budgets ------------------------------------------------------------
    def admit(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
        over: Bounds | None = None,
        under: Bounds = (),
    ) -> Admission:
        t = time.time() if now is None else now
        names, name = self._names["b"], self._name
        bkeys = [names.get(b.key) or name("b", b.key) for b in budgets]
        with self._lock:
            mono = time.monotonic()
            values = self._values(bkeys, mono)
            if over is not None and not condition_holds(values, over, under):
                return Admission(False, "condition", None, None, values)
            plans: list[tuple[str, Any, float]] = []
            for i, r in enumerate(rates):
                retry, plan = self._check_rate(r, t, mono)
                if plan is None:
                    return Admission(False, "rate", i, retry, values)
                plans.append(plan)
            for i, b in enumerate(budgets):
                limit = b.limit
                if limit is not None and limit != -1 and values[i] + b.amount > limit:
                    return Admission(False, "budget", i, None, values)
            charges = self._commit_rates(rates, plans, t, mono) if plans else ()
            if budgets:
                self._store(
                    bkeys,
                    [v + b.amount for v, b in zip(values, budgets, strict=True)],
                    [b.ttl_s for b in budgets],
                    mono,
                )
        return Admission(True, None, None, None, values, charges)

    def _commit_rates(
        self,
        rates: Sequence[RateItem],
        plans: Sequence[tuple[str, Any, float]],
        t: float,
        mono: float,
    ) -> tuple[RateCharge, ...]:
        """Take each rate item's cost (call with the lock held, after every check passed);
        what the settling items took."""
        put = self._put
        charges: tuple[RateCharge, ...] = ()
        for r, (k, new, ttl) in zip(rates, plans, strict=True):
            if r.algorithm == "token_bucket":
                put(k, new, ttl, mono)
                if r.settles:
                    charges += (RateCharge(r, t, 0, self),)
            elif r.cost > 0:
                log: _Log = new
                log.seq += 1
                entry = (t, log.seq, r.cost)
                if not log.entries or log.entries[-1] < entry:
                    log.entries.append(entry)  # the usual case: time moves forward
                else:
                    bisect.insort(log.entries, entry)
                log.total += r.cost
                put(k, log, ttl, mono)
                if r.settles:
                    charges += (RateCharge(r, t, log.seq, self),)
        return charges

    def fix_rates(self, fixes: Sequence[RateFix], now: float | None = None) -> None:
        """Correct each charge this state took to the tokens actually used (one step)."""
        t = time.time() if now is None else now
        with self._lock:
            self._fix_rates(fixes, t, time.monotonic())

    def _fix_rates(self, fixes: Sequence[RateFix], t: float, mono: float) -> None:
        """Call with the lock held. A token bucket gets ``cost - actual`` back (refilled to
        ``t`` first; never above its capacity, never below 0); a sliding window's entry
        becomes ``actual`` (gone at 0; nothing when it already left the window)."""
        for c, actual in fixes:
            r = c.item
            diff = max(0, actual) - r.cost
            if not diff or c.owner is not self:
                continue
            if r.algorithm == "token_bucket":
                k = self._name("rt", r.key)
                cap = r.limit if r.burst is None else r.burst
                rate = r.limit / r.window_s
                st = self._get(k, mono)
                if st is None:
                    if diff < 0:  # expired: full already
                        continue
                    tokens, ts = float(cap), t
                else:
                    tokens = min(float(cap), st[0] + max(0.0, t - st[1]) * rate)
                    ts = max(st[1], t)
                tokens = min(float(cap), max(0.0, tokens - diff))
                self._put(k, (tokens, ts), cap / rate + 1.0, mono)
                continue
            log: _Log | None = self._get(self._name("rw", r.key), mono)
            if log is None:
                continue
            entries = log.entries
            i = bisect.bisect_left(entries, (c.at, c.seq))
            if i == len(entries) or entries[i][:2] != (c.at, c.seq):
                continue  # out of the window: nothing left to correct
            old = entries[i][2]
            new = max(0, old + diff)
            if new:
                entries[i] = (c.at, c.seq, new)
            else:
                del entries[i]
            log.total += new - old

    def _check_rate(
        self, r: RateItem, t: float, mono: float
    ) -> tuple[float, tuple[str, Any, float] | None]:
        """(retry_after, None) when it does not fit, else (0, (key, new state, key ttl))."""
        if r.algorithm == "token_bucket":
            k = self._names["rt"].get(r.key) or self._name("rt", r.key)
            cap = r.limit if r.burst is None else r.burst
            rate = r.limit / r.window_s
            st = self._get(k, mono)
            if st is None:
                tokens, ts = float(cap), t
            else:
                tokens = min(float(cap), st[0] + max(0.0, t - st[1]) * rate)
                ts = max(st[1], t)
            if r.cost <= tokens + EPS:  # ttl: bucket_ttl_s(r)
                return 0.0, (k, (max(0.0, tokens - r.cost), ts), cap / rate + 1.0)
            return (math.inf if r.cost > cap else (r.cost - tokens) / rate), None
        k = self._names["rw"].get(r.key) or self._name("rw", r.key)
        log = self._get(k, mono) or _Log()
        cut = t - r.window_s
        entries = log.entries
        while entries and entries[0][0] <= cut:
            log.total -= entries.popleft()[2]
        if log.total + r.cost <= r.limit:
            return 0.0, (k, log, r.window_s + 1.0)
        if r.cost > r.limit:
            return math.inf, None
        freed = 0
        for ts, _seq, cost in log.entries:
            freed += cost
            if log.total - freed + r.cost <= r.limit:
                return max(0.0, ts + r.window_s - t), None
        return float(r.window_s), None  # unreachable: freeing everything always fits

    def settle(self, items: Sequence[Settlement]) -> list[int]:
        return self.apply_deltas([(s.key, s.actual - s.reserved, s.ttl_s) for s in items])

    def apply_deltas(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix] = (), now: float | None = None
    ) -> list[int]:
        """value += delta for each (key, delta, ttl_s), and each rate charge in ``fixes``
        corrected to its actual (``fix_rates``), in one step; the new values."""
        with self._lock:
            return self._apply_deltas(deltas, fixes, now)

    def settle_and_close(
        self,
        deltas: Sequence[Delta],
        fixes: Sequence[RateFix],
        now: float | None,
        breaker: str,
    ) -> tuple[list[int], BreakerState]:
        """``apply_deltas(deltas, fixes, now)`` and a success's ``breaker_record(breaker,
        True, ...)`` (which deletes the breaker: closed) in one step, as Redis's settle
        script does: the new values and the breaker's state."""
        k = self._name("br", breaker)
        with self._lock:
            values = self._apply_deltas(deltas, fixes, now)
            self._delete(k)
        return values, "closed"

    def _apply_deltas(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix], now: float | None
    ) -> list[int]:
        """``apply_deltas`` with the lock held."""
        names, name = self._names["b"], self._name
        out: list[int] = []
        mono = time.monotonic()
        if fixes:
            self._fix_rates(fixes, time.time() if now is None else now, mono)
        data, exp = self._data, self._exp
        for key, delta, ttl in deltas:  # in order, like Lua
            k = names.get(key) or name("b", key)
            deadline = exp.get(k)
            if deadline is not None and deadline <= mono:  # expired: starts from 0
                del exp[k]
                value = delta
            else:
                value = (data.get(k) or 0) + delta
            data[k] = value
            if ttl is not None and ttl > 0:
                exp[k] = mono + ttl
            out.append(value)
        self._wrote(len(out), mono)
        return out

    def get_values(self, keys: Sequence[str]) -> list[int]:
        with self._lock:
            mono = time.monotonic()
            return [self._get(self._name("b", k), mono) or 0 for k in keys]

    def add(self, key: str, amount: int, ttl_s: float | None = None) -> int:
        with self._lock:
            mono = time.monotonic()
            k = make_key(self.prefix, "b", key)
            value: int = (self._get(k, mono) or 0) + amount
            self._put(k, value, ttl_s, mono)
            return value

    def take_values(self, keys: Sequence[str]) -> list[tuple[int, float | None]]:
        """Read and delete budget values: (value, seconds left or None). For reconciliation."""
        out: list[tuple[int, float | None]] = []
        with self._lock:
            mono = time.monotonic()
            for key in keys:
                k = make_key(self.prefix, "b", key)
                value = self._get(k, mono) or 0
                deadline = self._exp.get(k)
                out.append((value, None if deadline is None else max(0.001, deadline - mono)))
                self._delete(k)
        return out

    # -- circuit breaker --------------------------------------------------------------------
    def breaker_allow(self, key: str, now: float | None = None) -> BreakerState:
        t = time.time() if now is None else now
        with self._lock:
            return self._allow(key, t, time.monotonic())

    def breaker_allow_many(
        self, keys: Sequence[str], now: float | None = None
    ) -> list[BreakerState]:
        """``breaker_allow`` of each key, in one step."""
        t = time.time() if now is None else now
        with self._lock:
            mono = time.monotonic()
            return [self._allow(k, t, mono) for k in keys]

    def _allow(self, key: str, t: float, mono: float) -> BreakerState:
        st = self._get(self._name("br", key), mono)
        if st is None or st["s"] == "closed":
            return "closed"
        since = st["at"] if st["s"] == "open" else st["probe"]
        if t >= since + st["cd"]:  # cooldown over, or the last probe never reported
            st["s"], st["probe"] = "half_open", t
            return "half_open"
        return "open"

    def breaker_record(
        self,
        key: str,
        success: bool,
        threshold: int,
        cooldown_s: float,
        now: float | None = None,
    ) -> BreakerState:
        t = time.time() if now is None else now
        k = self._name("br", key)
        with self._lock:
            mono = time.monotonic()
            if success:
                self._delete(k)
                return "closed"
            st = self._get(k, mono) or {"s": "closed", "f": 0, "at": 0.0, "probe": 0.0}
            st["f"] += 1
            st["cd"] = cooldown_s
            if st["s"] == "half_open" or (st["s"] == "closed" and st["f"] >= threshold):
                st["s"], st["at"] = "open", t
            self._put(k, st, max(BREAKER_TTL_S, 2 * cooldown_s), mono)
            state: BreakerState = st["s"]
            return state

    def close(self) -> None:
        pass
