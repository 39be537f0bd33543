"""Analytics timings: one 90-day forecast from a year of history, 20 series, an anomaly scan.

Targets (2 cores): forecast_90d_median_s <= 1 s, forecast_20_series_s <= 8 s,
anomaly_scan_median_ms <= 100 (medians of the repeats).
Prophet's one-off import is reported on its own (``prophet_import_s``) and kept out of the rest.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd


def _series(days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    y = 80 + seed + 0.2 * t + 15 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 4, days)
    return pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=days), "y": y})


def _orgs(n_orgs: int, days: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=days)
    t = np.arange(days)
    frames = [
        pd.DataFrame(
            {
                "ds": ds,
                "key": f"org{k}",
                "value": 100 * (1 + 0.2 * np.sin(2 * np.pi * t / 7)) * rng.lognormal(0, 0.1, days),
            }
        )
        for k in range(n_orgs)
    ]
    return pd.concat(frames, ignore_index=True)


def _median(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(quick: bool) -> dict[str, float]:
    from core.insights import forecast_many, forecast_spend, scan
    from core.insights._prophet import load_prophet

    t0 = time.perf_counter()
    load_prophet()
    out = {"prophet_import_s": round(time.perf_counter() - t0, 3)}
    year = _series(365, 0)
    forecast_spend(year, 90, backtest=False)  # warm-up: Stan model load
    repeat = 1 if quick else 3
    out["forecast_90d_median_s"] = round(
        _median(lambda: forecast_spend(year, 90, backtest=False), repeat), 3
    )
    out["forecast_90d_with_backtest_median_s"] = round(
        _median(lambda: forecast_spend(year, 90), repeat), 3
    )
    n_series = 5 if quick else 20
    frames = {i: _series(365, i) for i in range(n_series)}
    t0 = time.perf_counter()
    forecast_many(frames, 90)
    out["forecast_20_series_s" if not quick else "forecast_5_series_s"] = round(
        time.perf_counter() - t0, 3
    )
    orgs = _orgs(10 if quick else 50, 365)
    scan(orgs)  # warm-up
    out["anomaly_scan_median_ms"] = round(_median(lambda: scan(orgs), 5) * 1000, 2)
    out["anomaly_scan_iqr_median_ms"] = round(_median(lambda: scan(orgs, "iqr"), 5) * 1000, 2)
    return out
