"""Pure parts of the console: time ranges in a time zone, KPI windows, exact money display."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from console.frames.overview import series_frame
from console.inputs.admin import parse_rates
from console.selection import Money, Scope, change, kpi_windows, range_bounds, rates_with_defaults
from core.errors import ConfigError
from core.types import PICO

NOW = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)


def test_presets_are_whole_local_days_ending_tomorrow_midnight() -> None:
    start, end = range_bounds("7d", "Europe/London", NOW)
    assert (start, end) == (datetime(2026, 3, 9, 0, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC))
    start, end = range_bounds("today", "America/New_York", NOW)  # 06:30 local, EDT since 8 Mar
    assert (start, end) == (
        datetime(2026, 3, 15, 4, tzinfo=UTC),
        datetime(2026, 3, 16, 4, tzinfo=UTC),
    )
    assert range_bounds("mtd", "UTC", NOW)[0] == datetime(2026, 3, 1, tzinfo=UTC)
    assert range_bounds("90d", "UTC", NOW)[0] == datetime(2025, 12, 16, tzinfo=UTC)
    custom = range_bounds("custom", "UTC", NOW, (date(2026, 2, 10), date(2026, 2, 1)))
    assert custom == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 11, tzinfo=UTC))


def test_kpi_windows_compare_the_same_elapsed_time() -> None:
    w = kpi_windows("UTC", NOW)
    assert w["today"] == (datetime(2026, 3, 15, tzinfo=UTC), NOW)
    assert w["yesterday"] == (datetime(2026, 3, 14, tzinfo=UTC), NOW - timedelta(days=1))
    assert w["mtd"] == (datetime(2026, 3, 1, tzinfo=UTC), NOW)
    assert w["prev_mtd"] == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 2, 15, 10, 30, tzinfo=UTC),
    )
    # the last 30 local days, today included (the "Last 30 days" preset's days)
    assert w["last30"] == (datetime(2026, 2, 14, tzinfo=UTC), NOW)
    assert w["last30"][0] == range_bounds("30d", "UTC", NOW)[0]
    assert w["prev30"] == (datetime(2026, 1, 15, tzinfo=UTC), NOW - timedelta(days=30))
    late = datetime(2026, 3, 31, 12, tzinfo=UTC)  # March 31st: February is shorter
    assert kpi_windows("UTC", late)["prev_mtd"][1] == datetime(2026, 3, 1, tzinfo=UTC)


def test_kpi_windows_in_the_last_minute_of_a_day_are_that_day() -> None:
    """The console passes now rounded up to the next minute (an exclusive end): at 23:59:30
    that is the next midnight, and "today" must still be the day that is ending."""
    end = datetime(2026, 4, 1, tzinfo=UTC)  # 31 March 23:59:xx, rounded up
    w = kpi_windows("UTC", end)
    assert w["today"] == (datetime(2026, 3, 31, tzinfo=UTC), end)
    assert w["mtd"] == (datetime(2026, 3, 1, tzinfo=UTC), end)
    assert w["last30"] == (datetime(2026, 3, 2, tzinfo=UTC), end)
    ny = kpi_windows("America/New_York", datetime(2026, 4, 1, 4, tzinfo=UTC))  # local midnight
    assert ny["today"][0] == datetime(2026, 3, 31, 4, tzinfo=UTC)


def test_money_is_exact_and_rounds_half_up_only_for_display() -> None:
    usd = Money()
    assert usd.fmt(1_234_565 * PICO // 1000) == "$1,234.57"  # 1234.565 -> .57
    assert usd.fmt(5 * PICO // 1000, places=4) == "$0.0050"
    gbp = Money("GBP", "0.79")
    assert gbp.amount(10**12) == Decimal("0.79")
    assert gbp.fmt(3 * 10**12) == "£2.37"
    assert Money("CHF", "0.9").fmt(10**12) == "CHF 0.90"
    huge = 10**30  # beyond int64 picodollars still exact
    assert usd.amount(huge) == Decimal(10**18)


def test_change_and_rates() -> None:
    assert change(150, 100) == "+50.0%" and change(50, 100) == "-50.0%"
    assert change(10, 0) is None
    assert rates_with_defaults({"EUR": "0.5", "JPY": "150", "BAD": "x", "USD": "2"}) == {
        "USD": "1",
        "EUR": "0.5",
        "GBP": "0.79",
        "JPY": "150",
    }
    assert parse_rates("eur=0.9, GBP = 0.8\n") == {"EUR": "0.9", "GBP": "0.8"}
    with pytest.raises(ConfigError):
        parse_rates("EUR 0.9")


def test_scope_filters_leave_empty_dimensions_open() -> None:
    scope = Scope(NOW, NOW + timedelta(days=1), org=("a",), user=())
    f = scope.filters(status=("error",))
    assert (f.org, f.user, f.status, f.start) == (("a",), None, ("error",), NOW)


def test_series_frame_bars_span_their_period() -> None:
    series = pd.DataFrame(
        {
            "period": pd.to_datetime(["2026-01-05", "2026-01-12"]),
            "key": ["a", "b"],
            "cost_picousd": [PICO, 2 * PICO],
            "requests": [3, 4],
        }
    )
    frame = series_frame(series, Money(), "week")
    assert list(frame["amount"]) == [1.0, 2.0]
    assert frame["period_end"][0] == pd.Timestamp("2026-01-05") + pd.Timedelta(days=7) * 0.85
    assert list(frame["label"]) == ["week of 2026-01-05", "week of 2026-01-12"]


def test_frames_charts_inputs_and_selection_import_without_streamlit() -> None:
    """The pure half of the console split: shaping, charts and form parsing load no UI."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import console.selection\n"
        "for name in ('frames', 'charts', 'inputs'):\n"
        "    pkg = importlib.import_module('console.' + name)\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'console.{name}.{m.name}')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'streamlit'))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_finance_presets_cover_whole_local_periods() -> None:
    """Last month, this/last quarter, year to date, all time, and the rolling 24 hours."""
    tomorrow = datetime(2026, 3, 16, tzinfo=UTC)
    assert range_bounds("last_month", "UTC", NOW) == (
        datetime(2026, 2, 1, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    assert range_bounds("qtd", "UTC", NOW) == (datetime(2026, 1, 1, tzinfo=UTC), tomorrow)
    assert range_bounds("last_quarter", "UTC", NOW) == (
        datetime(2025, 10, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert range_bounds("ytd", "UTC", NOW) == (datetime(2026, 1, 1, tzinfo=UTC), tomorrow)
    start, end = range_bounds("all", "UTC", NOW)
    assert start.year <= 2000 and end == tomorrow
    start, end = range_bounds("24h", "UTC", NOW)
    assert end == NOW + timedelta(minutes=1) and end - start == timedelta(hours=24)
    # in a zone: last month in Berlin starts at local midnight
    start, _ = range_bounds("last_month", "Europe/Berlin", NOW)
    assert start == datetime(2026, 1, 31, 23, tzinfo=UTC)
