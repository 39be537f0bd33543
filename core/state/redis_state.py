"""Live state in Redis, shared by every router process: one Lua script (one round trip) per check.

Scripts are registered once and run by EVALSHA; redis-py reloads them on NOSCRIPT (e.g. after a
Redis restart). Connections use short socket timeouts and no client-side retries: a retried
``admit`` could reserve twice, and ``ResilientState`` decides what happens when Redis is away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.state import _lua
from core.state._cluster import cluster_client, is_cluster_url, tagged
from core.state.base import (
    COUNTER_MAX,
    DEFAULT_PREFIX,
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
    bucket_ttl_s,
    make_key,
    ttl_ms,
)

BREAKER_TTL_S = 86_400.0


def _now_arg(now: float | None) -> str:
    return "" if now is None else repr(float(now))


class EpochChanged(redis.exceptions.ConnectionError):
    """Redis lost the counters this router trusted (restarted empty, flushed): until they are
    rebuilt from the usage log, treat Redis as down (``ResilientState`` does)."""


def _int(raw: Any) -> int:
    return 0 if raw is None else int(raw)


class RedisState(ConditionalAdmit):
    """Live state in Redis. ``url`` like ``redis://host:6379/0``; keys start with ``prefix``."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        socket_timeout: float = 0.2,
        connect_timeout: float = 0.2,
    ):
        self.url = url
        self.client: Any
        if is_cluster_url(url):  # one hash tag: every key a script touches in one slot
            prefix = tagged(prefix)
            self.client = cluster_client(
                url, socket_timeout=socket_timeout, connect_timeout=connect_timeout
            )
        else:
            self.client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 0),
            )
        self.prefix = prefix
        self._admit = self.client.register_script(_lua.ADMIT)
        self._settle = self.client.register_script(_lua.SETTLE)
        self._settle_close = self.client.register_script(_lua.SETTLE_CLOSE)
        self._allow = self.client.register_script(_lua.BREAKER_ALLOW)
        self._record = self.client.register_script(_lua.BREAKER_RECORD)
        self._allow_many = self.client.register_script(_lua.BREAKER_ALLOW_MANY)
        self._get_counted = self.client.register_script(_lua.CACHE_GET_COUNTED)
        self._raise = self.client.register_script(_lua.RAISE)
        self._put_shares = self.client.register_script(_lua.PUT_SHARES)
        self._counters_key = prefix + "n"
        self.epoch_key = prefix + "epoch"
        self.epoch: str | None = None  # set once the counters were rebuilt (core.reconcile)

    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- rate limits and budgets ------------------------------------------------------------
    def admit(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
        over: Bounds | None = None,
        under: Bounds = (),
    ) -> Admission:
        keys: list[str] = []
        args: list[Any] = [_now_arg(now), len(rates), len(budgets)]
        for r in rates:
            if r.algorithm == "token_bucket":
                keys.append(make_key(self.prefix, "rt", r.key))
                ttl = ttl_ms(bucket_ttl_s(r))
            else:
                k = make_key(self.prefix, "rw", r.key)
                keys += (k, k + "|m")
                ttl = ttl_ms(r.window_s + 1.0)
            alg = "t" if r.algorithm == "token_bucket" else "w"
            if r.settles:
                alg = alg.upper()
            args += (alg, r.limit, repr(float(r.window_s)), r.capacity, r.cost, ttl)
        for b in budgets:
            keys.append(make_key(self.prefix, "b", b.key))
            limit = b.limit
            threshold = "" if limit is None or limit == -1 else str(limit - b.amount)
            args += (threshold, b.amount, ttl_ms(b.ttl_s))
        if self.epoch is not None:
            keys.append(self.epoch_key)
            args.append(self.epoch)
        if over is not None:  # admit_if's condition, checked in the same script
            args += [] if self.epoch is not None else [""]
            for bounds in (over, under):
                args.append(len(bounds))
                for j, bound in bounds:
                    args += (j + 1, bound)
        res = self._admit(keys=keys, args=args)
        nb = len(budgets)
        values = [_int(v) for v in res[4 : 4 + nb]]
        if res[0] == 1:
            if len(res) == 4 + nb:
                return Admission(True, None, None, None, values)
            at = float(res[4 + nb])
            seqs = iter(res[5 + nb :])
            charges = tuple(RateCharge(r, at, int(next(seqs)), self) for r in rates if r.settles)
            return Admission(True, None, None, None, values, charges)
        reason = res[1].decode()
        if reason == "epoch":
            raise EpochChanged(f"Redis lost its budget counters (epoch key {self.epoch_key})")
        if reason == "condition":
            return Admission(False, "condition", None, None, values)
        retry: float | None = None
        if reason == "rate":
            retry = float(res[3])
            retry = math.inf if retry < 0 else retry
        return Admission(False, reason, int(res[2]), retry, values)

    def settle(self, items: Sequence[Settlement]) -> list[int]:
        return self.apply_deltas([(s.key, s.actual - s.reserved, s.ttl_s) for s in items])

    def apply_deltas(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix] = (), now: float | None = None
    ) -> list[int]:
        """value += delta for each (key, delta, ttl_s), and each rate charge this state took
        in ``fixes`` corrected to its actual, in one script call; the new values."""
        return self._apply(deltas, fixes, now) if deltas or fixes else []

    def settle_and_close(
        self,
        deltas: Sequence[Delta],
        fixes: Sequence[RateFix],
        now: float | None,
        breaker: str,
    ) -> tuple[list[int], BreakerState]:
        """``apply_deltas(deltas, fixes, now)`` and ``breaker_record(breaker, True, ...)`` (a
        success closes the breaker) in one script call: a call's settle step in one round trip.
        The new values and the breaker's state."""
        keys, args = self._settle_args(deltas, fixes, now)
        keys.append(make_key(self.prefix, "br", breaker))
        values = [int(v) for v in self._settle_close(keys=keys, args=args)]
        return values, "closed"

    def _settle_args(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix], now: float | None
    ) -> tuple[list[str], list[Any]]:
        """SETTLE's keys and args (no time argument when there is no rate fix)."""
        keys = [make_key(self.prefix, "b", k) for k, _, _ in deltas]
        args: list[Any] = [len(deltas)]
        for _, delta, ttl in deltas:
            args += (delta, ttl_ms(ttl))
        head = len(args)
        for c, actual in fixes:
            r = c.item
            actual = max(0, actual)
            if actual == r.cost or c.owner is not self:
                continue
            if r.algorithm == "token_bucket":
                keys.append(make_key(self.prefix, "rt", r.key))
                diff = actual - r.cost
                args += ("t", r.limit, repr(float(r.window_s)), r.capacity, diff)
                args.append(ttl_ms(bucket_ttl_s(r)))
            else:
                k = make_key(self.prefix, "rw", r.key)
                keys += (k, k + "|m")
                args += ("w", c.seq, r.cost, actual)
        if len(args) > head:
            args.insert(head, _now_arg(now))
        return keys, args

    def _apply(
        self, deltas: Sequence[Delta], fixes: Sequence[RateFix] = (), now: float | None = None
    ) -> list[int]:
        keys, args = self._settle_args(deltas, fixes, now)
        if not keys:  # nothing to settle
            return []
        return [int(v) for v in self._settle(keys=keys, args=args)]

    def raise_committed(self, items: Sequence[tuple[str, int, float | None]]) -> list[int]:
        """For each (budget key K, floor, ttl): ``K:c`` raised to at least floor, ``K`` by as
        much, in one script call; what was added per item."""
        if not items:
            return []
        keys: list[str] = []
        args: list[Any] = []
        for key, floor, ttl in items:
            keys += (make_key(self.prefix, "b", key), make_key(self.prefix, "b", key + ":c"))
            args += (min(floor, COUNTER_MAX), ttl_ms(ttl))  # a log sum past int64: the edge
        was = self._raise(keys=keys, args=args)  # each K:c before (exact decimal strings)
        return [
            max(0, min(floor, COUNTER_MAX) - _int(c))
            for (_, floor, _), c in zip(items, was, strict=True)
        ]

    def put_shares(
        self, home: str, shares: Mapping[str, int], ttl_s: float | None, homes_key: str, now: int
    ) -> None:
        """Replace ``home``'s counter shares (``P s:<home>``, field -> int; see
        ``core.reconcile``) and name the home in the hash ``homes_key``: one script call."""
        args: list[Any] = [home, now, ttl_ms(ttl_s)]
        for f, v in shares.items():
            args += (f, v)
        self._put_shares(keys=[make_key(self.prefix, "s", home), homes_key], args=args)

    def shares(self, homes: Sequence[str]) -> dict[str, dict[str, int]]:
        """Each home's counter shares (one pipelined round trip)."""
        if not homes:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for h in homes:
            pipe.hgetall(make_key(self.prefix, "s", h))
        out: dict[str, dict[str, int]] = {}
        for h, raw in zip(homes, pipe.execute(), strict=True):
            out[h] = {
                (k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()
            }
        return out

    def claim_epoch(self, fresh: str) -> str:
        """Set the epoch key if absent; return the epoch now in force (and trust it)."""
        self.client.set(self.epoch_key, fresh, nx=True)
        got = self.client.get(self.epoch_key)
        self.epoch = got.decode() if isinstance(got, bytes) else str(got)
        return self.epoch

    def get_values(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        raw = self.client.mget([make_key(self.prefix, "b", k) for k in keys])
        return [_int(v) for v in raw]

    def add(self, key: str, amount: int, ttl_s: float | None = None) -> int:
        return self._apply([(key, amount, ttl_s)])[0]

    # -- circuit breaker --------------------------------------------------------------------
    def breaker_allow(self, key: str, now: float | None = None) -> BreakerState:
        k = make_key(self.prefix, "br", key)
        state: BreakerState = self._allow(keys=[k], args=[_now_arg(now)]).decode()
        return state

    def breaker_allow_many(
        self, keys: Sequence[str], now: float | None = None
    ) -> list[BreakerState]:
        """``breaker_allow`` of each key in one script call (one round trip)."""
        if not keys:
            return []
        ks = [make_key(self.prefix, "br", k) for k in keys]
        return [s.decode() for s in self._allow_many(keys=ks, args=[_now_arg(now)])]

    def breaker_record(
        self,
        key: str,
        success: bool,
        threshold: int,
        cooldown_s: float,
        now: float | None = None,
    ) -> BreakerState:
        k = make_key(self.prefix, "br", key)
        ttl = ttl_ms(max(BREAKER_TTL_S, 2 * cooldown_s))
        args = [_now_arg(now), "1" if success else "0", threshold, repr(float(cooldown_s)), ttl]
        state: BreakerState = self._record(keys=[k], args=args).decode()
        return state

    # -- cache and counters -----------------------------------------------------------------
    def cache_get(self, key: str) -> bytes | None:
        value: bytes | None = self.client.get(make_key(self.prefix, "c", key))
        return value

    def cache_get_counted(self, key: str, hit: str, miss: str) -> bytes | None:
        """GET plus HINCRBY of ``hit`` (found) or ``miss``: one script call."""
        keys = [make_key(self.prefix, "c", key), self._counters_key]
        value: bytes | None = self._get_counted(keys=keys, args=[hit, miss])
        return value

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s > 0:
            self.client.set(make_key(self.prefix, "c", key), value, px=ttl_ms(ttl_s))

    def cache_set_counted(self, key: str, value: bytes, ttl_s: float, counter: str) -> None:
        """SET plus HINCRBY ``counter``, pipelined: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        if ttl_s > 0:
            pipe.set(make_key(self.prefix, "c", key), value, px=ttl_ms(ttl_s))
        pipe.hincrby(self._counters_key, counter, 1)
        pipe.execute()

    def cache_delete(self, key: str) -> None:
        self.client.delete(make_key(self.prefix, "c", key))

    def incr(self, key: str, n: int = 1) -> int:
        return int(self.client.hincrby(self._counters_key, key, n))

    def counters(self, prefix: str = "") -> dict[str, int]:
        raw: dict[bytes, bytes] = self.client.hgetall(self._counters_key)
        out = {k.decode(): int(v) for k, v in raw.items()}
        return {k: v for k, v in out.items() if k.startswith(prefix)}

    def add_counters(self, counts: dict[str, int]) -> None:
        """Add many counters in one round trip (used when replaying an outage)."""
        if counts:
            pipe = self.client.pipeline(transaction=False)
            for k, n in counts.items():
                pipe.hincrby(self._counters_key, k, n)
            pipe.execute()

    def close(self) -> None:
        self.client.close()
