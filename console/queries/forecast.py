"""The Forecast page's reads: cached calls into ``core.insights`` (forecasts, budget outlook,
anomalies, savings advice).

Every cached function takes the log's home and ``Reader.data_version()`` (and the control
plane's version where budgets or policies matter), so new usage invalidates it; under
``st.cache_data`` sits core's ``ForecastCache``, keyed the same way, so a rerun after a
widget change refits nothing it has fitted before.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import streamlit as st

from console import auth
from console.queries.pricing import catalog
from console.queries.usage import reader
from console.selection import Scope, today_in
from core import clock, insights, reports
from core.insights import AdviceReport, BudgetOutlook, Finding, Forecast
from core.pricing import load_catalog
from core.usage import Filters

cached = st.cache_data(ttl=600, max_entries=128, show_spinner=False)


ADVICE_DAYS = 30


def series_filters(scope: Scope) -> Filters:
    """The sidebar's dimension filters without its time range (forecasts use all history)."""
    return scope.filters(start=None, end=None)


def now_slot(minutes: int = 5) -> datetime:
    """Now, floored to a few minutes: a stable cache key that is never far behind."""
    now = clock.now()
    return now.replace(minute=now.minute - now.minute % minutes, second=0, microsecond=0)


@cached
def values(home: str, version: str, scope: Scope, dimension: str) -> list[str]:
    return insights.dimension_values(reader(), dimension, series_filters(scope))


@cached
def forecast(
    home: str,
    version: str,
    scope: Scope,
    dimension: str,
    value: str | None,
    horizon: int,
    holidays: str | None,
    today: date,
) -> Forecast:
    return insights.forecast(
        reader(),
        dimension,
        value,
        filters=series_filters(scope),
        horizon_days=horizon,
        holidays_country=holidays,
        tz=scope.tz,
        through=today - timedelta(days=1),
    )


@cached
def outlook(
    home: str, version: str, plane_version: int, now: datetime, width: float, holidays: str | None
) -> list[BudgetOutlook]:
    """Each budget's window as the Budgets page counts it (``now``: its exclusive end, as
    ``console.queries.budgets.utilisation_now``; a reset budget from its last reset)."""
    plane = auth.plane()
    budgets = plane.budgets()
    cat = catalog()

    def canonical(m: str) -> str:
        return cat.canonical(m) if cat.has(m) else m

    return insights.budget_outlook(
        reader(),
        budgets,
        now=now,
        resets=reports.reset_times(plane, budgets),
        canonical=canonical,
        intervals=(width,),
        holidays_country=holidays,
    )


@cached
def findings(home: str, version: str, tz: str, since: datetime, now: datetime) -> list[Finding]:
    return insights.scan_usage(reader(), tz=tz, since=since, now=now)


@cached
def spend_day_findings(
    home: str, version: str, tz: str, since: datetime, now: datetime
) -> list[Finding]:
    """Only what the Overview's chart marks: daily spend anomalies (a 90-day range scanned
    for every grain and metric took ~1.1 s of a ~1.4 s rerun; this takes a fraction)."""
    return insights.scan_usage(
        reader(),
        tz=tz,
        since=since,
        now=now,
        grains=("day",),
        metrics=("spend",),
        exact_spent=False,  # the marks show the excess and ratio, not the amount spent
    )


@cached
def advice(
    home: str,
    version: str,
    plane_version: int,
    scope: Scope,
    now: datetime,
) -> AdviceReport:
    plane = auth.plane()
    return insights.savings_advice(
        reader(),
        load_catalog(),
        policies=plane.policies(),
        scores=plane.model_scores(),
        filters=series_filters(scope),
        days=ADVICE_DAYS,
        now=now,
    )


def today(scope: Scope) -> date:
    return today_in(scope.tz)
