"""The live-state contract: counters the router checks on every call, and the response cache.

Three backends implement :class:`State`: ``MemoryState`` (one process), ``RedisState`` (shared,
one Lua script per check) and ``ResilientState`` (Redis with an in-process fallback).

Key layout (one helper, :func:`make_key`; ``P`` is the prefix, default ``costline:``)::

    P rt:<key>      token bucket          hash  {t: tokens, ts: last refill}
    P rw:<key>      sliding window log    zset  member "<seq>:<cost>", score = time
    P rw:<key>|m    its running sum       hash  {sum, seq}
    P b:<key>       budget window value   int   committed + reserved (integer units)
    P br:<key>      circuit breaker       hash  {s: state, f: failures, at, cd, probe}
    P c:<key>       cached response       bytes
    P n             counters              hash  {name: int}
    P s:<home>      a home's share        hash  {"<segment>\t<budget key>": int} (spend only
                                                that home reads: core.reconcile.fleet_extra)

A key whose full name would exceed ``MAX_KEY_LEN`` characters becomes ``P <kind>:#<sha256>``.

Beyond the protocol, the three backends offer one-step (one round trip) forms the router's hot
path uses when present: ``apply_deltas`` (settle as (key, delta, ttl) tuples, new values back;
with ``fixes``, the ``RateCharge``s of settling rate items corrected to the actual tokens in
the same step: a tokens-per-minute limit is charged the reservation at admission and the
tokens used at settle),
``settle_and_close`` (``apply_deltas`` and a success's ``breaker_record``, which deletes
the breaker: on Redis in one script, a call's settle step in one round trip; in memory under
its one lock),
``breaker_allow_many``, ``cache_get_counted`` (read + hit/miss counter) and
``cache_set_counted`` (write + counter), and ``admit_if(rates, budgets, now, over=...,
under=...)``: ``admit`` in the same atomic step, only when the budget values it reads meet a
condition (``condition_holds``; reason 'condition' and nothing taken when they do not) - the
budget guard's optimistic degrade (docs/architecture.md, "Degrading").
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

DEFAULT_PREFIX = "costline:"
COUNTER_MAX = 2**63 - 1  # a budget counter (pUSD or tokens) stops here: SQLite and Redis hold int64
MAX_KEY_LEN = 200
EPS = 1e-9  # float slack when comparing refilled tokens with a cost

Algorithm = Literal["token_bucket", "sliding_window"]
BreakerState = Literal["closed", "open", "half_open"]
Reason = Literal["rate", "budget", "unavailable", "condition"]
Bounds = Sequence[tuple[int, int]]  # admit_if's (budget item index, value bound) pairs


def make_key(prefix: str, kind: str, key: str) -> str:
    """The one place a caller's key becomes a backend key: namespaced, long ones hashed."""
    full = f"{prefix}{kind}:{key}"
    if len(full) <= MAX_KEY_LEN:
        return full
    return f"{prefix}{kind}:#{hashlib.sha256(key.encode()).hexdigest()}"


@dataclass(frozen=True, slots=True)
class RateItem:
    """``limit`` per ``window_s``; a token bucket holds up to ``burst`` (default ``limit``)."""

    key: str
    algorithm: Algorithm
    limit: int
    window_s: float
    burst: int | None = None
    cost: int = 1
    settles: bool = False  # ``cost`` is a reservation, corrected to the actual at settle

    def __post_init__(self) -> None:
        if self.limit <= 0 or self.window_s <= 0 or self.cost < 0:
            raise ValueError(f"bad rate item {self!r}")
        if self.algorithm not in ("token_bucket", "sliding_window"):
            raise ValueError(f"unknown rate algorithm {self.algorithm!r}")

    @property
    def capacity(self) -> int:
        return self.limit if self.burst is None else self.burst

    @property
    def rate(self) -> float:
        """Token bucket refill, units per second."""
        return self.limit / self.window_s


@dataclass(frozen=True, slots=True)
class BudgetItem:
    """Reserve ``amount`` if ``value + amount <= limit``; ``limit`` None or -1: never block."""

    key: str
    limit: int | None
    amount: int
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"negative reservation {self!r}")

    @property
    def tracked_only(self) -> bool:
        return self.limit is None or self.limit == -1


class Reservation(Protocol):
    """What ``State.admit`` reads of a budget item: a ``BudgetItem``, or any object with
    these attributes (the budget guard passes its own lines, saving a copy per call)."""

    @property
    def key(self) -> str: ...

    @property
    def limit(self) -> int | None: ...  # None or -1: never block

    @property
    def amount(self) -> int: ...  # >= 0

    @property
    def ttl_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Settlement:
    """After the call: the budget value moves by ``actual - reserved``."""

    key: str
    reserved: int
    actual: int
    ttl_s: float | None = None


Delta = tuple[str, int, float | None]  # (budget key, value change, ttl_s): a Settlement's net


@dataclass(frozen=True, slots=True)
class RateCharge:
    """What ``admit`` took for a settling rate item (``RateItem.settles``: a tokens-per-minute
    limit charged the call's reservation): ``item.cost`` at time ``at``, as the sliding-window
    entry ``seq`` (0 for a token bucket), in the backend ``owner``. At settle the charge is
    corrected to the tokens the call used (``RateFix``): the difference goes back to the bucket
    (never above its capacity) or the window entry becomes the actual (dropped at 0)."""

    item: RateItem
    at: float
    seq: int
    owner: object


RateFix = tuple[RateCharge, int]  # (a charge, the tokens actually used)


@dataclass(slots=True)
class Admission:
    """Outcome of :meth:`State.admit`.

    ``failed_index`` indexes ``rates`` (reason 'rate') or ``budgets`` (reason 'budget').
    ``retry_after_s`` is set for 'rate' and 'unavailable'; ``math.inf`` when the cost can never
    fit (cost above the bucket's burst or the window's limit). ``budget_values`` are each budget
    key's committed + reserved value before this call (also on success).
    """

    ok: bool
    reason: Reason | None = None
    failed_index: int | None = None
    retry_after_s: float | None = None
    budget_values: list[int] = field(default_factory=list)
    charges: tuple[RateCharge, ...] = ()  # admitted: what settling rate items took


def condition_holds(values: Sequence[int], over: Bounds, under: Bounds) -> bool:
    """``admit_if``'s condition on the budget values before the call: some ``values[i] > b``
    for (i, b) in ``over``, and ``values[j] <= b`` for every (j, b) in ``under``."""
    return any(values[i] > b for i, b in over) and all(values[j] <= b for j, b in under)


class ConditionalAdmit:
    """``admit_if`` for a State whose ``admit`` takes the condition (``over``, ``under``) and
    checks it in the same atomic step as the reservation."""

    def admit(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
        over: Bounds | None = None,
        under: Bounds = (),
    ) -> Admission:
        raise NotImplementedError

    def admit_if(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
        *,
        over: Bounds,
        under: Bounds = (),
    ) -> Admission:
        """``admit``, only when the budget values it reads meet ``condition_holds(values,
        over, under)``; else reason 'condition', nothing reserved or taken."""
        return self.admit(rates, budgets, now, over, under)


def ttl_ms(ttl_s: float | None) -> int:
    """Seconds to whole milliseconds for PEXPIRE; 0 means "no expiry"."""
    if ttl_s is None or ttl_s <= 0:
        return 0
    return max(1, math.ceil(ttl_s * 1000))


def bucket_ttl_s(item: RateItem) -> float:
    """After this long an untouched bucket is full again, so its key may go."""
    return item.capacity / item.rate + 1.0


@runtime_checkable
class State(Protocol):
    """What the router needs from live state. All amounts are ints."""

    def admit(
        self,
        rates: Sequence[RateItem],
        budgets: Sequence[Reservation],
        now: float | None = None,
    ) -> Admission: ...

    def settle(self, items: Sequence[Settlement]) -> list[int] | None:
        """Apply every settlement in one step; the bundled backends return each item's new
        value (in order), so callers need no second read."""
        ...

    def get_values(self, keys: Sequence[str]) -> list[int]: ...

    def add(self, key: str, amount: int, ttl_s: float | None = None) -> int: ...

    def breaker_allow(self, key: str, now: float | None = None) -> BreakerState: ...

    def breaker_record(
        self,
        key: str,
        success: bool,
        threshold: int,
        cooldown_s: float,
        now: float | None = None,
    ) -> BreakerState: ...

    def cache_get(self, key: str) -> bytes | None: ...

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def cache_delete(self, key: str) -> None: ...

    def incr(self, key: str, n: int = 1) -> int: ...

    def counters(self, prefix: str = "") -> dict[str, int]: ...

    def close(self) -> None: ...
