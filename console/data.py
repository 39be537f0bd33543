"""The console's read side: small cached functions over core.usage.Reader.

Every query aggregates in DuckDB (the raw log is never pulled into pandas) and is cached with
``st.cache_data`` keyed on ``Reader.data_version()``, so a new segment invalidates it. Money
comes back as exact integer picodollars; pages convert it for display with ``view.Money``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from console.view import FILTER_DIMS, Scope, kpi_windows
from core.settings import costline_home
from core.usage import Reader

CACHE = {"ttl": 600, "max_entries": 256, "show_spinner": False}
ERROR_STATUSES = ("error", "blocked", "rate_limited")
NONE = "(none)"
TOKEN_SUM = (
    "input_tokens + cached_input_tokens + cache_write_tokens + output_tokens + reasoning_tokens"
)


@st.cache_resource(show_spinner=False)
def _reader(home: str) -> Reader:
    return Reader(Path(home))


def home() -> str:
    return str(costline_home())


def reader() -> Reader:
    return _reader(home())


def version() -> str:
    """Changes whenever the usage log changes: the key of every cached query."""
    return reader().data_version()


def _where(scope: Scope, **overrides: Any) -> tuple[str, list[object]]:
    return scope.filters(**overrides).where()


# ---- sidebar -------------------------------------------------------------------------------


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def filter_options(home: str, version: str) -> dict[str, list[str]]:
    """Distinct values of each filter dimension, over the whole log (one scan)."""
    cols = ", ".join(f'list(DISTINCT "{d}") AS "{d}"' for d in FILTER_DIMS)
    row = _reader(home).sql(f"SELECT {cols} FROM events").iloc[0]
    return {d: sorted(v for v in (row[d] if row[d] is not None else []) if v) for d in FILTER_DIMS}


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def event_count(home: str, version: str) -> int:
    return _reader(home).count()


# ---- overview ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpis:
    """Spend per KPI window and the activity of the selected range (money in picodollars)."""

    spend: dict[str, int]  # today, yesterday, mtd, prev_mtd, last30, prev30
    requests: int
    tokens: int
    cost: int
    saved: int
    saved_cache: int
    saved_sampling: int
    cache_hits: int
    errors: int

    def rate(self, part: int) -> float | None:
        return part / self.requests if self.requests else None

    @property
    def avg_cost(self) -> int | None:
        return self.cost // self.requests if self.requests else None


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def kpis(home: str, version: str, scope: Scope, now: datetime) -> Kpis:
    """All KPIs in one scan: FILTER clauses per window over the union of the windows."""
    windows = kpi_windows(scope.tz, now)
    first = min([scope.start, *(s for s, _ in windows.values())])
    last = max([scope.end, *(e for _, e in windows.values())])
    where, where_params = _where(scope, start=first, end=last)
    in_range = "ts >= ? AND ts < ?"
    cols: list[str] = []
    params: list[object] = []
    for name, (start, end) in windows.items():
        cols.append(f"CAST(sum(cost_picousd) FILTER (WHERE {in_range}) AS VARCHAR) AS {name}")
        params += [start, end]
    metrics = {
        "requests": ("count(*)", "true"),
        "tokens": (f"sum({TOKEN_SUM})", "true"),
        "cost": ("sum(cost_picousd)", "true"),
        "saved": ("sum(saved_picousd)", "true"),
        "saved_cache": ("sum(saved_picousd)", "cache_hit"),
        "saved_sampling": ("sum(saved_picousd)", "NOT ai_called"),
        "cache_hits": ("count(*)", "cache_hit"),
        "errors": ("count(*)", "status IN ('error', 'blocked', 'rate_limited')"),
    }
    for name, (expr, cond) in metrics.items():
        cols.append(f"CAST({expr} FILTER (WHERE {in_range} AND {cond}) AS VARCHAR) AS {name}")
        params += [scope.start, scope.end]
    sql = f"SELECT {', '.join(cols)} FROM events{where}"
    row = _reader(home).sql(sql, params + where_params).iloc[0]
    num = {k: int(v) if v is not None and not pd.isna(v) else 0 for k, v in row.items()}
    return Kpis(spend={w: num[w] for w in windows}, **{m: num[m] for m in metrics})


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def spend_series(home: str, version: str, scope: Scope, dim: str, grain: str) -> pd.DataFrame:
    """Spend per period and ``dim`` value: period (local wall time), key, cost_picousd,
    requests, errors, cache_hits, saved_picousd."""
    df = _reader(home).spend_by([dim], grain, scope.filters(), tz=scope.tz)
    out = pd.DataFrame(
        {
            "period": df["period"],
            "key": df[dim].astype(object).where(df[dim].notna(), NONE).astype(str),
            "cost_picousd": [int(v) for v in df["cost_picousd"]],
            "saved_picousd": [int(v) for v in df["saved_picousd"]],
            "requests": df["requests"].astype("int64"),
            "errors": df["errors"].astype("int64"),
            "cache_hits": df["cache_hits"].astype("int64"),
        }
    )
    out["cost_picousd"] = out["cost_picousd"].astype(object)
    return out


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def top_spenders(home: str, version: str, scope: Scope, n: int = 10) -> pd.DataFrame:
    """The top ``n`` users, projects and orgs by spend (one scan, grouping sets)."""
    where, params = _where(scope)
    who = (
        "CASE WHEN GROUPING(\"user\") = 0 THEN 'user'"
        " WHEN GROUPING(project) = 0 THEN 'project' ELSE 'org' END"
    )
    name = "CASE WHEN GROUPING(\"user\") = 0 THEN \"user\" WHEN GROUPING(project) = 0" \
           " THEN project ELSE org END"  # fmt: skip
    sql = (
        "SELECT who, name, CAST(cost AS VARCHAR) AS cost_picousd, requests FROM ("
        f" SELECT {who} AS who, {name} AS name, sum(cost_picousd) AS cost,"
        f" count(*) AS requests FROM events{where}"
        ' GROUP BY GROUPING SETS (("user"), (project), (org))'
        ") QUALIFY row_number() OVER (PARTITION BY who ORDER BY cost DESC, name) <= ?"
        " ORDER BY who, cost DESC, name"
    )
    df = _reader(home).sql(sql, [*params, int(n)])
    df["name"] = df["name"].astype(object).where(df["name"].notna(), NONE)
    df["cost_picousd"] = pd.Series([int(v) for v in df["cost_picousd"]], dtype=object)
    return df


# ---- requests ------------------------------------------------------------------------------

LOG_COLUMNS = [
    "ts", "org", "user", "task", "requested_model", "model", "provider", "input_tokens",
    "cached_input_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
    "cost_picousd", "latency_ms", "cache_hit", "status", "error_type", "route_reason",
    "request_id",
]  # fmt: skip
SORTABLE = {
    "ts": "Time", "cost_picousd": "Cost", "latency_ms": "Latency", "output_tokens":
    "Output tokens", "input_tokens": "Input tokens",
}  # fmt: skip


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def request_count(home: str, version: str, scope: Scope, status: tuple[str, ...]) -> int:
    return _reader(home).count(scope.filters(status=status or None))


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def request_page(
    home: str, version: str, scope: Scope, status: tuple[str, ...], order_by: str,
    descending: bool, page: int, size: int,
) -> pd.DataFrame:  # fmt: skip
    """One page of the log (server-side ORDER BY / LIMIT / OFFSET)."""
    return _reader(home).events(
        scope.filters(status=status or None), LOG_COLUMNS, order_by, descending,
        limit=size, offset=page * size,
    )  # fmt: skip


def request_detail(request_id: str) -> dict[str, Any] | None:
    """Every field of one request, or None."""
    df = reader().sql("SELECT * FROM events WHERE request_id = ? LIMIT 1", [request_id])
    return None if df.empty else df.iloc[0].to_dict()


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def errors_by_type(home: str, version: str, scope: Scope) -> pd.DataFrame:
    """Failed calls grouped by error type and provider."""
    where, params = _where(scope, status=ERROR_STATUSES)
    sql = (
        "SELECT coalesce(error_type, status) AS error_type, provider, count(*) AS errors,"
        " max(ts) AS last_seen, any_value(error_message) AS example"
        f" FROM events{where} GROUP BY ALL ORDER BY errors DESC, error_type, provider"
    )
    return _reader(home).sql(sql, params)


# ---- import / export -----------------------------------------------------------------------


@st.cache_data(**CACHE)  # type: ignore[call-overload]
def import_preview(content: bytes) -> Any:
    """core.importer.read_preview of an uploaded file (columns, sample, suggested mapping)."""
    from core.importer import read_preview

    return read_preview(content)


def export_bytes(scope: Scope, fmt: str) -> bytes:
    """The calls in ``scope`` as a CSV or Parquet file (built when the user clicks)."""
    from core.export import export

    data: bytes = export(reader(), scope.filters(), fmt)
    return data
