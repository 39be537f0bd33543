"""Journal file -> Parquet segment, parsed by DuckDB's JSON functions.

Both a live writer's background flush and recover() use ``convert_journal``. Python checks
each record's frame (length, CRC32; see _frame), then DuckDB parses the JSON in C++ without
holding the GIL, so a writer keeps appending while its last journal is converted on another
core. Torn records, failed checksums and values of the wrong type (a count that is text, an
integer over int64) go to the quarantine, never into the data set as NULL or $0.
"""

from __future__ import annotations

import array
import itertools
import logging
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from core.usage._frame import BadRecord, split_records
from core.usage._limits import MAX_EVENT_BYTES, shrink
from core.usage._quarantine import quarantine_records
from core.usage._schema import SCHEMA
from core.usage._segments import write_segment

log = logging.getLogger("costline.usage")

DUCK_TYPES = {
    "string": "VARCHAR",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "list<item: string>": "VARCHAR[]",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "bool": "BOOLEAN",
    "double": "DOUBLE",
}


def _column(i: int, f: pa.Field) -> str:
    """SQL turning element i (1-based) of ``l`` (every element of a record as text, from one
    parse of the line) into column f."""
    typ = DUCK_TYPES[str(f.type)]
    text = f"l[{i}]"
    if f.name == "metadata":
        expr = f"coalesce({text}, '{{}}')"
    elif typ == "VARCHAR":
        expr = text
    elif typ == "VARCHAR[]":
        expr = f"TRY_CAST(CAST({text} AS JSON) AS {typ})"
    else:
        expr = f"TRY_CAST({text} AS {typ})"
    return f'{expr} AS "{f.name}"'


def _check(i: int, f: pa.Field) -> str | None:
    """SQL naming column f when element i holds a value of the wrong type, else NULL."""
    typ = DUCK_TYPES[str(f.type)]
    name = f.name.replace("'", "")
    if f.name in ("request_id", "ts"):
        return f"WHEN \"{f.name}\" IS NULL THEN '{name}'"
    if f.name == "metadata":
        return (
            f"WHEN l[{i}] IS NOT NULL AND l[{i}] <> '{{}}' AND NOT (starts_with(l[{i}], '{{')"
            f" AND json_valid(l[{i}])) THEN '{name}'"
        )
    if typ == "VARCHAR":
        return None
    return f"WHEN l[{i}] IS NOT NULL AND \"{f.name}\" IS NULL THEN '{name}'"


_PATHS = ", ".join(f"'$[{i}]'" for i in range(len(SCHEMA)))
_CHECKS = " ".join(c for i, f in enumerate(SCHEMA, 1) if (c := _check(i, f)) is not None)
RECORDS_SQL = (
    f"SELECT * EXCLUDE (l), CASE {_CHECKS} END AS _bad FROM (SELECT "
    + ", ".join(_column(i, f) for i, f in enumerate(SCHEMA, 1))
    + f", l, n AS _n FROM (SELECT json_extract_string(line, [{_PATHS}]) AS l, n FROM _journal))"
)


def arrow_table(rel: duckdb.DuckDBPyRelation) -> pa.Table:
    """Run a relation into an Arrow table (to_arrow_table since DuckDB 1.4, arrow before)."""
    to_table = getattr(rel, "to_arrow_table", None)
    table: pa.Table = to_table() if to_table is not None else rel.arrow()
    return table


def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 1")  # leave the other core to the appending thread
    con.execute("SET memory_limit = '512MB'")
    return con


def _lines(payloads: list[bytes], numbers: list[int]) -> pa.Table:
    """(line, n) as an Arrow table, built from buffers: pa.array() would import pandas,
    which writers never load."""
    offsets = array.array("q", [0, *itertools.accumulate(map(len, payloads))])
    data = pa.py_buffer(b"".join(payloads))
    n = len(payloads)
    lines = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), data])
    nums = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(array.array("q", numbers))])
    return pa.Table.from_arrays([lines.cast(pa.large_string()), nums], names=["line", "n"])


def _parse_each(
    payloads: list[bytes], numbers: list[int], bad: list[BadRecord]
) -> tuple[list[bytes], list[int]]:
    """Keep the payloads that are JSON arrays (the slow path, after DuckDB refused a line)."""
    keep: list[bytes] = []
    kept: list[int] = []
    for p, n in zip(payloads, numbers, strict=True):
        try:
            ok = isinstance(orjson.loads(p), list)
        except orjson.JSONDecodeError:
            ok = False
        if ok:
            keep.append(p)
            kept.append(n)
        else:
            bad.append(BadRecord(n, p, "unreadable JSON"))
    return keep, kept


def _shrink_large(
    payloads: list[bytes], numbers: list[int], bad: list[BadRecord]
) -> tuple[list[bytes], list[int]]:
    """Cut the fields of events over MAX_EVENT_BYTES (journals written before the limit)."""
    if all(len(p) <= MAX_EVENT_BYTES for p in payloads):
        return payloads, numbers
    keep: list[bytes] = []
    kept: list[int] = []
    for p, n in zip(payloads, numbers, strict=True):
        if len(p) > MAX_EVENT_BYTES:
            try:
                p, _ = shrink(orjson.loads(p), orjson.dumps)
            except (orjson.JSONDecodeError, TypeError):
                bad.append(BadRecord(n, p[:MAX_EVENT_BYTES], "unreadable oversized record"))
                continue
        keep.append(p)
        kept.append(n)
    return keep, kept


def _typed(
    con: duckdb.DuckDBPyConnection,
    payloads: list[bytes],
    numbers: list[int],
    bad: list[BadRecord],
) -> pa.Table:
    """The records as a typed table, with ``_n`` (line) and ``_bad`` (a column of the wrong
    type, or NULL)."""
    try:
        lines = _lines(payloads, numbers)
        fast = True
    except pa.ArrowInvalid:  # invalid UTF-8 (an unframed line of an older version)
        fast = False
    for attempt in (0, 1):
        if not fast or attempt:
            payloads, numbers = _parse_each(payloads, numbers, bad)
            lines = _lines(payloads, numbers)
        con.register("_journal", lines)
        try:
            return arrow_table(con.sql(RECORDS_SQL))
        except duckdb.Error:
            if attempt or not fast:
                raise
            log.warning("a journal line is not valid JSON; checking line by line")
        finally:
            con.unregister("_journal")
    raise AssertionError("unreachable")


def convert_journal(
    path: Path, sdir: Path, stem: str, con: duckdb.DuckDBPyConnection | None = None
) -> int:
    """Write the journal's whole records as segment ``sdir/stem.parquet`` and its bad
    records (torn, failed checksum, wrong type) to the quarantine; return the rows written."""
    home = sdir.parent.parent
    data = path.read_bytes()
    payloads, numbers, bad = split_records(data)
    tail = data[data.rfind(b"\n") + 1 :]
    if tail:  # a writer stopped mid-record (killed, or a write failed and could not be cut)
        bad.append(BadRecord(data.count(b"\n"), tail, "torn tail (the writer stopped mid-record)"))
    payloads, numbers = _shrink_large(payloads, numbers, bad)
    table = None
    if payloads:
        table = _typed(con or connect(), payloads, numbers, bad)
        flags = table["_bad"]
        if flags.null_count < table.num_rows:
            where = {n: i for i, n in enumerate(numbers)}
            wrong = table.filter(pc.is_valid(flags))
            for n, col in zip(wrong["_n"].to_pylist(), flags.drop_null().to_pylist(), strict=True):
                bad.append(BadRecord(n, payloads[where[n]], f"wrong type in {col}"))
            table = table.filter(pc.is_null(flags))
        table = table.drop_columns(["_n", "_bad"])
    if bad:
        bad.sort(key=lambda b: b.line)
        quarantine_records(home, stem, bad)
    if table is None or not table.num_rows:
        return 0
    write_segment(table, sdir, stem)
    return int(table.num_rows)
