"""The Overview's reads: spend of the KPI windows, spend per period and dimension with the
range's totals (the unpriced calls counted in the same scan), and the top spenders (exact
picodollars). The numbers come from ``core.reports``, the same functions ``GET /api/v1/spend``
serves."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from console.queries.usage import cached, reader_at
from console.selection import Scope
from core import reports
from core.reports import TOP_WHO, Coverage, Spend, Totals

__all__ = [
    "TOP_WHO",
    "Spend",
    "accounting_report",
    "Totals",
    "coverage",
    "spend",
    "top_spenders",
    "unpriced_calls",
    "window_spend",
]


@cached
def window_spend(home: str, version: str, scope: Scope, now: datetime) -> dict[str, int]:
    """Spend of each KPI window (today, yesterday, mtd, prev_mtd, last30, prev30) under the
    scope's dimension filters."""
    return reports.window_spend(reader_at(home), scope.filters(), scope.tz, now)


@cached
def spend(home: str, version: str, scope: Scope, dim: str, grain: str) -> Spend:
    """Spend per period and ``dim`` value plus the range's totals (the unpriced calls
    counted too), from one scan (two stacked by tag: a call counts once in the totals)."""
    return reports.spend(reader_at(home), scope.filters(), dim, grain, scope.tz)


@cached
def top_spenders(home: str, version: str, scope: Scope, who: str, n: int = 10) -> pd.DataFrame:
    """The top ``n`` values of ``who`` (user, project or org) by spend: name, cost_picousd,
    requests."""
    return reports.top_spenders(reader_at(home), scope.filters(), who, n)


@cached
def coverage(home: str, version: str, scope: Scope) -> Coverage:
    """Whether retention pruned raw events inside the selected range (and whether its figures
    from their rollups are exact under the scope's tag filter and time zone)."""
    return reports.coverage(
        reader_at(home), scope.start, scope.end, tagged=bool(scope.tag), tz=scope.tz
    )


@cached
def unpriced_calls(home: str, version: str, scope: Scope) -> int:
    """Calls in the scope logged as unpriced (their cost is unknown, so not in any total), in a
    narrow scan of their own: for pages that run no ``spend`` over the same scope (whose
    totals count them in that scan)."""
    return reports.unpriced_calls(reader_at(home), scope.filters())


@cached
def accounting_report(
    home: str, version: str, scope: Scope, by: str, currency: str, rate: str
) -> reports.Accounting:
    """Month x ``by`` spend in the display currency, unpriced calls apart."""
    return reports.accounting(reader_at(home), scope.filters(), by, scope.tz, currency, rate)
