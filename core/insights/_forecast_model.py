"""Spend forecasts: Prophet with both interval widths from one fit, a backtest with each one.

    forecast_spend(history (ds, y daily USD), horizon_days) -> Forecast

- 14+ days *with spend*: Prophet, MAP fit, weekly seasonality (yearly from 2 years), no daily
  seasonality; intervals are quantiles of one batch of predictive samples; clipped at 0.
- Fewer days with spend (calendar days since the first call do not count): a run-rate
  projection (mean of the last up-to-7 days) and a message saying why.
- No spend in the last 14+ days of the history (data that ended long ago): no model is fitted
  to the idle days; a $0 run-rate and "no spend since DATE".
- Missing days count as $0 (the message says so when more than a few are missing).
- Every forecast carries a backtest (see ``core.insights._backtest``) unless ``backtest=False``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd

from core.errors import ConfigError
from core.insights._backtest import Backtest, default_holdout, run_backtest
from core.insights._projection import activity, prepare_history, project, run_rate

MIN_HORIZON, MAX_HORIZON = 7, 180
MANY_MISSING_SHARE = 0.10


@dataclass(frozen=True)
class Forecast:
    """One forecast. Treat ``frame`` as read-only: cached forecasts are shared."""

    frame: pd.DataFrame  # ds, yhat, lower_80, upper_80, lower_95, upper_95, is_history, y
    changepoints: list[date]  # days where the fitted trend rate changed notably
    method: str  # 'prophet' | 'run_rate'
    message: str  # why run-rate, filled gaps, failed fits; '' when nothing to say
    backtest: Backtest | None
    fit_seconds: float
    intervals: tuple[float, ...] = (0.80, 0.95)

    @property
    def future(self) -> pd.DataFrame:
        return self.frame[~self.frame["is_history"]]

    @property
    def last_history_day(self) -> date | None:
        hist = self.frame.loc[self.frame["is_history"], "ds"]
        return hist.iloc[-1].date() if len(hist) else None


def validate(
    horizon_days: int, intervals: Sequence[float], backtest_days: int | None
) -> tuple[float, ...]:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int):
        raise ConfigError("horizon_days must be an integer", field="horizon_days")
    if not MIN_HORIZON <= horizon_days <= MAX_HORIZON:
        raise ConfigError(
            f"horizon_days must be between {MIN_HORIZON} and {MAX_HORIZON}, got {horizon_days}",
            field="horizon_days",
        )
    widths = tuple(sorted({float(w) for w in intervals}))
    if not widths or any(not 0 < w < 1 for w in widths):
        raise ConfigError("intervals must be widths between 0 and 1", field="intervals")
    if backtest_days is not None and not 1 <= backtest_days <= MAX_HORIZON:
        raise ConfigError(
            f"backtest_days must be between 1 and {MAX_HORIZON}", field="backtest_days"
        )
    return widths


def check_country(country: str | None) -> None:
    """Fail early (not as a silent run-rate fallback) on a country Prophet has no holidays for."""
    if not country:
        return
    try:
        import holidays  # Prophet's own dependency; imported lazily like Prophet
    except ImportError:
        return
    if country not in holidays.list_supported_countries():
        raise ConfigError(f"no holiday calendar for {country!r}", field="holidays_country")


def forecast_spend(
    history: pd.DataFrame,
    horizon_days: int,
    *,
    intervals: Sequence[float] = (0.80, 0.95),
    holidays_country: str | None = None,
    backtest_days: int | None = None,
    backtest: bool = True,
    uncertainty_samples: int = 300,
    seed: int = 0,
) -> Forecast:
    """Forecast daily spend ``horizon_days`` ahead (7..180) from a (ds, y) daily history."""
    widths = validate(horizon_days, intervals, backtest_days)
    check_country(holidays_country)
    prep = prepare_history(history)
    hist = prep.frame
    t0 = time.perf_counter()
    proj = project(
        hist,
        horizon_days,
        widths,
        holidays_country=holidays_country,
        samples=uncertainty_samples,
        seed=seed,
    )
    fit_seconds = time.perf_counter() - t0
    notes = [proj.message] if proj.message else []
    n = len(hist)
    if prep.filled_days and (prep.filled_days > 7 or prep.filled_days > MANY_MISSING_SHARE * n):
        notes.append(f"{prep.filled_days} of {n} days had no data and were counted as $0")
    bt = None
    if backtest and activity(hist).fit:
        holdout = backtest_days or default_holdout(n)
        bt = run_backtest(
            hist,
            holdout,
            widths,
            holidays_country=holidays_country,
            samples=uncertainty_samples,
            seed=seed,
        )
        if bt is None:
            notes.append("not enough history to backtest")
    return Forecast(
        frame=proj.frame,
        changepoints=[ts.date() for ts in proj.changepoints],
        method=proj.method,
        message="; ".join(notes),
        backtest=bt,
        fit_seconds=fit_seconds,
        intervals=widths,
    )


def run_rate_forecast(history: pd.DataFrame, horizon_days: int, reason: str = "") -> Forecast:
    """A run-rate projection on purpose (e.g. a fast preview); no Prophet, no backtest."""
    widths = validate(horizon_days, (0.80, 0.95), None)
    hist = prepare_history(history).frame
    proj = run_rate(hist, horizon_days, widths, reason=reason or "run-rate projection")
    return Forecast(proj.frame, [], proj.method, proj.message, None, proj.fit_seconds, widths)
