"""The series the insights read from the usage log: daily spend of one dimension value.

Days are calendar days in a time zone. Forecasts fit complete days only: the history ends
``through`` (default: yesterday), because today's partial spend would drag the fit down.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from core import clock
from core.errors import ConfigError
from core.usage import Filters, Reader

DIMENSIONS: tuple[str, ...] = ("total", "org", "project", "model", "provider", "task")
SCOPED = ("org", "project", "user", "model", "provider", "task", "key")  # the budget scopes


def local_midnight(day: date, tz: str) -> datetime:
    """Start of ``day`` in ``tz`` as an aware UTC datetime."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def local_today(tz: str, now: datetime | None = None) -> date:
    return (now or clock.now()).astimezone(ZoneInfo(tz)).date()


def day_fraction_left(tz: str, now: datetime) -> float:
    """Share of today (in ``tz``) still to come: 1.0 at midnight, 0.0 just before the next."""
    today = local_today(tz, now)
    start, end = local_midnight(today, tz), local_midnight(today + timedelta(days=1), tz)
    return max(0.0, min(1.0, (end - now) / (end - start)))


def scoped(filters: Filters | None, dimension: str, value: str | None) -> Filters:
    """``filters`` narrowed to ``dimension == value`` ('total' and 'global' narrow nothing)."""
    f = filters or Filters()
    if dimension in ("total", "global"):
        return f
    if dimension not in SCOPED:
        raise ConfigError(
            f"unknown dimension {dimension!r}; choose from total, {', '.join(SCOPED)}",
            field="dimension",
        )
    if not value:
        raise ConfigError(f"pick a {dimension} to forecast", field="value")
    narrowed: dict[str, Any] = {dimension: value}
    return replace(f, **narrowed)


def daily_history(
    reader: Reader,
    dimension: str = "total",
    value: str | None = None,
    *,
    filters: Filters | None = None,
    tz: str = "UTC",
    through: date | None = None,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Complete days of spend through ``through`` (default yesterday in ``tz``): columns
    ds (naive local day), y (USD, float, for fitting only), requests. Missing days are 0."""
    last = through or local_today(tz, now) - timedelta(days=1)
    f = replace(scoped(filters, dimension, value), end=local_midnight(last + timedelta(days=1), tz))
    df = reader.daily_series(f, tz=tz)
    if df.empty:
        return pd.DataFrame({"ds": pd.to_datetime([]), "y": [], "requests": []})
    return pd.DataFrame(
        {"ds": df["ds"], "y": df["cost_usd"].astype(float), "requests": df["requests"]}
    )


def dimension_values(reader: Reader, dimension: str, filters: Filters | None = None) -> list[str]:
    """The values of ``dimension`` under ``filters``, largest spend first."""
    if dimension == "total":
        return []
    scoped(None, dimension, "x")  # validates the name
    df = reader.spend_by([dimension], None, filters)
    return [str(v) for v in df[dimension] if v is not None and not pd.isna(v)]
