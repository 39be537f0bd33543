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
    "24h": "Last 24 hours (rolling)",
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "mtd": "Month to date",
    "last_month": "Last month",
    "qtd": "This quarter",
    "last_quarter": "Last quarter",
    "ytd": "Year to date",
    "all": "All time",
    "custom": "Custom",
}
ALL_TIME_START = datetime(2000, 1, 1, tzinfo=UTC)  # before any LLM call was logged


def _quarter_start(day: date) -> date:
    return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def today_in(tz: str, now: datetime | None = None) -> date:
    return (now or clock.now()).astimezone(ZoneInfo(tz)).date()


def range_bounds(
    preset: str, tz: str, now: datetime | None = None, custom: tuple[date, date] | None = None
) -> tuple[datetime, datetime]:
    """[start, end) of a preset in whole local days (end: next midnight, so cache keys hold
    all day), except "24h": the last 24 hours to the next whole minute. ``custom`` is an
    inclusive (first, last) pair of dates."""
    today = today_in(tz, now)
    tomorrow = local_midnight(today + timedelta(days=1), tz)
    if preset == "custom" and custom:
        first, last = sorted(custom)
        return local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
    if preset == "24h":
        end = (now or clock.now()).astimezone(UTC).replace(second=0, microsecond=0)
        end += timedelta(minutes=1)
        return end - timedelta(hours=24), end
    if preset == "all":
        return ALL_TIME_START, tomorrow
    if preset == "last_month":
        this = today.replace(day=1)
        first = (this - timedelta(days=1)).replace(day=1)
        return local_midnight(first, tz), local_midnight(this, tz)
    if preset == "last_quarter":
        this = _quarter_start(today)
        first = _quarter_start(this - timedelta(days=1))
        return local_midnight(first, tz), local_midnight(this, tz)
    if preset == "mtd":
        first = today.replace(day=1)
    elif preset == "qtd":
        first = _quarter_start(today)
    elif preset == "ytd":
        first = today.replace(month=1, day=1)
    else:
        days = {"today": 1, "7d": 7, "30d": 30, "90d": 90}.get(preset, 30)
        first = today - timedelta(days=days - 1)
    return local_midnight(first, tz), tomorrow


def kpi_windows(tz: str, now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """The KPI periods and the periods they are compared with (same elapsed time).

    ``now`` is the windows' exclusive end (the console rounds it up to the next minute), so
    "today" is the local day of the last instant before it: in the last minute of a day, that
    day, not the empty next one."""
    today = today_in(tz, now - timedelta(microseconds=1))
    day0 = local_midnight(today, tz)
    yday0 = local_midnight(today - timedelta(days=1), tz)
    month0 = local_midnight(today.replace(day=1), tz)
    prev_first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    prev0 = local_midnight(prev_first, tz)
    prev_end = min(prev0 + (now - month0), month0)
    # the last 30 local days, today included: the same days as the "Last 30 days" preset
    d30 = local_midnight(today - timedelta(days=29), tz)
    d60 = local_midnight(today - timedelta(days=59), tz)
    return {
        "today": (day0, now),
        "yesterday": (yday0, min(yday0 + (now - day0), day0)),
        "mtd": (month0, now),
        "prev_mtd": (prev0, prev_end),
        "last30": (d30, now),
        "prev30": (d60, min(d60 + (now - d30), d30)),
    }
