"""``x-ratelimit-*`` headers of a key's rate limits, as OpenAI sends them.

    x-ratelimit-limit-requests: 600        the key's requests per minute
    x-ratelimit-remaining-requests: 598    left now, after this call
    x-ratelimit-reset-requests: 0.200s     until the bucket is full again
    (and -tokens for a tokens-per-minute limit)

The limits are the enabled rate limits of scope ``key`` that name this key (or every key);
when two of one metric apply, the one with the least left is shown. Levels are read after the
Router admitted the call: from the process's memory state, or with one pipelined Redis round
trip. A key without rate limits gets no such headers and costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from core import clock
from core.control import RateLimit, VirtualKey
from core.ratelimits import rate_key
from core.state import live_backend
from core.state.base import make_key
from core.state.memory import MemoryState
from core.state.redis_state import RedisState

from ._asgi import HeaderList

Level = tuple[float, float]  # (remaining, seconds until full)


def key_limits(all_limits: Sequence[RateLimit], key: VirtualKey) -> list[RateLimit]:
    return [
        r
        for r in all_limits
        if r.enabled and r.scope == "key" and r.scope_value in (key.name, None)
    ]


def metric_of(r: RateLimit) -> bytes:
    return b"requests" if r.metric == "requests" else b"tokens"


def static_headers(limits: Sequence[RateLimit]) -> HeaderList:
    """x-ratelimit-limit-* only (when the levels cannot be read)."""
    return [(b"x-ratelimit-limit-" + metric_of(r), str(r.limit).encode()) for r in limits]


def refused_headers(limits: Sequence[RateLimit], err: Any) -> HeaderList:
    """A refused call's x-ratelimit-limit-*; for a 429, which metric ran out and its reset."""
    out = static_headers(limits)
    if err.status == 429 and err.retry_after is not None:  # which of the key's limits ran out
        metric = b"tokens" if " tokens per " in err.message else b"requests"
        out.append((b"x-ratelimit-remaining-" + metric, b"0"))
        out.append((b"x-ratelimit-reset-" + metric, f"{err.retry_after:.3f}s".encode()))
    return out


def headers(state: Any, limits: Sequence[RateLimit], key: VirtualKey) -> HeaderList:
    """limit, remaining and reset of each metric (the tightest limit of each)."""
    if not limits:
        return []
    try:
        levels = read_levels(state, limits, key.name)
    except Exception:  # a state outage must not fail an answered call
        return static_headers(limits)
    best: dict[bytes, tuple[RateLimit, Level]] = {}
    for r, level in zip(limits, levels, strict=True):
        m = metric_of(r)
        if m not in best or level[0] < best[m][1][0]:
            best[m] = (r, level)
    out: HeaderList = []
    for m, (r, (left, reset)) in best.items():
        out.append((b"x-ratelimit-limit-" + m, str(r.limit).encode()))
        out.append((b"x-ratelimit-remaining-" + m, str(max(0, math.floor(left))).encode()))
        out.append((b"x-ratelimit-reset-" + m, f"{max(0.0, reset):.3f}s".encode()))
    return out


def read_levels(state: Any, limits: Sequence[RateLimit], value: str) -> list[Level]:
    backend = live_backend(state)
    now = clock.timestamp()
    if isinstance(backend, MemoryState):
        return [_memory(backend, r, value, now) for r in limits]
    if isinstance(backend, RedisState):
        return _redis(backend, limits, value, now)
    return [(float(r.limit), 0.0) for r in limits]


def _capacity(r: RateLimit) -> float:
    return float(r.limit if r.burst is None else r.burst)


def _bucket(r: RateLimit, tokens: float, ts: float, now: float) -> Level:
    cap, rate = _capacity(r), r.limit / r.window_s
    held = min(cap, tokens + max(0.0, now - ts) * rate)
    return held, (cap - held) / rate


def _window(r: RateLimit, used: float, newest: float | None, now: float) -> Level:
    reset = 0.0 if newest is None else newest + r.window_s - now
    return r.limit - used, reset


def _memory(state: MemoryState, r: RateLimit, value: str, now: float) -> Level:
    bucket = rate_key(r, value)
    if r.algorithm == "token_bucket":
        with state._lock:
            st = state._data.get(make_key(state.prefix, "rt", bucket))
        return (_capacity(r), 0.0) if st is None else _bucket(r, st[0], st[1], now)
    with state._lock:
        log = state._data.get(make_key(state.prefix, "rw", bucket))
        live = [] if log is None else [e for e in log.entries if e[0] > now - r.window_s]
    return _window(r, float(sum(e[2] for e in live)), live[-1][0] if live else None, now)


def _redis(state: RedisState, limits: Sequence[RateLimit], value: str, now: float) -> list[Level]:
    pipe: Any = state.client.pipeline(transaction=False)
    for r in limits:
        bucket = rate_key(r, value)
        if r.algorithm == "token_bucket":
            pipe.hmget(make_key(state.prefix, "rt", bucket), "t", "ts")
        else:
            k = make_key(state.prefix, "rw", bucket)
            pipe.hget(k + "|m", "sum")
            pipe.zrange(k, -1, -1, withscores=True)
    got = iter(pipe.execute())
    out: list[Level] = []
    for r in limits:
        if r.algorithm == "token_bucket":
            t, ts = next(got)
            out.append((_capacity(r), 0.0) if t is None else _bucket(r, float(t), float(ts), now))
        else:
            total, newest = next(got), next(got)
            last = float(newest[0][1]) if newest else None
            used = float(total) if total is not None and last is not None else 0.0
            out.append(_window(r, used, last, now))
    return out
