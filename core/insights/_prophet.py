"""The one place that touches Prophet: a lazy import, a quiet MAP fit and predictive samples.

Prophet (and cmdstanpy behind it) is imported inside functions only, so ``core`` stays
importable without it. Both interval widths come from ONE fit: the fit is a MAP estimate with
no built-in intervals, then one batch of predictive samples gives every quantile we need.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NOTABLE_DELTA = 0.01  # |delta| (scaled rate change) Prophet's own plots call notable
_RNG_LOCK = threading.Lock()  # Prophet samples from numpy's global RNG


def load_prophet() -> Any:
    """Import Prophet lazily and silence its INFO chatter (and cmdstanpy's)."""
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)  # "plotly failed" on import
    from cmdstanpy.utils import get_logger
    from prophet import Prophet

    get_logger().setLevel(logging.WARNING)  # get_logger() sets DEBUG on first call
    logging.getLogger("prophet").setLevel(logging.WARNING)
    return Prophet


@dataclass
class ProphetRun:
    """What a fit gives back: point forecast, sample quantiles, changepoints, timing."""

    ds: pd.DatetimeIndex
    yhat: np.ndarray
    bounds: dict[float, tuple[np.ndarray, np.ndarray]]  # width -> (lower, upper)
    changepoints: list[pd.Timestamp]
    fit_seconds: float


def fit_and_sample(
    history: pd.DataFrame,
    periods: int,
    widths: Sequence[float],
    *,
    freq: str = "D",
    weekly: bool = True,
    yearly: bool = False,
    daily: bool = False,
    holidays_country: str | None = None,
    samples: int = 300,
    seed: int = 0,
) -> ProphetRun:
    """Fit Prophet (MAP) on ``history`` (ds, y) and predict history + ``periods`` future steps."""
    prophet_cls = load_prophet()
    t0 = time.perf_counter()
    model = prophet_cls(
        weekly_seasonality=weekly,
        yearly_seasonality=yearly,
        daily_seasonality=daily,
        seasonality_mode="multiplicative",  # spend's weekly swing grows with its level
        uncertainty_samples=0,  # no intervals inside predict(); we sample once below
    )
    if holidays_country:
        model.add_country_holidays(country_name=holidays_country)
    # LBFGS even on short series: Prophet picks Newton below 100 rows, which is 10-30x
    # slower on smooth data; the backend still falls back to Newton if LBFGS fails.
    model.fit(history[["ds", "y"]], algorithm="LBFGS")
    future = model.make_future_dataframe(periods=periods, freq=freq, include_history=True)
    point = model.predict(future)
    model.uncertainty_samples = samples
    with _RNG_LOCK:  # seed the global RNG for repeatable samples, then restore it
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            draws = model.predictive_samples(future)["yhat"]
        finally:
            np.random.set_state(state)
    bounds = {}
    for w in widths:
        lo, hi = np.percentile(draws, [50 * (1 - w), 50 * (1 + w)], axis=1)
        bounds[w] = (lo, hi)
    deltas = np.asarray(model.params["delta"]).reshape(-1)
    cps = list(pd.to_datetime(model.changepoints)) if model.changepoints is not None else []
    notable = [ts for ts, d in zip(cps, deltas, strict=False) if abs(d) >= NOTABLE_DELTA]
    return ProphetRun(
        ds=pd.DatetimeIndex(future["ds"]),
        yhat=point["yhat"].to_numpy(dtype=float),
        bounds=bounds,
        changepoints=notable,
        fit_seconds=time.perf_counter() - t0,
    )
