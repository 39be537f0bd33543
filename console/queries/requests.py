"""The Requests page's reads: one page of the call log (sorted and paged in DuckDB), one
request's every field, and the failed calls by error type."""

from __future__ import annotations

from typing import Any

import pandas as pd

from console.queries.usage import cached, reader, reader_at, sql_where
from console.selection import Scope

ERROR_STATUSES = ("error", "blocked", "rate_limited")


LOG_COLUMNS = [
    "ts",
    "org",
    "user",
    "task",
    "key",
    "requested_model",
    "model",
    "provider",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_picousd",
    "unpriced",
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
    return reader_at(home).count(scope.filters(status=status or None))


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
    return reader_at(home).events(
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
    where, params = sql_where(scope, status=ERROR_STATUSES)
    sql = (
        "SELECT coalesce(error_type, status) AS error_type, provider, count(*) AS errors,"
        " max(ts) AS last_seen, any_value(error_message) AS example"
        f" FROM events{where} GROUP BY ALL ORDER BY errors DESC, error_type, provider"
    )
    return reader_at(home).sql(sql, params)
