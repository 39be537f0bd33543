"""Views that old or short data used to break: a forecast of data that ended long ago, the
short-history rule counting days with spend, years on the time axes, minute and hour grains
for ranges of two days or less, and a minute-grain anomaly scan of a one-day log (real
usage log, real Reader)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.insights import forecast_spend, scan_usage
from core.usage import Filters, Reader, UsageEvent, UsageLog
from tests.console_support import app, make_users

DAY0 = datetime(2023, 11, 1, tzinfo=UTC)


def daily(values: list[float], start: str = "2023-11-01") -> pd.DataFrame:
    return pd.DataFrame({"ds": pd.date_range(start, periods=len(values), freq="D"), "y": values})


def test_a_forecast_of_data_that_ended_long_ago_says_so() -> None:
    rng = np.random.default_rng(1)
    spend = list(5 + rng.random(30))  # 30 days with spend in November 2023 ...
    idle = [0.0] * 760  # ... then nothing until the end of 2025
    fc = forecast_spend(daily(spend + idle), 30, backtest=True)
    assert fc.method == "run_rate" and fc.backtest is None  # no fit to 760 idle days
    assert "no spend since 2023-11-30 (760 days)" in fc.message
    assert float(fc.future["yhat"].max()) == 0.0


def test_the_short_history_rule_counts_days_with_spend() -> None:
    values = [0.0] * 20
    for i in (0, 4, 8, 12, 19):  # 20 calendar days, 5 of them with spend
        values[i] = 3.0
    fc = forecast_spend(daily(values), 14, backtest=False)
    assert fc.method == "run_rate"
    assert "only 5 days with spend" in fc.message


def test_time_axes_carry_the_year() -> None:
    from console.charts import forecast, style

    assert "%Y" in forecast.X_FORMAT
    assert all("%Y" in style.DATE_FORMAT[g] for g in ("day", "week", "month"))


def minute_log(home: Path, spike_at: int, per_minute: int = 1, spike: int = 10) -> datetime:
    """One day of calls, ``per_minute`` a minute ($0.001 each), ``spike`` times as many in
    minute ``spike_at``; returns the end of the day."""
    with UsageLog(home) as log:
        for m in range(24 * 60):
            n = per_minute * (spike if m == spike_at else 1)
            for k in range(n):
                log.append(
                    UsageEvent(
                        request_id=f"r{m}-{k}",
                        ts=DAY0 + timedelta(minutes=m, seconds=k),
                        org="acme",
                        user="ann" if m != spike_at else "loop-bot",
                        provider="openai",
                        model="gpt-4o-mini",
                        input_tokens=100,
                        output_tokens=10,
                        cost_picousd=10**9,  # $0.001
                    )
                )
    return DAY0 + timedelta(days=1)


def test_minute_grain_spend(costline_home: Path) -> None:
    minute_log(costline_home, spike_at=600)
    with Reader(costline_home) as reader:
        per = reader.spend_by([], "minute", Filters(start=DAY0, end=DAY0 + timedelta(hours=1)))
    assert len(per) == 60 and set(per["requests"]) == {1}
    assert pd.Timestamp(per["period"].min()) == pd.Timestamp("2023-11-01 00:00")


def test_a_minute_spike_in_a_one_day_log_is_found(costline_home: Path) -> None:
    end = minute_log(costline_home, spike_at=600)  # 10:00, ten times the usual calls
    with Reader(costline_home) as reader:
        found = scan_usage(reader, dims=("org",), now=end, since=DAY0)
    minute = [f for f in found if f.grain == "minute"]
    assert sorted((f.metric, f.when) for f in minute) == [
        ("requests", "2023-11-01 10:00"),
        ("spend", "2023-11-01 10:00"),
    ]
    spend = next(f for f in minute if f.metric == "spend")
    assert spend.anomaly.value == pytest.approx(0.010) and spend.anomaly.expected == pytest.approx(
        0.001
    )
    assert spend.top("user") is not None and spend.top("user").value == "loop-bot"


def test_the_overview_offers_minutes_and_hours_for_two_days_or_less(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    make_users(costline_home)
    minute_log(costline_home, spike_at=600)
    at = app("viewer").run()
    at.selectbox(key="f_range").set_value("custom").run()
    at.date_input(key="f_dates").set_value((DAY0.date(), DAY0.date())).run()
    assert not at.exception
    grain = at.button_group(key="ov_grain_short")
    assert list(grain.options) == ["minute", "hour", "day"] and grain.value == "hour"
    grain.set_value("minute").run()
    assert not at.exception
    at.selectbox(key="f_range").set_value("90d").run()
    assert at.button_group(key="ov_grain").options == ["day", "week", "month"]
