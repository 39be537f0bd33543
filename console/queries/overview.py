"""The Overview's reads: spend of the KPI windows, spend per period and dimension with the
range's totals, and the top spenders (exact picodollars). The numbers come from
``core.reports``, the same functions ``GET /api/v1/spend`` serves."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from console.queries.usage import cached, reader_at
from console.selection import Scope
from core import reports
from core.reports import TOP_WHO, Coverage, Spend, Totals

__all__ = ["TOP_WHO", "Spend", "Totals", "coverage", "spend", "top_spenders", "window_spend"]


@cached
def window_spend(home: str, version: str, scope: Scope, now: datetime) -> dict[str, int]:
    """Spend of each KPI window (today, yesterday, mtd, prev_mtd, last30, prev30) under the
    scope's dimension filters."""
    return reports.window_spend(reader_at(home), scope.filters(), scope.tz, now)


@cached
def spend(home: str, version: str, scope: Scope, dim: str, grain: str) -> Spend:
    """Spend per period and ``dim`` value plus the range's totals, from one scan."""
    return reports.spend(reader_at(home), scope.filters(), dim, grain, scope.tz)


@cached
def top_spenders(home: str, version: str, scope: Scope, who: str, n: int = 10) -> pd.DataFrame:
    """The top ``n`` values of ``who`` (user, project or org) by spend: name, cost_picousd,
    requests."""
    return reports.top_spenders(reader_at(home), scope.filters(), who, n)


@cached
def coverage(home: str, version: str, scope: Scope) -> Coverage:
    """Whether retention pruned raw events inside the selected range."""
    return reports.coverage(reader_at(home), scope.start, scope.end)
