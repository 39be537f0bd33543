"""Forecasts per dimension value, cached on the usage log's data version, and per budget.

A forecast is recomputed only when ``Reader.data_version()`` changes (new segments), the
history's last day moves (midnight) or a parameter changes: everything else is a cache hit,
without even a query. Budget outlooks forecast each budget's own scope to its window's end.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from core import clock
from core.budgets import scope_text, window
from core.control import Budget
from core.insights._exhaustion import Exhaustion, exhaustion
from core.insights._forecast_cache import ForecastCache
from core.insights._forecast_model import MAX_HORIZON, MIN_HORIZON, Forecast, forecast_spend
from core.types import pico_to_usd
from core.usage import Filters, Reader

from ._series import daily_history, day_fraction_left, local_midnight, local_today, scoped

FORECASTS = ForecastCache(maxsize=256)  # process-wide; keys carry the log's home and version


def _where(
    reader: Reader, value: str | None, filters: Filters | None, tz: str, through: date
) -> dict[str, Any]:
    return {
        "home": str(reader.home),
        "value": value,
        "filters": filters,
        "tz": tz,
        "through": through.isoformat(),
    }


def forecast(
    reader: Reader,
    dimension: str = "total",
    value: str | None = None,
    *,
    filters: Filters | None = None,
    horizon_days: int = 30,
    intervals: Sequence[float] = (0.80, 0.95),
    holidays_country: str | None = None,
    tz: str = "UTC",
    through: date | None = None,
    now: datetime | None = None,
    backtest: bool = True,
    cache: ForecastCache = FORECASTS,
) -> Forecast:
    """Daily spend of ``dimension == value`` (under ``filters``) ``horizon_days`` ahead,
    fitted on complete days through ``through`` (default yesterday in ``tz``)."""
    last = through or local_today(tz, now) - timedelta(days=1)
    scoped(filters, dimension, value)  # a bad dimension fails before the cache
    params = {
        "intervals": tuple(intervals),
        "holidays_country": holidays_country or None,
        "backtest": backtest,
    }
    key = cache.key(
        dimension,
        _where(reader, value, filters, tz, last),
        reader.data_version(),
        horizon_days,
        params,
    )

    def compute() -> Forecast:
        history = daily_history(reader, dimension, value, filters=filters, tz=tz, through=last)
        return forecast_spend(
            history[["ds", "y"]],
            horizon_days,
            intervals=intervals,
            holidays_country=holidays_country or None,
            backtest=backtest,
        )

    return cache.get_or_compute(key, compute)


def forecasts_by(
    reader: Reader,
    dimension: str,
    *,
    filters: Filters | None = None,
    horizon_days: int = 30,
    top: int = 10,
    tz: str = "UTC",
    through: date | None = None,
    now: datetime | None = None,
    workers: int = 2,
    cache: ForecastCache = FORECASTS,
    **params: Any,
) -> dict[str, Forecast]:
    """One forecast per value of ``dimension`` (the ``top`` by spend), fitted in parallel."""
    from core.insights._forecast_cache import forecast_many

    last = through or local_today(tz, now) - timedelta(days=1)
    f = scoped(filters, "total", None)
    df = reader.daily_series(
        replace(f, end=local_midnight(last + timedelta(days=1), tz)), by=dimension, tz=tz
    )
    if df.empty:
        return {}
    order = df.groupby("key")["cost_usd"].sum().sort_values(ascending=False).index[:top]
    frames: dict[Hashable, pd.DataFrame] = {
        str(k): df.loc[df["key"] == k, ["ds", "cost_usd"]].rename(columns={"cost_usd": "y"})
        for k in order
    }
    out = forecast_many(
        frames,
        horizon_days,
        workers=workers,
        cache=cache,
        data_version=reader.data_version(),
        dimension=dimension,
        filters=_where(reader, None, filters, tz, last),
        **params,
    )
    return {str(k): v for k, v in out.items()}


@dataclass(frozen=True)
class BudgetOutlook:
    """One budget's current window against its forecast. ``exhaustion`` (and ``forecast``)
    are None when the budget cannot be forecast (token-only limit, disabled); ``note`` says
    why."""

    budget: Budget
    window: str  # the window's label ('2026-11', '2026-W47', '2026-11-05')
    start: date
    end: date  # last day of the window (inclusive)
    spent_usd: Decimal  # exact: counted from ``since`` to now
    exhaustion: Exhaustion | None
    method: str = ""  # 'prophet' | 'run_rate' | ''
    note: str = ""
    forecast: Forecast | None = None  # of the scope, today cut to the rest of the day
    since: datetime | None = None  # where the window counts from (UTC): its start or last reset
    counted: pd.DataFrame | None = None  # ds, y: the spend counted each complete day so far

    @property
    def scope(self) -> str:
        return scope_text(self.budget)

    @property
    def limit_usd(self) -> Decimal | None:
        return self.budget.limit_usd


def budget_filters(reader: Reader, b: Budget, canonical: Callable[[str], str] = str) -> Filters:
    """The calls a budget counts, as ``core.reports.condition`` (and the guard) match them: a
    model budget its model under either name (``canonical``: the catalog's), a provider
    budget its provider in any letter case (the spellings logged)."""
    value = b.scope_value
    if b.scope == "global":
        return Filters()
    if value is None:
        return Filters(org=())  # matches nothing
    if b.scope == "model":
        return Filters(model=tuple(sorted({value, canonical(value)})))
    if b.scope == "provider":
        logged = reader.sql(
            "SELECT DISTINCT provider FROM facts WHERE lower(provider) = lower(?)", [value]
        )["provider"]
        return Filters(provider=tuple(sorted({value, *map(str, logged)})))
    return scoped(None, b.scope, value)


def _counted(reader: Reader, filters: Filters, tz: str, today: date) -> pd.DataFrame:
    """ds, y: what a budget counted on each complete local day from ``filters.start`` (its
    window's start or last reset, maybe mid-day) through yesterday."""
    if local_midnight(today, tz) <= (filters.start or datetime.min.replace(tzinfo=UTC)):
        return pd.DataFrame({"ds": pd.to_datetime([]), "y": []})
    df = reader.daily_series(replace(filters, end=local_midnight(today, tz)), tz=tz)
    return pd.DataFrame({"ds": df["ds"], "y": df["cost_usd"].astype(float)}).reset_index(drop=True)


def rest_of_today(fc: Forecast, today: date, fraction: float) -> Forecast:
    """The forecast with today's row scaled to the part of today still to come."""
    frame = fc.frame.copy()
    row = (~frame["is_history"]) & (frame["ds"].dt.date == today)
    cols = [c for c in frame.columns if c == "yhat" or c.startswith(("lower_", "upper_"))]
    frame.loc[row, cols] = frame.loc[row, cols] * fraction
    return replace(fc, frame=frame)


def budget_outlook(
    reader: Reader,
    budgets: Sequence[Budget],
    *,
    now: datetime | None = None,
    resets: Mapping[str, datetime] | None = None,
    canonical: Callable[[str], str] = str,
    intervals: Sequence[float] = (0.95,),
    holidays_country: str | None = None,
    workers: int = 2,
    cache: ForecastCache = FORECASTS,
) -> list[BudgetOutlook]:
    """For each budget: exact spend so far in its window, the forecast of its scope through
    the window's end, and when the limit is crossed (with the widest interval's range).

    As ``core.reports.utilisation`` (the Budgets page, the status API): ``now`` is an
    exclusive end, the window is the one holding the instant before it, and a budget reset
    in that window (``resets``: ``core.reports.reset_times``) counts from the reset; its scope
    holds the calls the budget counts (``budget_filters``)."""
    at = now or clock.now()
    last = at - timedelta(microseconds=1)

    def one(b: Budget) -> BudgetOutlook:
        win = window(b, last)
        tz = win.tz
        start, end = win.start.date(), win.end.date() - timedelta(days=1)
        since = win.start.astimezone(UTC)
        reset = (resets or {}).get(b.id)
        if reset is not None and reset > since:
            since = reset.astimezone(UTC)
        scope = budget_filters(reader, b, canonical)
        spent = pico_to_usd(reader.totals(replace(scope, start=since, end=at))["cost_picousd"])
        if not b.enabled or b.limit_usd is None or b.limit_usd <= 0:
            why = "disabled" if not b.enabled else "token limit only: not forecast in dollars"
            return BudgetOutlook(b, win.label, start, end, spent, None, note=why, since=since)
        today = local_today(tz, last)
        counted = _counted(reader, replace(scope, start=since), tz, today)
        horizon = min(MAX_HORIZON, max(MIN_HORIZON, (end - today).days + 1))
        fc = forecast(
            reader,
            filters=scope,
            horizon_days=horizon,
            intervals=intervals,
            holidays_country=holidays_country,
            tz=tz,
            now=last,
            backtest=False,
            cache=cache,
        )
        rest = rest_of_today(fc, today, day_fraction_left(tz, last))
        ex = exhaustion(
            rest, spent_so_far=spent, limit=b.limit_usd, window_start=start, window_end=end
        )
        note = "; ".join(n for n in (fc.message, ex.message) if n)
        return BudgetOutlook(
            b, win.label, start, end, spent, ex, fc.method, note, rest, since, counted
        )

    if workers <= 1 or len(budgets) <= 1:
        return [one(b) for b in budgets]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, budgets))
