"""Filters and the SQL the Reader runs. Every value is a ``?`` parameter; identifiers come
only from the whitelists below (a bad one raises ConfigError naming it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from core.usage._rollups import ROLLUP_DIMS, ROW_MEASURES
from core.usage._schema import COLUMNS

DIMENSIONS: tuple[str, ...] = (
    "org",
    "project",
    "user",
    "task",
    "app",
    "key",
    "provider",
    "model",
    "requested_model",
    "status",
    "error_type",
    "route_reason",
    "criticality",
    "source",
    "attempt",
    "cache_hit",
    "ai_called",
    "degraded",
    "unpriced",
    "usage_estimated",
    "tag",  # one row per tag of a call (a call with two tags counts under both)
)
GRAINS: tuple[str, ...] = ("minute", "hour", "day", "week", "month")
SUB_DAY = ("minute", "hour")  # grains whose periods carry their UTC offset (``utc_offset``)
FILTER_COLUMNS: tuple[str, ...] = (
    "org",
    "project",
    "user",
    "model",
    "provider",
    "task",
    "status",
    "source",
    "key",
)
TOKEN_COLUMNS: tuple[str, ...] = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
SAVED_PARTS = ("saved_cache_picousd", "saved_sampling_picousd")  # by the cache, by sampling
ERROR_CONDITION = "status NOT IN ('ok', 'skipped')"  # errors = error, blocked, rate_limited
_US = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
_QUARTER_HOUR_US = 900_000_000  # every modern UTC offset is a multiple of 15 minutes

Values = str | Sequence[str] | None


def ident(name: str) -> str:
    """Quote a whitelisted column name ("user" is an SQL keyword)."""
    return f'"{name}"'


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Filters:
    """Which events to read. ``end`` is exclusive; naive datetimes are taken as UTC."""

    start: datetime | None = None
    end: datetime | None = None
    org: Values = None
    project: Values = None
    user: Values = None
    model: Values = None
    provider: Values = None
    task: Values = None
    status: Values = None
    source: Values = None
    key: Values = None
    tag: Values = None  # calls carrying any of these tags

    def cuts(self) -> tuple[datetime, ...] | None:
        """The instants these filters compare ``ts`` with (``start``, ``end``), or None
        when a tag filter applies (rollups keep no tags, so such a query reads raw events):
        what ``Reader.sql(..., cuts=...)`` takes to read rollups for whole hours."""
        if self.tag is not None:
            return None
        return tuple(_utc(v) for v in (self.start, self.end) if v is not None)

    def where(self) -> tuple[str, list[object]]:
        """`` WHERE ...`` (or "") and its parameters."""
        parts: list[str] = []
        params: list[object] = []
        if self.start is not None:
            parts.append("ts >= ?")
            params.append(_utc(self.start))
        if self.end is not None:
            parts.append("ts < ?")
            params.append(_utc(self.end))
        for column in FILTER_COLUMNS:
            value = getattr(self, column)
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            if not all(isinstance(v, str) for v in values):
                raise ConfigError(f"filter {column} takes strings", field=column)
            if not values:
                parts.append("FALSE")
                continue
            parts.append(f"{ident(column)} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        if self.tag is not None:
            tags = [self.tag] if isinstance(self.tag, str) else list(self.tag)
            if not all(isinstance(v, str) for v in tags):
                raise ConfigError("filter tag takes strings", field="tag")
            marks = ", ".join("?" * len(tags))
            parts.append(
                f"list_has_any(coalesce(tags, []), [{marks}]::VARCHAR[])" if tags else "FALSE"
            )
            params.extend(tags)
        return (" WHERE " + " AND ".join(parts) if parts else ""), params


def check_dims(dims: Sequence[str]) -> list[str]:
    if isinstance(dims, str):
        dims = [dims]
    for d in dims:
        if d not in DIMENSIONS:
            raise ConfigError(
                f"unknown dimension {d!r}; choose from {', '.join(DIMENSIONS)}", field=str(d)
            )
    if len(set(dims)) != len(dims):
        raise ConfigError(f"repeated dimension in {list(dims)}", field="dims")
    return list(dims)


def check_columns(columns: Sequence[str], what: str = "column") -> list[str]:
    for c in columns:
        if c not in COLUMNS:
            raise ConfigError(f"unknown {what} {c!r}", field=str(c))
    return list(columns)


def check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}", field="tz") from None
    return tz


def from_facts(dims: Sequence[str], filters: Filters | None = None) -> bool:
    """Can this query read the view ``facts`` (raw events plus the hourly rollups of pruned
    segments), i.e. does it group and filter only by rollup dimensions?"""
    used = set(dims)
    if filters is not None:
        used |= {c for c in FILTER_COLUMNS if getattr(filters, c) is not None}
    return used <= set(ROLLUP_DIMS)


def spend_sql(
    dims: list[str],
    grain: str | None,
    filters: Filters,
    tz: str,
    money: str,
    limit: int | None = None,
) -> tuple[str, list[object]]:
    """Spend grouped by ``dims`` (and a period). Rows are first grouped by an integer time
    bucket (cheap on millions of rows), then the few buckets are mapped to calendar periods
    in ``tz`` and summed again. ``money`` is the SQL type of the exact sums (BIGINT|VARCHAR).
    Queries over rollup dimensions read ``facts`` (exact for pruned periods too). Besides the
    money, tokens, requests, errors and cache hits, each row counts its calls logged unpriced
    (``unpriced_calls``: their cost is unknown, so in no cost sum; not named ``unpriced``,
    which is a dimension). A sum over nothing but NULLs (a
    group of calls logged without a cost) is 0, never NULL. ``limit``: at most that many
    rows (the caller asks one more than it will take, to tell that there were more)."""
    if grain is not None and grain not in GRAINS:
        choices = ", ".join(GRAINS)
        raise ConfigError(f"unknown grain {grain!r}; choose from {choices}", field="grain")
    where, where_params = filters.where()
    d = [ident(x) for x in dims]
    sums = [f"sum({c}) AS {c}" for c in (*TOKEN_COLUMNS, "cost_picousd", "saved_picousd")]
    facts = from_facts(dims, filters)
    inner_cols = [
        *d,
        "sum(requests) AS requests" if facts else "count(*) AS requests",
        *sums,
        f"sum(requests) FILTER (WHERE {ERROR_CONDITION}) AS errors"
        if facts
        else f"count(*) FILTER (WHERE {ERROR_CONDITION}) AS errors",
        "sum(cache_hits) AS cache_hits"
        if facts
        else "count(*) FILTER (WHERE cache_hit) AS cache_hits",
        *(f"sum({c if facts else ROW_MEASURES[c]}) AS {c}" for c in SAVED_PARTS),
        "sum(unpriced) AS unpriced_calls"
        if facts
        else "count(*) FILTER (WHERE unpriced) AS unpriced_calls",
    ]
    outer_cols = [
        *d,
        "sum(requests)::BIGINT AS requests",
        *(f"coalesce(sum({c}), 0)::BIGINT AS {c}" for c in TOKEN_COLUMNS),
        f"coalesce(sum(cost_picousd), 0)::HUGEINT::{money} AS cost_picousd",
        "CAST(coalesce(sum(cost_picousd), 0) AS DOUBLE) / 1e12 AS cost_usd",
        f"coalesce(sum(saved_picousd), 0)::HUGEINT::{money} AS saved_picousd",
        "coalesce(sum(errors), 0)::BIGINT AS errors",
        "coalesce(sum(cache_hits), 0)::BIGINT AS cache_hits",
        *(f"coalesce(sum({c}), 0)::HUGEINT::{money} AS {c}" for c in SAVED_PARTS),
        "coalesce(sum(unpriced_calls), 0)::BIGINT AS unpriced_calls",
    ]
    params: list[object] = []
    order = ["cost_picousd DESC", *d]
    if grain is not None:
        if grain == "minute":  # a minute bucket is a local minute in every time zone
            bucket = _US["minute"]
        else:
            bucket = _US["hour" if grain == "hour" else "day"] if tz == "UTC" else _QUARTER_HOUR_US
        inner_cols.insert(0, "epoch_us(ts) // ? AS bucket")
        outer_cols.insert(
            0, "date_trunc(?, timezone(?, make_timestamp(bucket * ?)::TIMESTAMPTZ)) AS period"
        )
        params = [grain, tz, bucket]
        order.insert(0, "period")
        if grain in SUB_DAY:  # the repeated wall-clock hour of a DST fall-back: two periods
            outer_cols.append(  # last: the columns start with period and the dimensions
                "((epoch_us(timezone(?, make_timestamp(bucket * ?)::TIMESTAMPTZ)) - bucket * ?)"
                " // 60000000)::INTEGER AS utc_offset",
            )
            params += [tz, bucket, bucket]
            order.insert(1, "utc_offset DESC")
        params.append(bucket)
    source = "facts" if facts else "events"
    if "tag" in dims:  # one row per tag; untagged calls once, with tag NULL
        tags = "CASE WHEN len(coalesce(tags, [])) = 0 THEN [NULL::VARCHAR] ELSE tags END"
        source = f"(SELECT *, unnest({tags}) AS tag FROM {source})"
    inner = f"SELECT {', '.join(inner_cols)} FROM {source}{where} GROUP BY ALL"
    sql = f"SELECT {', '.join(outer_cols)} FROM ({inner}) GROUP BY ALL ORDER BY {', '.join(order)}"
    if limit is not None:
        return sql + " LIMIT ?", [*params, *where_params, int(limit)]
    return sql, params + where_params
