"""The console's read side: small cached functions over core.usage.Reader.

Every query aggregates in DuckDB (the raw log is never pulled into pandas) and is cached with
``st.cache_data`` keyed on ``Reader.data_version()``, so a new segment invalidates it. Money
comes back as exact integer picodollars; pages convert it for display with ``view.Money``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from console.view import FILTER_DIMS, Scope, kpi_windows
from core.export import export
from core.importer import (
    ImportResult,
    Preview,
    Question,
    file_questions,
    import_csv,
    parse_sample,
    read_preview,
    replace_preview,
)
from core.settings import costline_home
from core.usage import Reader

ERROR_STATUSES = ("error", "blocked", "rate_limited")
NONE = "(none)"
TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


cached = st.cache_data(ttl=600, max_entries=256, show_spinner=False)


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


@cached
def filter_options(home: str, version: str) -> dict[str, list[str]]:
    """Distinct values of each filter dimension, over the whole log (one scan)."""
    cols = ", ".join(f'list(DISTINCT "{d}") AS "{d}"' for d in FILTER_DIMS)
    row = _reader(home).sql(f"SELECT {cols} FROM events").iloc[0]
    return {d: sorted(v for v in (row[d] if row[d] is not None else []) if v) for d in FILTER_DIMS}


@cached
def event_count(home: str, version: str) -> int:
    return _reader(home).count()


# ---- overview ------------------------------------------------------------------------------


WINDOW_SPEND_SQL = "CAST(sum(cost_picousd) FILTER (WHERE ts >= ? AND ts < ?) AS VARCHAR)"


@cached
def window_spend(home: str, version: str, scope: Scope, now: datetime) -> dict[str, int]:
    """Spend of each KPI window (today, yesterday, mtd, prev_mtd, last30, prev30) under the
    scope's dimension filters, in one scan that reads only ts and cost."""
    windows = kpi_windows(scope.tz, now)
    where, where_params = _where(
        scope, start=min(s for s, _ in windows.values()), end=max(e for _, e in windows.values())
    )
    cols = ", ".join(f"{WINDOW_SPEND_SQL} AS {name}" for name in windows)
    params = [t for bounds in windows.values() for t in bounds]
    row = _reader(home).sql(f"SELECT {cols} FROM events{where}", params + where_params).iloc[0]
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
    raw = _reader(home).spend_by(
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
    where, params = _where(scope)
    sql = (
        f'SELECT "{who}" AS name, CAST(sum(cost_picousd) AS VARCHAR) AS cost_picousd,'
        f" count(*) AS requests FROM events{where} GROUP BY 1"
        " ORDER BY sum(cost_picousd) DESC, name LIMIT ?"
    )
    df = _reader(home).sql(sql, [*params, int(n)])
    df["name"] = df["name"].astype(object).where(df["name"].notna(), NONE)
    df["cost_picousd"] = pd.Series([int(v) for v in df["cost_picousd"]], dtype=object)
    return df


# ---- requests ------------------------------------------------------------------------------

LOG_COLUMNS = [
    "ts",
    "org",
    "user",
    "task",
    "requested_model",
    "model",
    "provider",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_picousd",
    "latency_ms",
    "cache_hit",
    "status",
    "error_type",
    "route_reason",
    "request_id",
]
SORTABLE = {
    "ts": "Time",
    "cost_picousd": "Cost",
    "latency_ms": "Latency",
    "output_tokens": "Output tokens",
    "input_tokens": "Input tokens",
}


@cached
def request_count(home: str, version: str, scope: Scope, status: tuple[str, ...]) -> int:
    return _reader(home).count(scope.filters(status=status or None))


@cached
def request_page(
    home: str,
    version: str,
    scope: Scope,
    status: tuple[str, ...],
    order_by: str,
    descending: bool,
    page: int,
    size: int,
) -> pd.DataFrame:
    """One page of the log (server-side ORDER BY / LIMIT / OFFSET)."""
    return _reader(home).events(
        scope.filters(status=status or None),
        LOG_COLUMNS,
        order_by,
        descending,
        limit=size,
        offset=page * size,
    )


def request_detail(request_id: str) -> dict[str, Any] | None:
    """Every field of one request, or None."""
    df = reader().sql("SELECT * FROM events WHERE request_id = ? LIMIT 1", [request_id])
    return None if df.empty else {str(k): v for k, v in df.iloc[0].items()}


@cached
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


@cached
def import_preview(content: bytes) -> Preview:
    """core.importer.read_preview of an uploaded file (columns, sample, suggested mapping)."""
    return read_preview(content)


Mapping_ = tuple[tuple[str, str], ...]  # a mapping as a hashable cache key
Answers = tuple[tuple[str, str | None], ...]


@cached
def import_questions(content: bytes, mapping: Mapping_) -> list[Question]:
    """The decimal-mark / date-order questions the mapped columns raise."""
    return file_questions(content, dict(mapping))


@cached
def import_sample(
    content: bytes, mapping: Mapping_, inclusive: bool, answers: Answers
) -> pd.DataFrame:
    """The first rows as they would be imported, with each answer applied."""
    a = dict(answers)
    return parse_sample(
        content,
        dict(mapping),
        tokens_inclusive=inclusive,
        decimal=a.get("decimal"),
        date_order=a.get("date_order"),
    )


@cached
def import_check(
    home: str, version: str, content: bytes, mapping: Mapping_, inclusive: bool, answers: Answers
) -> ImportResult:
    """A dry run over every row: bad rows, duplicates already in the log, what would be
    imported. Nothing is written."""
    a = dict(answers)
    return import_csv(
        content,
        dict(mapping),
        home=Path(home),
        tokens_inclusive=inclusive,
        decimal=a.get("decimal"),
        date_order=a.get("date_order"),
        dry_run=True,
    )


def replace_count(source: str, start: datetime, end: datetime) -> tuple[int, Decimal]:
    """(rows, USD) of ``source`` in [start, end) a replace would remove."""
    return replace_preview(source, start, end, Path(home()))


def export_bytes(scope: Scope, fmt: str) -> bytes:
    """The calls in ``scope`` as a CSV or Parquet file (built when the user clicks)."""
    return export(reader(), scope.filters(), fmt)
