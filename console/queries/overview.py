"""The Overview's reads: spend of the KPI windows, spend per period and dimension with the
range's totals, and the top spenders (exact picodollars)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from console.queries.usage import NONE, TOKEN_COLUMNS, cached, reader_at, sql_where
from console.selection import Scope, kpi_windows

WINDOW_SPEND_SQL = "CAST(sum(cost_picousd) FILTER (WHERE ts >= ? AND ts < ?) AS VARCHAR)"


@cached
def window_spend(home: str, version: str, scope: Scope, now: datetime) -> dict[str, int]:
    """Spend of each KPI window (today, yesterday, mtd, prev_mtd, last30, prev30) under the
    scope's dimension filters, in one scan that reads only ts and cost."""
    windows = kpi_windows(scope.tz, now)
    where, where_params = sql_where(
        scope, start=min(s for s, _ in windows.values()), end=max(e for _, e in windows.values())
    )
    cols = ", ".join(f"{WINDOW_SPEND_SQL} AS {name}" for name in windows)
    params = [t for bounds in windows.values() for t in bounds]
    row = reader_at(home).sql(f"SELECT {cols} FROM events{where}", params + where_params).iloc[0]
    return {name: int(row[name]) if isinstance(row[name], str) else 0 for name in windows}


@dataclass(frozen=True)
class Totals:
    """Activity of the selected range (money in picodollars)."""

    requests: int = 0
    tokens: int = 0
    cost: int = 0
    saved: int = 0
    saved_cache: int = 0
    saved_sampling: int = 0
    cache_hits: int = 0
    errors: int = 0

    def rate(self, part: int) -> float | None:
        return part / self.requests if self.requests else None

    @property
    def avg_cost(self) -> int | None:
        return self.cost // self.requests if self.requests else None


@dataclass(frozen=True)
class Spend:
    series: pd.DataFrame  # period, key, cost_picousd (exact ints), saved_picousd, requests, errors
    totals: Totals


@cached
def spend(home: str, version: str, scope: Scope, dim: str, grain: str) -> Spend:
    """Spend per period and ``dim`` value plus the range's totals, from one spend_by scan
    (also grouped by cache_hit and ai_called, which splits the savings)."""
    raw = reader_at(home).spend_by(
        [dim, "cache_hit", "ai_called"], grain, scope.filters(), tz=scope.tz
    )
    cost = [int(v) for v in raw["cost_picousd"]]
    saved = [int(v) for v in raw["saved_picousd"]]
    hit = [bool(v) for v in raw["cache_hit"].fillna(False)]
    called = [bool(v) for v in raw["ai_called"].fillna(True)]
    totals = Totals(
        requests=int(raw["requests"].sum()),
        tokens=int(raw[list(TOKEN_COLUMNS)].sum().sum()),
        cost=sum(cost),
        saved=sum(saved),
        saved_cache=sum(v for v, h in zip(saved, hit, strict=True) if h),
        saved_sampling=sum(
            v for v, h, c in zip(saved, hit, called, strict=True) if not c and not h
        ),
        cache_hits=int(raw["cache_hits"].sum()),
        errors=int(raw["errors"].sum()),
    )
    frame = pd.DataFrame(
        {
            "period": raw["period"],
            "key": raw[dim].astype(object).where(raw[dim].notna(), NONE).astype(str),
            "cost_picousd": pd.Series(cost, dtype=object),
            "saved_picousd": pd.Series(saved, dtype=object),
            "requests": raw["requests"].astype("int64"),
            "errors": raw["errors"].astype("int64"),
        }
    )
    series = frame.groupby(["period", "key"], as_index=False, sort=True).agg(
        cost_picousd=("cost_picousd", _exact_sum),
        saved_picousd=("saved_picousd", _exact_sum),
        requests=("requests", "sum"),
        errors=("errors", "sum"),
    )
    return Spend(series, totals)


def _exact_sum(values: pd.Series) -> int:
    return sum(int(v) for v in values)


TOP_WHO = ("user", "project", "org")


@cached
def top_spenders(home: str, version: str, scope: Scope, who: str, n: int = 10) -> pd.DataFrame:
    """The top ``n`` values of ``who`` (user, project or org) by spend: name, cost_picousd,
    requests."""
    if who not in TOP_WHO:
        raise ValueError(f"who must be one of {TOP_WHO}")
    where, params = sql_where(scope)
    sql = (
        f'SELECT "{who}" AS name, CAST(sum(cost_picousd) AS VARCHAR) AS cost_picousd,'
        f" count(*) AS requests FROM events{where} GROUP BY 1"
        " ORDER BY sum(cost_picousd) DESC, name LIMIT ?"
    )
    df = reader_at(home).sql(sql, [*params, int(n)])
    df["name"] = df["name"].astype(object).where(df["name"].notna(), NONE)
    df["cost_picousd"] = pd.Series([int(v) for v in df["cost_picousd"]], dtype=object)
    return df
