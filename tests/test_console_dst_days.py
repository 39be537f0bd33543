"""Day bars on DST days: the Overview's time axis is wall clock (naive local time on a UTC
scale), where every day, 23, 24 or 25 hours long, is the slot from its midnight to the next;
a DST day's bar fills its slot like its neighbours and its height counts all its real hours
(checked: the bars neither overlap nor leave a gap, and the 25-hour day holds 25 hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from console.frames.overview import BAR_FILL, series_frame
from console.selection import Money
from core import reports
from core.types import PICO
from core.usage import Filters, Reader, UsageEvent, UsageLog

NY = "America/New_York"  # 1 Nov 2026 has 25 hours


def test_fall_back_day_bar_fills_its_calendar_slot(costline_home: Path) -> None:
    log = UsageLog(costline_home)
    t = datetime(2026, 10, 30, 12, tzinfo=UTC)
    for i in range(24 * 5):  # $1 every real hour
        log.append(
            UsageEvent(
                request_id=f"x{i}",
                ts=t + timedelta(hours=i),
                org="a",
                provider="openai",
                model="gpt-4o-mini",
                cost_picousd=PICO,
            )
        )
    log.close()
    f = Filters(
        start=datetime(2026, 10, 31, 4, tzinfo=UTC), end=datetime(2026, 11, 3, 5, tzinfo=UTC)
    )
    with Reader(costline_home) as reader:
        spend = reports.spend(reader, f, "org", "day", NY)
    frame = series_frame(spend.series, Money(), "day", spend.periods)
    assert list(frame["label"]) == ["2026-10-31", "2026-11-01", "2026-11-02"]
    assert list(frame["amount"]) == [24.0, 25.0, 24.0]  # the 25-hour day counts 25 hours
    starts = pd.to_datetime(frame["period"])
    assert list(starts.diff().dropna()) == [pd.Timedelta(days=1)] * 2  # slot to slot
    width = pd.to_datetime(frame["period_end"]) - starts
    assert (width == pd.Timedelta(days=1) * BAR_FILL).all()  # the same share of each slot
