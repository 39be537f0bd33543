"""Forecasts are recomputed only when the data changes.

``ForecastCache`` is an in-process LRU keyed by (dimension, filters, data_version, horizon,
params). ``data_version`` is whatever the usage log bumps when new events land (a segment
count, a max event id, a file mtime): same version -> same forecast object.
``forecast_many`` forecasts one series per key (per org, per model, ...).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pandas as pd

from core.insights._forecast_model import Forecast, forecast_spend

K = TypeVar("K", bound=Hashable)
CacheKey = tuple[str, str, str, int, str]


def canonical(value: Any) -> str:
    """A stable repr: mappings sorted by key, so {'a':1,'b':2} == {'b':2,'a':1}."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {canonical(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return "[" + ", ".join(canonical(v) for v in items) + "]"
    return repr(value)


class ForecastCache:
    """Thread-safe LRU of forecasts. Treat returned forecasts as read-only (they are shared)."""

    def __init__(self, maxsize: int = 128) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[CacheKey, Forecast] = OrderedDict()
        self._lock = threading.Lock()

    def key(
        self,
        dimension: str,
        filters: Any,
        data_version: Hashable,
        horizon: int,
        params: Mapping[str, Any] | None = None,
    ) -> CacheKey:
        return (dimension, canonical(filters), repr(data_version), horizon, canonical(params or {}))

    def get_or_compute(self, key: CacheKey, compute: Callable[[], Forecast]) -> Forecast:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        value = compute()  # outside the lock: fits are slow; a duplicate race is harmless
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value

    def forecast(
        self,
        history: pd.DataFrame,
        horizon_days: int,
        *,
        data_version: Hashable,
        dimension: str = "total",
        filters: Any = None,
        **params: Any,
    ) -> Forecast:
        """``forecast_spend(history, horizon_days, **params)``, cached."""
        key = self.key(dimension, filters, data_version, horizon_days, params)
        return self.get_or_compute(key, lambda: forecast_spend(history, horizon_days, **params))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def forecast_many(
    frames: Mapping[K, pd.DataFrame],
    horizon_days: int,
    *,
    workers: int = 2,
    cache: ForecastCache | None = None,
    data_version: Hashable = None,
    dimension: str = "key",
    filters: Any = None,
    **params: Any,
) -> dict[K, Forecast]:
    """One forecast per key. Fits run in a small thread pool: the Stan optimiser is a
    subprocess, so two threads keep two cores busy without a process pool's start-up cost.
    With ``cache`` (and a ``data_version``) unchanged series are not refitted."""

    def one(key: K) -> Forecast:
        history = frames[key]
        if cache is None:
            return forecast_spend(history, horizon_days, **params)
        sub = {"filters": filters, "key": key}
        return cache.forecast(
            history,
            horizon_days,
            data_version=data_version,
            dimension=dimension,
            filters=sub,
            **params,
        )

    keys = list(frames)
    if workers <= 1 or len(keys) <= 1:
        return {k: one(k) for k in keys}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(keys, pool.map(one, keys), strict=True))
