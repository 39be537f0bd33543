"""Export usage events (or any DataFrame) as CSV or Parquet bytes, with money exact.

    export(Reader(), Filters(org="acme"), "csv")     # the filtered events, oldest first
    frame_to_bytes(reader.spend_by(["model"]), "parquet")

Money columns ``X_picousd`` (integer picodollars) become ``X_usd``: exact decimal strings with
12 decimals in CSV (``"0.000056550000"``), ``decimal128(38, 12)`` in Parquet; a float
``X_usd`` next to an ``X_picousd`` (as ``spend_by`` returns) is replaced by the exact one.
In CSV, timestamps are ISO 8601 (UTC ones end in ``Z``) and tag lists are joined with ``;``.
Text cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
CR, after any leading quotes) get a ``'`` in front (OWASP CSV injection); numbers and money
are never touched, so a negative amount stays a number. ``unescape_cell`` undoes it exactly.
A call logged ``unpriced`` exports empty cost cells (its cost is unknown, not $0).
The events export ends with a ``refund`` column: true on a row with a negative cost (a refund
or credit), the only rows on which Costline's import accepts a negative cost.
Costline's own import reads these CSV files back (cost kept exactly, tokens as exported).
"""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.errors import ConfigError
from core.usage import Filters, Reader, conform

__all__ = [
    "FORMATS",
    "MIME_TYPES",
    "escape_cells",
    "escape_frame",
    "events_table",
    "export",
    "frame_to_bytes",
    "is_cost",
    "refunds",
    "table_to_bytes",
    "unknown_costs",
    "unescape_cell",
    "unescape_cells",
    "usd_columns",
]

FORMATS: tuple[str, ...] = ("csv", "parquet")
MIME_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
MONEY_SUFFIX, USD_SUFFIX = "_picousd", "_usd"
SCALE = 12
USD_TYPE = pa.decimal128(38, SCALE)
FORMULA = r"^'*[=+\-@\t\r]"  # what a spreadsheet may run; quotes first keep it reversible


def events_table(
    source: Reader | Path | str | None = None, filters: Filters | None = None
) -> pa.Table:
    """The filtered events, oldest first, as an Arrow table of the usage SCHEMA (exact ints;
    a pandas round trip would turn nullable int columns into floats)."""
    if isinstance(source, Reader):
        return _query(source, filters)
    with Reader(Path(source) if source is not None else None) as reader:
        return _query(reader, filters)


def _query(reader: Reader, filters: Filters | None) -> pa.Table:
    # Reader has no Arrow-returning query yet; its own SQL builder and retrying runner are
    # used so that the filters mean exactly what they mean on the Requests page.
    sql, params = reader._events_sql(filters, None, "ts", False, None, 0)
    table: pa.Table = reader._run(sql, params, lambda rel: rel.to_arrow_table())
    return conform(table)


def export(
    source: Reader | Path | str | None = None, filters: Filters | None = None, fmt: str = "csv"
) -> bytes:
    """The filtered events of a Reader (or of the usage log in a home directory)."""
    _check(fmt)
    return table_to_bytes(refunds(unknown_costs(events_table(source, filters))), fmt)


def refunds(table: pa.Table) -> pa.Table:
    """The table with a last ``refund`` column: whether the row has a negative cost (the total
    or a token class's), as a refund or credit logged against the usage does. Costline's
    import accepts a negative cost only on a row marked so (a file from elsewhere holding
    one is more likely broken than a refund)."""
    negative = pa.array(np.zeros(table.num_rows, bool))
    for name in table.column_names:
        if is_cost(name):
            below = pc.fill_null(pc.less(table.column(name), 0), False)
            negative = pc.or_(negative, below)
    return table.append_column("refund", negative)


def unknown_costs(table: pa.Table) -> pa.Table:
    """A call logged ``unpriced`` has an unknown cost: its money cells are empty, not 0
    (a '0.000000000000' read back, by Costline's import or a spreadsheet, is a priced $0)."""
    if "unpriced" not in table.column_names:
        return table
    unknown = pc.fill_null(table.column("unpriced"), False)
    for i, name in enumerate(table.column_names):
        if is_cost(name):
            col = table.column(name)
            table = table.set_column(i, name, pc.if_else(unknown, pa.scalar(None, col.type), col))
    return table


def is_cost(name: str) -> bool:
    """Whether a money column is a cost (``cost_picousd``, ``cost_input_picousd``...): what an
    unpriced call does not know (its savings are still figures)."""
    return name.startswith("cost_") and name.endswith(MONEY_SUFFIX)


def frame_to_bytes(frame: pd.DataFrame | pa.Table, fmt: str = "csv") -> bytes:
    """Any DataFrame (a query result, a forecast) as CSV or Parquet, money exact."""
    _check(fmt)
    if isinstance(frame, pa.Table):
        return table_to_bytes(frame, fmt)
    frame = frame.reset_index(drop=True)
    arrays: dict[str, pa.Array] = {}
    for name in frame.columns:
        col = frame[name]
        if str(name).endswith(MONEY_SUFFIX) and col.dtype == object:  # Python ints > int64
            arrays[str(name)] = pa.array(
                [None if pd.isna(v) else Decimal(int(v)) for v in col.tolist()],
                pa.decimal128(38, 0),
            )
        else:
            arrays[str(name)] = pa.array(col, from_pandas=True)
    return table_to_bytes(pa.table(arrays), fmt)


def table_to_bytes(table: pa.Table, fmt: str = "csv") -> bytes:
    _check(fmt)
    table = usd_columns(table)
    buf = io.BytesIO()
    if fmt == "parquet":
        pq.write_table(table, buf, compression="zstd")
    else:
        pacsv.write_csv(_csv_ready(table), buf)
    return buf.getvalue()


def usd_columns(table: pa.Table) -> pa.Table:
    """Each ``X_picousd`` column -> ``X_usd`` as decimal128(38, 12), in the same place."""
    names = table.column_names
    out: dict[str, pa.Array | pa.ChunkedArray] = {}
    for name in names:
        col = table.column(name)
        if name.endswith(MONEY_SUFFIX):
            usd = name[: -len(MONEY_SUFFIX)] + USD_SUFFIX
            out[usd] = _to_usd(col)
        elif name.endswith(USD_SUFFIX) and name[: -len(USD_SUFFIX)] + MONEY_SUFFIX in names:
            continue  # a float twin of an exact column
        else:
            out[name] = col
    return pa.table(out)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", field="fmt")


def _to_usd(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_integer(arr.type):
        return _decimal_from_int64(arr.cast(pa.int64()))
    return _decimal_from_ints([None if v is None else int(v) for v in arr.to_pylist()])


def _decimal_from_int64(arr: pa.Array) -> pa.Array:
    """Picodollars -> decimal128(38, 12) with the same unscaled integers (no arithmetic)."""
    pico = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    words = np.empty(2 * len(pico), np.int64)
    words[0::2] = pico
    words[1::2] = np.where(pico < 0, -1, 0)  # sign extension to 128 bits (little-endian)
    dec = pa.Array.from_buffers(USD_TYPE, len(pico), [None, pa.py_buffer(words.tobytes())])
    if arr.null_count:
        dec = pc.if_else(pc.is_valid(arr), dec, pa.scalar(None, USD_TYPE))
    return dec


def _decimal_from_ints(values: list[Any]) -> pa.Array:
    """Picodollars as Python ints (any size) -> decimal128(38, 12)."""
    return pa.array(
        [None if v is None else Decimal(int(v)).scaleb(-SCALE) for v in values], USD_TYPE
    )


def _usd_text(dec: pa.Array) -> pa.Array:
    """decimal128(38, 12) -> "-12.000056550000" (Arrow's own cast writes "0E-12")."""
    words = np.frombuffer(dec.buffers()[1], np.int64)[2 * dec.offset : 2 * (dec.offset + len(dec))]
    low, high = words[0::2], words[1::2]
    fits = bool(np.all(high == np.where(low < 0, -1, 0)))
    if not fits:  # beyond int64 picodollars: rare, exact Python formatting
        return pa.array([None if v is None else f"{v:.12f}" for v in dec.to_pylist()])
    mag = np.abs(low)
    whole = pa.array(mag // 10**SCALE).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(mag % 10**SCALE).cast(pa.string()), SCALE, "0")
    sign = pc.if_else(pa.array(low < 0), "-", "")
    text = pc.binary_join_element_wise(sign, whole, ".", frac, "")
    return pc.if_else(pc.is_valid(dec), text, pa.scalar(None, pa.string()))


def escape_cells(col: pa.Array) -> pa.Array:
    """A text column with each formula-like cell prefixed by ``'`` (OWASP CSV injection)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col
    risky = pc.fill_null(pc.match_substring_regex(col, FORMULA), False)
    if not pc.any(risky).as_py():
        return col
    quote = pa.scalar("'", col.type)
    return pc.if_else(risky, pc.binary_join_element_wise(quote, col, pa.scalar("", col.type)), col)


def escape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with formula-like text cells escaped (numbers untouched), for
    CSV written with pandas."""
    out = frame.copy()
    for name in out.columns:
        col = out[name]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            out[name] = ["'" + v if isinstance(v, str) and _FORMULA_RE.match(v) else v for v in col]
    return out


def unescape_cells(col: pa.Array) -> pa.Array:
    """``escape_cells`` undone: a ``'`` before a formula-like text is dropped (for reading
    Costline's own CSV, or any OWASP-escaped file, back)."""
    quoted = pc.fill_null(pc.match_substring_regex(col, "^'" + FORMULA[1:]), False)
    if not pc.any(quoted).as_py():
        return col
    return pc.if_else(quoted, pc.utf8_slice_codeunits(col, 1), col)


def unescape_cell(text: str) -> str:
    """The value ``escape_cells`` was given (for reading Costline's own CSV back)."""
    return text[1:] if text.startswith("'") and _FORMULA_RE.match(text) else text


_FORMULA_RE = re.compile(FORMULA)


def _csv_ready(table: pa.Table) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            col = escape_cells(col)
        elif pa.types.is_decimal(t):
            col = _usd_text(col.cast(USD_TYPE))
        elif pa.types.is_timestamp(t):
            fmt = "%Y-%m-%dT%H:%M:%S" + ("Z" if t.tz in ("UTC", "+00:00") else "")
            if t.tz not in (None, "UTC", "+00:00"):
                fmt += "%z"
            col = pc.strftime(col, fmt)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            col = escape_cells(pc.binary_join(col.cast(pa.list_(pa.string())), ";"))
        elif pa.types.is_nested(t) or pa.types.is_dictionary(t):
            col = pa.array(
                [
                    None
                    if v is None
                    else json.dumps(v, default=str)
                    if not isinstance(v, str)
                    else v
                    for v in col.to_pylist()
                ],
                pa.string(),
            )
            col = escape_cells(col)
        cols[name] = col
    return pa.table(cols)
