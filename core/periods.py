"""Calendar ranges in a time zone: the console's sidebar presets and the Overview's KPI
windows, shared by the console and the REST API (see docs/api.md, "Time ranges").

Ranges are [start, end) pairs of aware UTC datetimes covering whole local days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core import clock

__all__ = ["PRESETS", "kpi_windows", "local_midnight", "range_bounds", "today_in"]

PRESETS: dict[str, str] = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "mtd": "Month to date",
    "custom": "Custom",
}


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def today_in(tz: str, now: datetime | None = None) -> date:
    return (now or clock.now()).astimezone(ZoneInfo(tz)).date()


def range_bounds(
    preset: str, tz: str, now: datetime | None = None, custom: tuple[date, date] | None = None
) -> tuple[datetime, datetime]:
    """[start, end) of a preset in whole local days (end: next midnight, so cache keys hold
    all day). ``custom`` is an inclusive (first, last) pair of dates."""
    today = today_in(tz, now)
    if preset == "custom" and custom:
        first, last = sorted(custom)
        return local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
    if preset == "mtd":
        first = today.replace(day=1)
    else:
        days = {"today": 1, "7d": 7, "30d": 30, "90d": 90}.get(preset, 30)
        first = today - timedelta(days=days - 1)
    return local_midnight(first, tz), local_midnight(today + timedelta(days=1), tz)


def kpi_windows(tz: str, now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """The KPI periods and the periods they are compared with (same elapsed time)."""
    today = today_in(tz, now)
    day0 = local_midnight(today, tz)
    yday0 = local_midnight(today - timedelta(days=1), tz)
    month0 = local_midnight(today.replace(day=1), tz)
    prev_first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    prev0 = local_midnight(prev_first, tz)
    prev_end = min(prev0 + (now - month0), month0)
    return {
        "today": (day0, now),
        "yesterday": (yday0, min(yday0 + (now - day0), day0)),
        "mtd": (month0, now),
        "prev_mtd": (prev0, prev_end),
        "last30": (now - timedelta(days=30), now),
        "prev30": (now - timedelta(days=60), now - timedelta(days=30)),
    }
