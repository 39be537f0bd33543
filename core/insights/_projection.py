"""Daily spend history in, one projection out: Prophet when there is enough data, else run-rate.

Shared by the forecast itself and by its backtest, so both use exactly the same method.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from core import clock
from core.errors import ConfigError

MIN_DAYS = 14  # fewer days *with spend* than this: run-rate, not Prophet
IDLE_DAYS = 14  # no spend for this many days up to the end of history: "no spend since"
RUN_RATE_DAYS = 7
YEARLY_MIN_DAYS = 730  # yearly seasonality needs two full cycles
RUN_RATE_MIN_SPREAD = 0.10  # run-rate interval: at least +-10% of the rate per sigma


def interval_label(width: float) -> str:
    """0.8 -> '80', 0.95 -> '95', 0.995 -> '99.5' (column suffix)."""
    return f"{width * 100:g}"


@dataclass
class Prepared:
    frame: pd.DataFrame  # ds (naive midnight), y (float); one row per day, gaps filled with 0
    filled_days: int


def prepare_history(history: pd.DataFrame) -> Prepared:
    """Normalise (ds, y) — or (ds, cost_usd) — to one row per calendar day, gaps as $0."""
    if not isinstance(history, pd.DataFrame) or "ds" not in history.columns:
        raise ConfigError("history must be a DataFrame with columns ds, y", field="history")
    ycol = "y" if "y" in history.columns else "cost_usd" if "cost_usd" in history.columns else ""
    if not ycol:
        raise ConfigError("history needs a y (daily USD) column", field="history")
    try:
        ds = pd.to_datetime(history["ds"])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"history.ds is not a date column: {exc}", field="history") from exc
    if isinstance(ds.dtype, pd.DatetimeTZDtype):
        ds = ds.dt.tz_localize(None)  # keep wall-clock days
    y = pd.to_numeric(history[ycol].astype(float), errors="coerce").fillna(0.0)
    daily = y.groupby(ds.dt.normalize().to_numpy()).sum()
    if daily.empty:
        return Prepared(pd.DataFrame({"ds": pd.to_datetime([]), "y": []}), 0)
    full = pd.date_range(daily.index.min(), daily.index.max(), freq="D")
    filled = len(full) - len(daily)
    daily = daily.reindex(full, fill_value=0.0)
    frame = pd.DataFrame({"ds": full.as_unit("ns"), "y": daily.to_numpy(dtype=float)})
    return Prepared(frame, filled)


@dataclass
class Projection:
    """History + future rows: ds, yhat, lower_X, upper_X, is_history, y (all clipped at 0)."""

    frame: pd.DataFrame
    method: str  # 'prophet' | 'run_rate'
    message: str
    changepoints: list[pd.Timestamp]
    fit_seconds: float


@dataclass(frozen=True)
class Activity:
    spend_days: int  # days with spend > 0 (not calendar days since the first call)
    last_spend: pd.Timestamp | None  # the last day with spend
    idle_days: int  # days after last_spend up to the end of the history

    @property
    def fit(self) -> bool:
        """Enough recent spend to fit (and backtest) a model rather than a run-rate."""
        return self.spend_days >= MIN_DAYS and self.idle_days < IDLE_DAYS

    def message(self) -> str:
        if self.last_spend is None:
            return short_history_message(0)
        if self.idle_days >= IDLE_DAYS:
            return (
                f"no spend since {self.last_spend:%Y-%m-%d} ({self.idle_days:,} days);"
                " showing a $0 run-rate, not a forecast"
            )
        return short_history_message(self.spend_days)


def activity(hist: pd.DataFrame) -> Activity:
    """Days with spend and how long the history has been idle (from prepare_history)."""
    spent = hist.loc[hist["y"] > 0, "ds"] if len(hist) else hist["ds"]
    if spent.empty:
        return Activity(0, None, len(hist))
    last = pd.Timestamp(spent.iloc[-1])
    return Activity(len(spent), last, int((hist["ds"].iloc[-1] - last).days))


def project(
    hist: pd.DataFrame,
    periods: int,
    widths: Sequence[float],
    *,
    holidays_country: str | None = None,
    samples: int = 300,
    seed: int = 0,
) -> Projection:
    n = len(hist)
    act = activity(hist)
    if not act.fit:
        return run_rate(hist, periods, widths, reason=act.message())
    from core.insights._prophet import fit_and_sample

    try:
        run = fit_and_sample(
            hist,
            periods,
            widths,
            yearly=n >= YEARLY_MIN_DAYS,
            holidays_country=holidays_country,
            samples=samples,
            seed=seed,
        )
    except Exception as exc:  # a failed Stan fit must not take the page down
        reason = f"Prophet fit failed ({type(exc).__name__}: {exc}); showing a run-rate projection"
        return run_rate(hist, periods, widths, reason=reason)
    frame = pd.DataFrame({"ds": run.ds.as_unit("ns"), "yhat": np.clip(run.yhat, 0, None)})
    for w, (lo, hi) in run.bounds.items():
        frame[f"lower_{interval_label(w)}"] = np.clip(lo, 0, None)
        frame[f"upper_{interval_label(w)}"] = np.clip(hi, 0, None)
    return Projection(_with_history(frame, hist), "prophet", "", run.changepoints, run.fit_seconds)


def short_history_message(n: int) -> str:
    if n == 0:
        return f"no history yet; showing a $0 run-rate — forecasts need {MIN_DAYS}+ days"
    return (
        f"only {n} days with spend; showing a run-rate projection — forecasts need"
        f" {MIN_DAYS}+ days with spend"
    )


def run_rate(
    hist: pd.DataFrame, periods: int, widths: Sequence[float], *, reason: str
) -> Projection:
    """Mean of the last up-to-7 days, flat, with an interval that widens like sqrt(1 + h/7)."""
    t0 = time.perf_counter()
    recent = hist["y"].to_numpy(dtype=float)[-RUN_RATE_DAYS:]
    rate = float(recent.mean()) if len(recent) else 0.0
    sd = float(recent.std(ddof=1)) if len(recent) > 1 else 0.0
    sd = max(sd, RUN_RATE_MIN_SPREAD * rate)
    start = hist["ds"].iloc[-1] + pd.Timedelta(days=1) if len(hist) else pd.Timestamp(clock.today())
    future = pd.date_range(start.normalize(), periods=periods, freq="D").as_unit("ns")
    h = np.arange(1, periods + 1, dtype=float)
    frame = pd.DataFrame({"ds": future, "yhat": np.full(periods, rate)})
    for w in widths:
        half = NormalDist().inv_cdf(0.5 + w / 2) * sd * np.sqrt(1.0 + h / RUN_RATE_DAYS)
        frame[f"lower_{interval_label(w)}"] = np.clip(rate - half, 0, None)
        frame[f"upper_{interval_label(w)}"] = rate + half
    past = hist[["ds"]].assign(yhat=np.nan)
    for col in frame.columns[2:]:
        past[col] = np.nan
    frame = pd.concat([past, frame], ignore_index=True) if len(past) else frame
    return Projection(_with_history(frame, hist), "run_rate", reason, [], time.perf_counter() - t0)


def _with_history(frame: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    last = hist["ds"].iloc[-1] if len(hist) else pd.Timestamp.min
    frame["is_history"] = frame["ds"] <= last
    frame["y"] = frame["ds"].map(hist.set_index("ds")["y"]).astype(float)
    return frame.reset_index(drop=True)
