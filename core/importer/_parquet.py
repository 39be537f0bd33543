"""Parquet usage files: read as the CSV text of the same table, so a Parquet file goes
through the very steps of a CSV one (mapping, questions, checks, row keys).

Every column becomes text a CSV export would hold: timestamps ISO 8601 (zoned ones in UTC
with ``Z``, naive ones without a zone: UTC), decimals exact (``0.000056550000``), integers
and floats as numbers, lists joined with ``;``, anything nested as JSON. Whatever the dtypes
(int32 or float tokens, millisecond or nanosecond times, dictionary strings, decimal or
float costs) the parsed rows, and so their keys, are those of the CSV of the same table:
Costline's Parquet export imported back, or next to its CSV export, adds nothing twice.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import ConfigError
from core.export import USD_TYPE
from core.export import _usd_text as usd_text

MAGIC = b"PAR1"


def is_parquet(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == MAGIC and data[-4:] == MAGIC


def _text(col: pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_dictionary(t):
        return _text(col.dictionary_decode())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.string())
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.string())
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return pc.strftime(col, "%Y-%m-%dT%H:%M:%S")
        utc = col.cast(pa.timestamp(t.unit, "UTC"))
        return pc.strftime(utc, "%Y-%m-%dT%H:%M:%SZ")
    if pa.types.is_decimal(t):
        if (
            t.scale <= USD_TYPE.scale
            and t.precision - t.scale <= USD_TYPE.precision - USD_TYPE.scale
        ):
            return usd_text(col.cast(USD_TYPE))  # exact, column-wise (Costline's own money)
        return pa.array([None if v is None else f"{v:f}" for v in col.to_pylist()], pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(col, "true", "false")
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        try:
            return pc.binary_join(col.cast(pa.list_(pa.string())), ";")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_date(t)
        or pa.types.is_time(t)
    ):
        return col.cast(pa.string())
    return pa.array(
        [None if v is None else json.dumps(v, default=str) for v in col.to_pylist()], pa.string()
    )


def to_csv(data: bytes) -> bytes:
    """The CSV text of a Parquet file's table (header first, every column as text)."""
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"cannot read the Parquet file: {exc}", field="file") from None
    names = [str(n) for n in table.column_names]
    cols = [_text(c.combine_chunks()) for c in table.columns]
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(cols, names=names), buf)
    return buf.getvalue()
