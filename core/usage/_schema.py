"""The usage event and its one ordered Arrow schema (the source of truth for every file).

Journal lines, Parquet segments and query results all follow ``SCHEMA`` column by column;
``UsageEvent``'s fields are declared in the same order (a test checks it).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
import pyarrow as pa

from core import clock
from core.types import pico_to_usd

Status = Literal["ok", "error", "blocked", "rate_limited", "skipped"]
STATUSES: tuple[str, ...] = ("ok", "error", "blocked", "rate_limited", "skipped")

_S, _I64, _B = pa.string(), pa.int64(), pa.bool_()

SCHEMA = pa.schema(
    [
        pa.field("request_id", _S, nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("org", _S),
        pa.field("project", _S),
        pa.field("user", _S),
        pa.field("task", _S),
        pa.field("app", _S),
        pa.field("tags", pa.list_(_S)),
        pa.field("provider", _S),
        pa.field("model", _S),
        pa.field("requested_model", _S),
        pa.field("status", _S),
        pa.field("error_type", _S),
        pa.field("error_message", _S),
        pa.field("attempt", pa.int32()),
        pa.field("input_tokens", _I64),
        pa.field("cached_input_tokens", _I64),
        pa.field("cache_write_tokens", _I64),
        pa.field("output_tokens", _I64),
        pa.field("reasoning_tokens", _I64),
        pa.field("usage_estimated", _B),
        pa.field("cost_picousd", _I64),
        pa.field("cost_input_picousd", _I64),
        pa.field("cost_cached_input_picousd", _I64),
        pa.field("cost_cache_write_picousd", _I64),
        pa.field("cost_output_picousd", _I64),
        pa.field("cost_reasoning_picousd", _I64),
        pa.field("saved_picousd", _I64),
        pa.field("unpriced", _B),
        pa.field("latency_ms", pa.float64()),
        pa.field("ttft_ms", pa.float64()),
        pa.field("cache_hit", _B),
        pa.field("ai_called", _B),
        pa.field("degraded", _B),
        pa.field("route_reason", _S),
        pa.field("criticality", _S),
        pa.field("source", _S),
        pa.field("prompt", _S),
        pa.field("response", _S),
        pa.field("metadata", _S),  # JSON text of a dict[str, str]
        # added later (older segments read them as NULL):
        pa.field("cache_write_1h_tokens", _I64),  # part of cache_write_tokens with a 1h TTL
        pa.field("price_flags", pa.list_(_S)),  # core.pricing.rules.PRICE_FLAGS
        pa.field("key", _S),  # the gateway's virtual key (its name); older files lack it
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
METADATA_INDEX = COLUMNS.index("metadata")


def _utcnow() -> datetime:
    return clock.now()


@dataclass(slots=True, kw_only=True)
class UsageEvent:
    """One call's record. Money in integer picodollars; token classes are disjoint (see Usage)."""

    request_id: str
    ts: datetime = field(default_factory=_utcnow)
    org: str | None = None
    project: str | None = None
    user: str | None = None
    task: str | None = None
    app: str | None = None
    tags: tuple[str, ...] = ()
    provider: str
    model: str
    requested_model: str | None = None
    status: Status = "ok"
    error_type: str | None = None
    error_message: str | None = None
    attempt: int = 1
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost_picousd: int = 0
    cost_input_picousd: int = 0
    cost_cached_input_picousd: int = 0
    cost_cache_write_picousd: int = 0
    cost_output_picousd: int = 0
    cost_reasoning_picousd: int = 0
    saved_picousd: int = 0
    unpriced: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cache_hit: bool = False
    ai_called: bool = True
    degraded: bool = False
    route_reason: str | None = None
    criticality: str = "normal"
    source: str = "app"
    prompt: str | None = None
    response: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    cache_write_1h_tokens: int = 0
    price_flags: tuple[str, ...] = ()
    key: str | None = None

    @property
    def cost_usd(self) -> Decimal:
        return pico_to_usd(self.cost_picousd)


# One C call turns an event into a tuple in schema order: the hot path of UsageLog.append.
event_row = operator.attrgetter(*COLUMNS)
assert tuple(f.name for f in fields(UsageEvent)) == COLUMNS


def _metadata_json(value: Any) -> str:
    return orjson.dumps(value).decode() if value else "{}"


def rows_to_table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Tuples in schema order (``ts`` a datetime, ``metadata`` a dict) -> an Arrow table."""
    n = len(rows)
    columns: Iterable[Sequence[Any]] = zip(*rows, strict=True) if n else ([] for _ in COLUMNS)
    arrays = []
    for i, (f, col) in enumerate(zip(SCHEMA, columns, strict=True)):
        if i == METADATA_INDEX:
            col = [_metadata_json(m) for m in col]
        if n and col.count(None) == n:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array(col, type=f.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def conform(table: pa.Table) -> pa.Table:
    """Cast a table to SCHEMA's order and types; columns it lacks (older files) become nulls."""
    if table.schema.equals(SCHEMA):
        return table
    n = table.num_rows
    arrays = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def table_to_events(table: pa.Table) -> list[UsageEvent]:
    """Arrow rows -> UsageEvent objects, exactly as they were appended."""
    out = []
    for rec in conform(table).to_pylist():
        rec["ts"] = rec["ts"].astimezone(UTC)
        rec["tags"] = tuple(rec["tags"] or ())
        rec["price_flags"] = tuple(rec["price_flags"] or ())
        rec["metadata"] = orjson.loads(rec["metadata"]) if rec["metadata"] else {}
        out.append(UsageEvent(**{k: v for k, v in rec.items() if v is not None or k in _NULLABLE}))
    return out


_NULLABLE = frozenset(
    f.name
    for f in fields(UsageEvent)
    if f.default is None  # optional strings, ttft_ms
)
