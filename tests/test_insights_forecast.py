"""Forecasts on synthetic series with a KNOWN trend, weekly seasonality and noise."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from core.errors import ConfigError
from core.insights import (
    ForecastCache,
    exhaustion,
    forecast_many,
    forecast_spend,
    window_spend,
)
from core.insights._backtest import error_metric, seasonal_naive

START = date(2024, 1, 1)


def series(
    days: int,
    *,
    seed: int = 0,
    level: float = 100.0,
    slope: float = 0.4,
    weekly: float = 20.0,
    noise: float = 4.0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    y = level + slope * t + weekly * np.sin(2 * np.pi * t / 7) + rng.normal(0, noise, days)
    return pd.DataFrame({"ds": pd.date_range(START, periods=days, freq="D"), "y": y})


def test_prophet_beats_seasonal_naive_on_trend_plus_weekly() -> None:
    for seed in (1, 2):
        fc = forecast_spend(series(150, seed=seed), 30, backtest_days=21)
        bt = fc.backtest
        assert fc.method == "prophet" and bt is not None and bt.method == "prophet"
        assert bt.metric == "mape" and bt.mape is not None and bt.naive_mape is not None
        assert bt.mape < bt.naive_mape, (seed, bt)
        assert bt.mape < 0.05  # noise is ~3% of the level


def test_intervals_cover_near_nominal_over_seeds() -> None:
    cov80, cov95 = [], []
    for seed in (3, 4, 5):
        fc = forecast_spend(series(120, seed=seed, noise=8.0), 14, backtest_days=28)
        assert fc.backtest is not None
        cov80.append(fc.backtest.coverage_80)
        cov95.append(fc.backtest.coverage_95)
    assert np.mean(cov95) >= 0.80, cov95
    assert 0.55 <= np.mean(cov80) <= 1.0, cov80
    assert np.mean(cov95) >= np.mean(cov80)


def test_frame_columns_rows_and_clipping() -> None:
    hist = series(60, level=2.0, slope=-0.03, weekly=1.0, noise=1.5, seed=7)
    hist["y"] = hist["y"].clip(lower=0)
    fc = forecast_spend(hist, 45, backtest=False)
    f = fc.frame
    assert list(f.columns) == [
        "ds",
        "yhat",
        "lower_80",
        "upper_80",
        "lower_95",
        "upper_95",
        "is_history",
        "y",
    ]
    assert int(f["is_history"].sum()) == 60 and int((~f["is_history"]).sum()) == 45
    fut = fc.future
    assert fut["y"].isna().all() and f.loc[f["is_history"], "y"].notna().all()
    for col in ("yhat", "lower_80", "upper_80", "lower_95", "upper_95"):
        assert (fut[col] >= 0).all(), col
    assert (fut["lower_95"] <= fut["lower_80"] + 1e-9).all()
    assert (fut["upper_80"] <= fut["upper_95"] + 1e-9).all()
    assert fc.backtest is None and fc.fit_seconds > 0


def test_changepoint_found_near_a_rate_change() -> None:
    t = np.arange(200)
    y = np.where(t < 120, 100 + 0.1 * t, 112 + 2.0 * (t - 120))
    hist = pd.DataFrame({"ds": pd.date_range(START, periods=200), "y": y})
    fc = forecast_spend(hist, 14, backtest=False)
    change = START + timedelta(days=120)
    assert any(abs((cp - change).days) <= 15 for cp in fc.changepoints), fc.changepoints


def test_short_history_gives_run_rate_with_message() -> None:
    hist = series(10, seed=9)
    fc = forecast_spend(hist, 30)
    assert fc.method == "run_rate"
    assert "only 10 days with spend" in fc.message and "14+ days" in fc.message
    fut = fc.future
    assert len(fut) == 30
    assert fut["yhat"].iloc[0] == pytest.approx(hist["y"].iloc[-7:].mean())
    width = fut["upper_95"] - fut["lower_95"]
    assert width.iloc[-1] > width.iloc[0]  # the interval widens
    assert fc.backtest is None


@pytest.mark.parametrize("horizon", [0, 6, 181, 365])
def test_horizon_out_of_range_is_config_error(horizon: int) -> None:
    with pytest.raises(ConfigError) as err:
        forecast_spend(series(10), horizon)
    assert err.value.field == "horizon_days" and "horizon_days" in str(err.value)


def test_horizon_bounds_are_allowed() -> None:
    assert len(forecast_spend(series(5), 7).future) == 7
    assert len(forecast_spend(series(5), 180).future) == 180


def test_missing_days_filled_as_zero_and_reported() -> None:
    hist = series(60, seed=11)
    gap = hist.drop(index=range(20, 35))
    fc = forecast_spend(gap, 14, backtest=False)
    assert "15 of 60 days had no data" in fc.message
    filled = fc.frame[fc.frame["is_history"]].set_index("ds")["y"]
    assert len(filled) == 60 and (filled.iloc[20:35] == 0).all()


def test_exhaustion_of_a_linear_series_matches_the_analytical_day() -> None:
    a, b, n = 50.0, 2.0, 60  # y_t = a + b t, t = 0..59
    t = np.arange(n)
    hist = pd.DataFrame({"ds": pd.date_range(START, periods=n), "y": a + b * t})
    fc = forecast_spend(hist, 60, backtest=False)
    window_start, window_end = START + timedelta(days=45), START + timedelta(days=104)
    last = START + timedelta(days=n - 1)
    spent = window_spend(hist, window_start)
    assert spent == pytest.approx(sum(a + b * i for i in range(45, n)))
    limit = spent + 4000.0
    # sum_{j=1..k} (a + b (n - 1 + j)) = k (a + b (n - 1)) + b k (k + 1) / 2 = 4000
    c0 = a + b * (n - 1)
    k = (-(c0 + b / 2) + math.sqrt((c0 + b / 2) ** 2 + 2 * b * 4000.0)) / b
    exact = last + timedelta(days=math.ceil(k))
    ex = exhaustion(
        fc, spent_so_far=spent, limit=limit, window_start=window_start, window_end=window_end
    )
    assert ex.date is not None and abs((ex.date - exact).days) <= 1, (ex, exact)
    assert ex.earliest is not None and ex.earliest <= ex.date
    assert ex.latest is None or ex.latest >= ex.date
    days_left = (window_end - last).days
    total = spent + sum(a + b * (n - 1 + j) for j in range(1, days_left + 1))
    assert float(ex.projected_total_usd) == pytest.approx(total, rel=0.01)
    assert ex.will_exceed and not ex.already_exceeded


def test_exhaustion_edges() -> None:
    hist = pd.DataFrame({"ds": pd.date_range(START, periods=20), "y": 10.0})
    fc = forecast_spend(hist, 30, backtest=False)
    last = START + timedelta(days=19)
    ws, we = START + timedelta(days=15), START + timedelta(days=44)
    far = exhaustion(fc, spent_so_far=50, limit=10_000, window_start=ws, window_end=we)
    assert far.date is None and far.latest is None and not far.will_exceed
    assert float(far.projected_total_usd) == pytest.approx(50 + 25 * 10.0, rel=0.01)
    done = exhaustion(fc, spent_so_far=120, limit=100, window_start=ws, window_end=we)
    assert done.already_exceeded and done.date == last
    beyond = exhaustion(
        fc, spent_so_far=50, limit=10_000, window_start=ws, window_end=we + timedelta(days=20)
    )
    assert "forecast ends" in beyond.message
    assert float(beyond.projected_total_usd) == pytest.approx(50 + 45 * 10.0, rel=0.01)
    with pytest.raises(ConfigError):
        exhaustion(fc, spent_so_far=0, limit=0, window_start=ws, window_end=we)


def test_cache_hits_on_same_data_version_and_misses_after_change() -> None:
    cache = ForecastCache(maxsize=2)
    hist = series(10)
    first = cache.forecast(hist, 14, data_version=1, filters={"org": "a", "model": "m"})
    again = cache.forecast(hist, 14, data_version=1, filters={"model": "m", "org": "a"})
    assert again is first and (cache.hits, cache.misses) == (1, 1)
    changed = cache.forecast(series(11), 14, data_version=2, filters={"org": "a", "model": "m"})
    assert changed is not first and cache.misses == 2
    assert len(changed.future) == 14 and changed.frame["is_history"].sum() == 11
    other = cache.forecast(hist, 14, data_version=1, filters={"org": "b"})
    assert other is not first and len(cache) == 2  # LRU evicted the oldest
    cache.forecast(hist, 14, data_version=1, filters={"org": "a", "model": "m"})
    assert cache.misses == 4


def test_forecast_many_per_key_and_cached() -> None:
    frames = {"short": series(9, seed=1), "long": series(40, seed=2)}
    cache = ForecastCache()
    out = forecast_many(frames, 14, cache=cache, data_version="v1", backtest=False)
    assert set(out) == {"short", "long"}
    assert out["short"].method == "run_rate" and out["long"].method == "prophet"
    again = forecast_many(frames, 14, cache=cache, data_version="v1", backtest=False)
    assert again["long"] is out["long"] and cache.hits == 2


def test_error_metric_skips_zero_days_or_falls_back_to_wape() -> None:
    actual = np.array([10.0, 0.0, 20.0, 40.0])
    pred = np.array([11.0, 5.0, 18.0, 40.0])
    value, metric, skipped = error_metric(actual, pred)
    assert metric == "mape" and skipped == 1
    assert value == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    sparse = np.array([0.0, 0.0, 0.0, 10.0])
    value, metric, _ = error_metric(sparse, np.array([1.0, 0.0, 0.0, 8.0]))
    assert metric == "wape" and value == pytest.approx(3.0 / 10.0)
    assert error_metric(np.zeros(3), np.ones(3))[0] is None
    naive = seasonal_naive(np.arange(14, dtype=float), 9)
    assert naive.tolist() == [7, 8, 9, 10, 11, 12, 13, 7, 8]


def test_holidays_country_is_checked_and_used() -> None:
    with pytest.raises(ConfigError) as err:
        forecast_spend(series(30), 7, holidays_country="XX")
    assert err.value.field == "holidays_country"
    fc = forecast_spend(series(40), 7, holidays_country="US", backtest=False)
    assert fc.method == "prophet" and fc.message == ""


def test_accepts_tz_aware_days_decimal_dollars_and_cost_usd_column() -> None:
    from decimal import Decimal

    hist = series(10)
    frame = pd.DataFrame(
        {
            "ds": hist["ds"].dt.tz_localize("Europe/Paris"),
            "cost_usd": [Decimal(str(round(v, 6))) for v in hist["y"]],
        }
    )
    fc = forecast_spend(frame, 7)
    assert fc.frame["ds"].dt.tz is None and fc.last_history_day == date(2024, 1, 10)
    assert fc.future["yhat"].iloc[0] == pytest.approx(hist["y"].iloc[-7:].mean(), rel=1e-6)
    with pytest.raises(ConfigError):
        forecast_spend(pd.DataFrame({"ds": hist["ds"]}), 7)
