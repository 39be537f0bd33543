"""MemoryState's response cache (an LRU with expiry) and counters."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from core.state.base import make_key


class CacheAndCounters:
    """Mixin of MemoryState: the response cache and the counters, under its one lock."""

    prefix: str
    max_cache_entries: int
    _lock: threading.Lock
    _cache: OrderedDict[str, tuple[bytes, float]]
    _counters: dict[str, int]

    def cache_get(self, key: str) -> bytes | None:
        with self._lock:
            return self._cache_get(make_key(self.prefix, "c", key))

    def cache_get_counted(self, key: str, hit: str, miss: str) -> bytes | None:
        """``cache_get`` that also adds 1 to counter ``hit`` (a value was found) or ``miss``."""
        with self._lock:
            value = self._cache_get(make_key(self.prefix, "c", key))
            name = miss if value is None else hit
            self._counters[name] = self._counters.get(name, 0) + 1
            return value

    def _cache_get(self, k: str) -> bytes | None:
        got = self._cache.get(k)
        if got is None:
            return None
        if got[1] <= time.monotonic():
            del self._cache[k]
            return None
        self._cache.move_to_end(k)
        return got[0]

    def cache_set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        with self._lock:
            self._cache_set(make_key(self.prefix, "c", key), value, ttl_s)

    def cache_set_counted(self, key: str, value: bytes, ttl_s: float, counter: str) -> None:
        """``cache_set`` that also adds 1 to ``counter``."""
        with self._lock:
            if ttl_s > 0:
                self._cache_set(make_key(self.prefix, "c", key), value, ttl_s)
            self._counters[counter] = self._counters.get(counter, 0) + 1

    def _cache_set(self, k: str, value: bytes, ttl_s: float) -> None:
        self._cache[k] = (bytes(value), time.monotonic() + ttl_s)
        self._cache.move_to_end(k)
        while len(self._cache) > self.max_cache_entries:
            self._cache.popitem(last=False)

    def cache_delete(self, key: str) -> None:
        with self._lock:
            self._cache.pop(make_key(self.prefix, "c", key), None)

    def incr(self, key: str, n: int = 1) -> int:
        with self._lock:
            value = self._counters.get(key, 0) + n
            self._counters[key] = value
            return value

    def counters(self, prefix: str = "") -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self._counters.items() if k.startswith(prefix)}

    def take_counters(self) -> dict[str, int]:
        """Read and clear every counter. For reconciliation."""
        with self._lock:
            out, self._counters = self._counters, {}
            return out
