"""Redis with an in-process fallback: the router keeps serving while Redis is away.

While Redis is unreachable (``DOWN_ERRORS``: refused, timeout, read-only, OOM...):

    | operation                 | policy 'open'                     | policy 'closed'              |
    |---------------------------|-----------------------------------|------------------------------|
    | cache_get / set / delete  | miss / skipped / replayed later   | same                         |
    | (the _counted forms)      | their counter: fallback, replayed | same                         |
    | admit                     | local enforcement (fallback)      | ok=False, 'unavailable'      |
    | settle, apply_deltas, add | fallback, replayed to Redis later | same (spend is never lost)   |
    | (a rate charge taken in   | not corrected (Redis's bucket     | same                         |
    |  Redis: apply_deltas'     |  keeps the reservation until it   |                              |
    |  fixes)                   |  refills or leaves the window)    |                              |
    | incr                      | fallback, replayed to Redis later | same                         |
    | breaker_allow(_many)      | fallback                          | 'open'                       |
    | breaker_record            | fallback                          | 'open', not recorded         |

A budget key's first use in an outage seeds the fallback with the last value this process saw in
Redis, so local enforcement starts from a realistic spend. When Redis answers again, each key's
outage delta (fallback value - seed) is added to Redis in one script call, so reservations made
in either place settle correctly. One WARNING per outage, one INFO when it ends; Redis is tried
again at most every ``retry_interval_s``, by one caller, while the others use the fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import redis

from core.state.base import (
    Admission,
    Bounds,
    BreakerState,
    ConditionalAdmit,
    Delta,
    RateFix,
    RateItem,
    Reservation,
    Settlement,
)
from core.state.memory import MemoryState
from core.state.redis_state import RedisState

log = logging.getLogger(__name__)
T = TypeVar("T")
Policy = Literal["open", "closed"]
_E = redis.exceptions
# Redis is away or cannot serve: refused, timed out, loading, wrong auth, not speaking RESP,
# a read-only replica after a failover, out of memory. Anything else (a script error) raises.
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    _E.ConnectionError,
    _E.TimeoutError,
    _E.InvalidResponse,
    _E.ReadOnlyError,
    _E.OutOfMemoryError,  # type: ignore[attr-defined]
    _E.ClusterDownError,
    _E.TryAgainError,
    OSError,
)
MAX_BASELINE_KEYS = 50_000


class ResilientState(ConditionalAdmit):
    """``primary`` (Redis) while it answers, ``fallback`` (memory) while it does not."""

    def __init__(
        self,
        primary: RedisState,
        fallback: MemoryState | None = None,
        policy: Policy = "open",
        retry_interval_s: float = 2.0,
    ):
        if policy not in ("open", "closed"):
            raise ValueError(f"policy must be 'open' or 'closed', not {policy!r}")
        self.primary = primary
        self.fallback = fallback if fallback is not None else MemoryState(primary.prefix)
        self.policy = policy
        self.retry_interval_s = retry_interval_s
        self.healthy = True
        self.outages = 0
        self._down_since = 0.0
        self._next_try = 0.0
        self._lock = threading.Lock()  # health transitions
        self._fb_lock = threading.Lock()  # fallback budget writes and their replay
        self._recovering = threading.Lock()  # one thread runs _recover at a time
        self._baseline: dict[str, int] = {}  # budget key -> last value seen in Redis
        self._recover_error: str | None = None  # the last failed rebuild, said once
        self._seeded: dict[str, int] = {}  # budget key -> seed put in the fallback
        self._dirty_counters = False
        self._pending_deletes: set[str] = set()
        # called with the RedisState when Redis answers after an outage (or lost its epoch)
        self.on_recover: Callable[[RedisState], None] | None = None

    # -- health -----------------------------------------------------------------------------
    def _try_primary(self) -> bool:
        if self.healthy:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._next_try:
                return False
            self._next_try = now + self.retry_interval_s  # this caller probes; others wait
            return True

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            self._next_try = time.monotonic() + self.retry_interval_s
            if not self.healthy:
                return
            self.healthy = False
            self.outages += 1
            self._down_since = time.monotonic()
        log.warning(
            "Redis unreachable (%s: %s); serving from in-process state, policy %r",
            type(exc).__name__,
            exc,
            self.policy,
        )

    def _after_success(self) -> None:
        if self.healthy and not (self._seeded or self._dirty_counters or self._pending_deletes):
            return
        try:
            self._replay()
        except DOWN_ERRORS as exc:
            self._mark_down(exc)
            return
        with self._lock:
            if self.healthy:
                return
            self.healthy = True
            lasted = time.monotonic() - self._down_since
        log.info("Redis reachable again after %.1fs; outage deltas replayed", lasted)

    def _recover(self) -> None:
        """Redis answers again: replay the outage deltas, let ``on_recover`` rebuild the
        counters from the usage log if Redis came back empty (core.reconcile), then use it."""
        self.primary.ping()
        self._replay()
        if self.on_recover is not None:
            self.on_recover(self.primary)
        elif self.primary.epoch is not None:
            self.primary.claim_epoch(self.primary.epoch)
        with self._lock:
            self._recover_error = None
            if self.healthy:
                return
            self.healthy = True
            lasted = time.monotonic() - self._down_since
        log.info("Redis reachable again after %.1fs; outage deltas replayed", lasted)

    def _recover_failed(self, exc: BaseException) -> None:
        """``on_recover`` raised (the usage log or the control plane it reads failed): stay
        on the fallback, as in an outage, and try again after ``retry_interval_s``."""
        with self._lock:
            self._next_try = time.monotonic() + self.retry_interval_s
            said = self._recover_error
            self._recover_error = f"{type(exc).__name__}: {exc}"
        if said != self._recover_error:
            log.warning(
                "Redis answers but its counters could not be rebuilt (%s); serving from"
                " in-process state, policy %r, until a rebuild succeeds",
                self._recover_error,
                self.policy,
            )

    def _run(self, on_primary: Callable[[], T], on_fallback: Callable[[], T]) -> T:
        if self._try_primary():
            try:
                if not self.healthy:
                    if not self._recovering.acquire(blocking=False):
                        return on_fallback()  # another thread is rebuilding
                    try:
                        self._recover()  # before any admission: counters rebuilt first
                    except DOWN_ERRORS:
                        raise
                    except Exception as exc:  # the rebuild failed: not trusted yet
                        self._recover_failed(exc)
                        return on_fallback()
                    finally:
                        self._recovering.release()
                result = on_primary()
            except DOWN_ERRORS as exc:
                self._mark_down(exc)
            else:
                self._after_success()
                return result
        return on_fallback()

    # -- outage bookkeeping -----------------------------------------------------------------
    def _seed(self, keys: Sequence[str]) -> None:
        """Call with _fb_lock held: give each key its Redis baseline on first outage use."""
        for k in keys:
            if k not in self._seeded:
                seed = self._baseline.get(k, 0)
                self._seeded[k] = seed
                if seed:
                    self.fallback.add(k, seed)

    def _replay(self) -> None:
        """Push outage deltas to Redis; what did not get there is put back for the next try."""
        with self._fb_lock:
            keys = list(self._seeded)
            taken = self.fallback.take_values(keys)
            seeds = [self._seeded.pop(k) for k in keys]
            counts = self.fallback.take_counters()
            deletes, self._pending_deletes = self._pending_deletes, set()
            self._dirty_counters = False
            deltas = [(k, v - s, ttl) for k, (v, ttl), s in zip(keys, taken, seeds, strict=True)]
            done = 0  # steps that reached Redis: 1 deltas, 2 counters, 3 deletes
            try:
                if deltas:
                    self.primary._apply(deltas)
                done = 1
                self.primary.add_counters(counts)
                done = 2
                for key in deletes:
                    self.primary.cache_delete(key)
                done = 3
            except (redis.exceptions.RedisError, OSError) as exc:
                if not isinstance(exc, DOWN_ERRORS):  # e.g. an int64 overflow: never retry
                    log.error("dropped outage deltas %s, counters %s: %s", deltas, counts, exc)
                    return
                if done < 1:
                    for k, (v, ttl), s in zip(keys, taken, seeds, strict=True):
                        self._seeded[k] = s
                        self.fallback.add(k, v, ttl)
                if done < 2:
                    for name, n in counts.items():
                        self.fallback.incr(name, n)
                    self._dirty_counters = bool(counts)
                self._pending_deletes |= deletes
                raise
            for k, (v, _ttl) in zip(keys, taken, strict=True):
                if v:  # the outage's spend stays in a later outage's seed (a failed rebuild)
                    self._baseline[k] = max(v, self._baseline.get(k, 0))

    def _remember(self, budgets: Sequence[Reservation], adm: Admission) -> Admission:
        if len(self._baseline) > MAX_BASELINE_KEYS:
            self._baseline.clear()
        for b, v in zip(budgets, adm.budget_values, strict=True):
            self._baseline[b.key] = v + b.amount if adm.ok else v
        return adm

    # -- the State interface ----------------------------------------------------------------
    def admit(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
        over: Bounds | None = None,
        under: Bounds = (),
    ) -> Admission:
        def local() -> Admission:
            with self._fb_lock:
                keys = [b.key for b in budgets]
                if self.policy == "closed":
                    values = self._local_values(keys)
                    return Admission(False, "unavailable", None, self.retry_interval_s, values)
                self._seed(keys)
                return self.fallback.admit(rates, budgets, now, over, under)

        return self._run(
            lambda: self._remember(budgets, self.primary.admit(rates, budgets, now, over, under)),
            local,
        )

    def raise_committed(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        """On Redis only (while it is away the log rebuild runs again on recovery)."""
        return self._run(lambda: self.primary.raise_committed(items), lambda: [0 for _ in items])

    def raise_local(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        """The in-process counters an outage enforces from, raised to at least these committed
        values (the usage log's spend, ``(key, floor, ttl_s)`` as ``raise_committed``; ``K``
        moves with ``K:c``): a router that starts while Redis is away, or a reconcile round
        during an outage, so other processes' logged spend counts. The seed moves with a raise,
        so what is replayed to Redis afterwards is still this process's outage spend only."""
        out: list[int] = []
        with self._fb_lock:
            for key, floor, ttl in items:
                keys = [key + ":c", key]
                values = self._local_values(keys)
                diff = max(0, floor - values[0])
                if diff:
                    for k, v in zip(keys, values, strict=True):
                        if k in self._seeded:
                            self.fallback.add(k, diff, ttl)
                            self._seeded[k] += diff
                        else:
                            self._baseline[k] = v + diff
                out.append(diff)
        return out

    def settle(self, items: Sequence[Settlement]) -> list[int]:
        return self.apply_deltas([(s.key, s.actual - s.reserved, s.ttl_s) for s in items])

    def apply_deltas(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix] = (), now: float | None = None
    ) -> list[int]:
        """Budgets as above; each rate charge in ``fixes`` is corrected where it was taken: in
        the fallback (always here), in Redis while it answers (else left as reserved)."""
        fixes = self._fix_local(fixes, now)
        if not deltas and not fixes:
            return []
        return self._run(
            lambda: self.primary.apply_deltas(deltas, fixes, now), lambda: self._local(deltas)
        )

    def settle_and_close(
        self,
        deltas: Sequence[Delta],
        fixes: Sequence[RateFix],
        now: float | None,
        breaker: str,
    ) -> tuple[list[int], BreakerState]:
        """``apply_deltas`` and a success's ``breaker_record``: one Redis round trip while it
        answers, else both in the fallback (as each would be)."""
        fixes = self._fix_local(fixes, now)

        def local() -> tuple[list[int], BreakerState]:
            values = self._local(deltas) if deltas else []
            if self.policy == "closed":
                return values, "open"
            return values, self.fallback.breaker_record(breaker, True, 1, 0.0, now)

        return self._run(lambda: self.primary.settle_and_close(deltas, fixes, now, breaker), local)

    def _fix_local(self, fixes: Sequence[RateFix], now: float | None) -> Sequence[RateFix]:
        """Correct the charges the fallback took, there; the others (Redis's) to do."""
        if fixes:
            fb = self.fallback
            if any(c.owner is fb for c, _ in fixes):
                fb.fix_rates([f for f in fixes if f[0].owner is fb], now)
                fixes = [f for f in fixes if f[0].owner is not fb]
        return fixes

    def _local(self, deltas: Sequence[Delta]) -> list[int]:
        with self._fb_lock:
            self._seed([d[0] for d in deltas])
            return self.fallback.apply_deltas(deltas)

    def _local_values(self, keys: Sequence[str]) -> list[int]:
        """Call with _fb_lock held."""
        local = self.fallback.get_values(keys)
        pairs = zip(keys, local, strict=True)
        return [v if k in self._seeded else self._baseline.get(k, 0) for k, v in pairs]

    def get_values(self, keys: Sequence[str]) -> list[int]:
        def local() -> list[int]:
            with self._fb_lock:
                return self._local_values(keys)

        return self._run(lambda: self.primary.get_values(keys), local)

    def add(self, key: str, amount: int, ttl_s: float | None = None) -> int:
        def local() -> int:
            with self._fb_lock:
                self._seed([key])
                return self.fallback.add(key, amount, ttl_s)

        return self._run(lambda: self.primary.add(key, amount, ttl_s), local)

    def breaker_allow(self, key: str, now: float | None = None) -> BreakerState:
        def local() -> BreakerState:
            return "open" if self.policy == "closed" else self.fallback.breaker_allow(key, now)

        return self._run(lambda: self.primary.breaker_allow(key, now), local)

    def breaker_allow_many(
        self, keys: Sequence[str], now: float | None = None
    ) -> list[BreakerState]:
        def local() -> list[BreakerState]:
            if self.policy == "closed":
                return ["open" for _ in keys]
            return self.fallback.breaker_allow_many(keys, now)

        return self._run(lambda: self.primary.breaker_allow_many(keys, now), local)

    def breaker_record(
        self,
        key: str,
        success: bool,
        threshold: int,
        cooldown_s: float,
        now: float | None = None,
    ) -> BreakerState:
        def local() -> BreakerState:
            if self.policy == "closed":
                return "open"
            return self.fallback.breaker_record(key, success, threshold, cooldown_s, now)

        return self._run(
            lambda: self.primary.breaker_record(key, success, threshold, cooldown_s, now), local
        )

    def cache_get(self, key: str) -> bytes | None:
        return self._run(lambda: self.primary.cache_get(key), lambda: None)

    def cache_get_counted(self, key: str, hit: str, miss: str) -> bytes | None:
        def local() -> None:  # a miss, counted here and replayed later
            self._count_locally(miss)

        return self._run(lambda: self.primary.cache_get_counted(key, hit, miss), local)

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._run(lambda: self.primary.cache_set(key, value, ttl_s), lambda: None)

    def cache_set_counted(self, key: str, value: bytes, ttl_s: float, counter: str) -> None:
        def local() -> None:  # the write is skipped; the count replays like any counter
            self._count_locally(counter)

        self._run(lambda: self.primary.cache_set_counted(key, value, ttl_s, counter), local)

    def cache_delete(self, key: str) -> None:
        def local() -> None:
            with self._fb_lock:
                self._pending_deletes.add(key)

        self._run(lambda: self.primary.cache_delete(key), local)

    def incr(self, key: str, n: int = 1) -> int:
        return self._run(lambda: self.primary.incr(key, n), lambda: self._count_locally(key, n))

    def _count_locally(self, key: str, n: int = 1) -> int:
        with self._fb_lock:
            self._dirty_counters = True
            return self.fallback.incr(key, n)

    def reachable(self) -> bool:
        """Whether Redis answers now (a ping; an outage is marked, and a Redis that is back
        recovered, as any operation would). While it is down Redis is pinged at most every
        ``retry_interval_s``: False without a round trip in between."""
        return self._run(self.primary.ping, lambda: False)

    def counters(self, prefix: str = "") -> dict[str, int]:
        return self._run(
            lambda: self.primary.counters(prefix), lambda: self.fallback.counters(prefix)
        )

    def close(self) -> None:
        self.primary.close()
        self.fallback.close()
