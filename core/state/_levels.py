"""Rate-limit buckets as they are now, and resetting them (REST ``GET/DELETE /limits``).

``rate_levels(state, limit)`` lists every live bucket of one rate limit (one per user, org,
... value): how much of the limit is used now. A token bucket's use is its capacity minus
the tokens it holds after refilling to now; a sliding window's is the cost inside the
window. ``reset_rates(state, limit_id)`` deletes the buckets (they start full again).
Memory state is per process: its levels are this process's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import clock
from core.control import RateLimit
from core.state.base import make_key
from core.state.memory import MemoryState
from core.state.redis_state import RedisState
from core.state.resilient import ResilientState
from core.state.shared import SharedState


@dataclass(frozen=True, slots=True)
class BucketLevel:
    limit_id: str
    value: str  # the scope value (a user, an org, ...)
    used: float  # of the limit, now
    limit: int
    window_s: int


def live_backend(state: Any) -> Any:
    """The backend a state answers from now (a resilient state's primary or fallback; a shared
    state's in-process part, where rate buckets live)."""
    if isinstance(state, ResilientState):
        return state.primary if state.healthy else state.fallback
    if isinstance(state, SharedState):  # rate buckets live in process memory
        return state.local
    return state


def _prefixes(prefix: str, rl: RateLimit) -> tuple[str, str]:
    base = f"rl:{rl.id}:{rl.scope}:"
    return make_key(prefix, "rt", base), make_key(prefix, "rw", base)


def _token_use(rl: RateLimit, tokens: float, ts: float, now: float) -> float:
    cap = rl.limit if rl.burst is None else rl.burst
    rate = rl.limit / rl.window_s
    return max(0.0, cap - min(float(cap), tokens + max(0.0, now - ts) * rate))


def rate_levels(state: Any, rl: RateLimit) -> list[BucketLevel]:
    backend = live_backend(state)
    now = clock.timestamp()
    rt, rw = _prefixes(backend.prefix, rl)
    out: list[BucketLevel] = []
    if isinstance(backend, MemoryState):
        with backend._lock:
            items = [(k, v) for k, v in backend._data.items() if k.startswith((rt, rw))]
        for k, v in items:
            if k.startswith(rt) and rl.algorithm == "token_bucket":
                used = _token_use(rl, v[0], v[1], now)
            elif k.startswith(rw):
                used = float(sum(c for t, _s, c in v.entries if t > now - rl.window_s))
            else:
                continue
            value = _value(k, rt if k.startswith(rt) else rw)
            out.append(BucketLevel(rl.id, value, used, rl.limit, rl.window_s))
    elif isinstance(backend, RedisState):
        client: Any = backend.client
        if clock.is_system():  # else a pinned clock, which the guard passes to the scripts too
            now = _server_now(client, now)  # the clock its scripts refill and expire by
        if rl.algorithm == "token_bucket":
            for k in client.scan_iter(match=rt + "*", count=500):
                t, ts = client.hmget(k, "t", "ts")
                if t is not None:
                    used = _token_use(rl, float(t), float(ts), now)
                    out.append(BucketLevel(rl.id, _value(k, rt), used, rl.limit, rl.window_s))
        else:
            for k in client.scan_iter(match=rw + "*", count=500):
                name = k.decode() if isinstance(k, bytes) else k
                if name.endswith("|m"):
                    continue
                live = client.zrangebyscore(name, f"({now - rl.window_s}", "+inf")
                used = float(sum(int(m.decode().rsplit(":", 1)[1]) for m in live))
                out.append(BucketLevel(rl.id, _value(name, rw), used, rl.limit, rl.window_s))
    return sorted(out, key=lambda b: (-b.used, b.value))


def _server_now(client: Any, default: float) -> float:
    """Redis's own TIME, the clock the rate scripts read (a host's clock may be off by
    seconds); a cluster answers per node (any one will do); ``default`` when the reply is
    not a (sec, usec) pair."""
    got = client.time()
    if isinstance(got, dict):
        got = next(iter(got.values()), None)
    if isinstance(got, list | tuple) and len(got) == 2:
        return int(got[0]) + int(got[1]) / 1e6
    return default


def _value(key: Any, prefix: str) -> str:
    name = key.decode() if isinstance(key, bytes) else str(key)
    return name[len(prefix) :]


def reset_rates(state: Any, rl: RateLimit) -> int:
    """Delete every bucket of ``rl`` (on both backends of a resilient state, its fallback
    alone while Redis is down); how many."""
    backends: list[Any] = [state]
    if isinstance(state, ResilientState):
        backends = [state.fallback, state.primary] if state.healthy else [state.fallback]
    if isinstance(state, SharedState):
        backends = [state.local]
    removed = 0
    for backend in backends:
        rt, rw = _prefixes(backend.prefix, rl)
        if isinstance(backend, MemoryState):
            with backend._lock:
                doomed = [k for k in backend._data if k.startswith((rt, rw))]
                for k in doomed:
                    backend._delete(k)
            removed += len(doomed)
        elif isinstance(backend, RedisState):
            client: Any = backend.client
            keys = [*client.scan_iter(match=rt + "*"), *client.scan_iter(match=rw + "*")]
            if keys:  # a sliding window is two keys (its log and ``|m``): one bucket
                backend.client.delete(*keys)
                removed += sum(not _value(k, "").endswith("|m") for k in keys)
    return removed
