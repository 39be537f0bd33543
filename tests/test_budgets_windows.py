"""Budget windows: calendar day / ISO week / month in the budget's zone, DST, reset keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.budgets import Window, window
from core.control import Budget


def budget(period: str, tz: str) -> Budget:
    return Budget(id="b1", name="B", period=period, timezone=tz, limit_usd=Decimal(1))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "tz", "now", "key", "label", "start", "end"),
    [
        # London spring forward (Sun 2026-03-29): a 23-hour day.
        (
            "day",
            "Europe/London",
            utc(2026, 3, 29, 12),
            "b1:day:2026-03-29:0",
            "2026-03-29",
            utc(2026, 3, 29, 0),
            utc(2026, 3, 29, 23),
        ),
        # 23:30 UTC is already 00:30 BST the next day.
        (
            "day",
            "Europe/London",
            utc(2026, 3, 29, 23, 30),
            "b1:day:2026-03-30:0",
            "2026-03-30",
            utc(2026, 3, 29, 23),
            utc(2026, 3, 30, 23),
        ),
        # New York fall back (Sun 2026-11-01): a 25-hour day.
        (
            "day",
            "America/New_York",
            utc(2026, 11, 1, 12),
            "b1:day:2026-11-01:0",
            "2026-11-01",
            utc(2026, 11, 1, 4),
            utc(2026, 11, 2, 5),
        ),
        # Month boundary in New York: 03:59 UTC on Nov 1 is still October (EDT).
        (
            "month",
            "America/New_York",
            utc(2026, 11, 1, 3, 59),
            "b1:month:2026-10-01:0",
            "2026-10",
            utc(2026, 10, 1, 4),
            utc(2026, 11, 1, 4),
        ),
        (
            "month",
            "America/New_York",
            utc(2026, 11, 1, 4),
            "b1:month:2026-11-01:0",
            "2026-11",
            utc(2026, 11, 1, 4),
            utc(2026, 12, 1, 5),
        ),
        # London: 23:30 UTC on Mar 31 is 00:30 BST on April 1.
        (
            "month",
            "Europe/London",
            utc(2026, 3, 31, 23, 30),
            "b1:month:2026-04-01:0",
            "2026-04",
            utc(2026, 3, 31, 23),
            utc(2026, 4, 30, 23),
        ),
        # ...but on Oct 31 (after the clocks went back) 23:30 UTC is still October.
        (
            "month",
            "Europe/London",
            utc(2026, 10, 31, 23, 30),
            "b1:month:2026-10-01:0",
            "2026-10",
            utc(2026, 9, 30, 23),
            utc(2026, 11, 1, 0),
        ),
        # ISO week, Monday start: Thursday 2026-01-01 is in 2026-W01, which began 2025-12-29.
        (
            "week",
            "UTC",
            utc(2026, 1, 1, 12),
            "b1:week:2025-12-29:0",
            "2026-W01",
            utc(2025, 12, 29),
            utc(2026, 1, 5),
        ),
        # Sunday 23:30 UTC is Monday morning in Tokyo: the next week there.
        (
            "week",
            "Asia/Tokyo",
            utc(2026, 1, 4, 23, 30),
            "b1:week:2026-01-05:0",
            "2026-W02",
            utc(2026, 1, 4, 15),
            utc(2026, 1, 11, 15),
        ),
    ],
)
def test_window_bounds_and_keys(
    period: str, tz: str, now: datetime, key: str, label: str, start: datetime, end: datetime
) -> None:
    w = window(budget(period, tz), now)
    assert (w.key, w.label, w.period, w.tz) == (key, label, period, tz)
    assert w.start.astimezone(UTC) == start
    assert w.end.astimezone(UTC) == end
    assert w.start <= now < w.end
    assert w.length() == end - start


def test_dst_day_lengths() -> None:
    spring = window(budget("day", "Europe/London"), utc(2026, 3, 29, 12))
    autumn = window(budget("day", "America/New_York"), utc(2026, 11, 1, 12))
    assert spring.length() == timedelta(hours=23)
    assert autumn.length() == timedelta(hours=25)


def test_ttl_runs_to_window_end_plus_one_day() -> None:
    now = utc(2026, 3, 29, 12)
    w = window(budget("day", "Europe/London"), now)
    assert w.ttl_s(now) == (timedelta(hours=11) + timedelta(days=1)).total_seconds()


def test_reset_generation_starts_a_fresh_window() -> None:
    b = budget("month", "Europe/London")
    now = utc(2026, 11, 5)
    w0, w1 = window(b, now), window(replace(b, reset_generation=1), now)
    assert w0.key == "b1:month:2026-11-01:0"
    assert w1.key == "b1:month:2026-11-01:1"
    assert (w0.label, w1.label) == ("2026-11", "2026-11.r1")
    assert w0.usd_key != w1.usd_key and w0.tokens_key != w1.tokens_key


def test_counter_keys_are_distinct() -> None:
    w = window(budget("day", "UTC"), utc(2026, 1, 1))
    keys = {w.usd_key, w.tokens_key, Window.committed(w.usd_key), Window.committed(w.tokens_key)}
    assert len(keys) == 4
