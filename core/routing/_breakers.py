"""The shared circuit breakers as one routing engine sees them.

The breaker lives in ``State`` (shared by every process with Redis). Asking it for every
candidate of every call costs a round trip each, so a breaker seen 'closed' is taken as closed
for ``closed_ttl_s`` (250 ms by default) without asking again: another process opening it is
seen that much later. Only 'closed' is remembered - 'open' and the single 'half_open' probe are
always decided by the state - and this engine's own 'open' result forgets it at once. The keys
still to ask go to the state in one call (``breaker_allow_many``: one round trip with Redis).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from core.state import BreakerState, State

CLOSED_TTL_S = 0.25  # a 'closed' breaker is re-asked of the state at most this often
MAX_KEYS = 4096


class BreakerView:
    """Mixin of RoutingEngine: its ``state``, ``clock`` and breaker bookkeeping."""

    state: State
    clock: Callable[[], float] | None
    closed_ttl_s: float
    _breaker: dict[str, BreakerState]  # last state seen, for health()
    _closed_until: dict[str, float]  # key -> monotonic time it counts as closed until
    _streak: dict[str, int]

    def _allow(self, keys: list[str]) -> list[BreakerState]:
        """Breaker state of each key: 'closed' seen within ``closed_ttl_s`` is reused; the
        others are asked of the state in one call (one round trip with Redis)."""
        mono = time.monotonic()
        until = self._closed_until
        out: list[BreakerState] = ["closed"] * len(keys)
        ask = [i for i, k in enumerate(keys) if until.get(k, 0.0) <= mono]
        if not ask:
            return out  # every one seen closed just now
        now = self.clock() if self.clock is not None else None
        asked = [keys[i] for i in ask]
        many = getattr(self.state, "breaker_allow_many", None)
        got = (
            many(asked, now)
            if many is not None
            else [self.state.breaker_allow(k, now) for k in asked]
        )
        for i, k, st in zip(ask, asked, got, strict=True):
            out[i] = st
            self._breaker[k] = st
            self._seen(k, st, mono)
        return out

    def _seen(self, key: str, st: BreakerState, mono: float) -> None:
        if st == "closed" and self.closed_ttl_s > 0:
            if len(self._closed_until) >= MAX_KEYS:
                self._closed_until.clear()
            self._closed_until[key] = mono + self.closed_ttl_s
        else:
            self._closed_until.pop(key, None)

    def _closed(self, keys: Sequence[str], mono: float) -> bool:
        """Was every one of ``keys`` seen closed within ``closed_ttl_s``?"""
        until = self._closed_until
        for k in keys:  # noqa: SIM110 - a plain loop: no generator on the hot path
            if until.get(k, 0.0) <= mono:
                return False
        return True

    def _open_why(self, key: str) -> str:
        n = self._streak.get(key, 0)
        return f"circuit open ({n} consecutive failures)" if n else "circuit open"
