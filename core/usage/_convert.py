"""Journal file -> Parquet segment, parsed by DuckDB's JSON reader.

Both a live writer's background flush and recover() use ``convert_journal``. DuckDB parses the
JSON lines in C++ without holding the GIL, so a writer keeps appending while its last journal
is converted on another core.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

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


def _column(i: int, f: pa.Field, fast: bool) -> str:
    """SQL turning element i (1-based) of a journal line into column f.

    fast: ``l`` is the list of all elements as text, from one parse of the line;
    otherwise ``j`` is the line parsed as a JSON[] (tolerates bad lines, twice as slow).
    """
    typ = DUCK_TYPES[str(f.type)]
    if fast:
        text = f"l[{i}]"
        json = f"CAST({text} AS JSON)"
    else:
        json, text = f"j[{i}]", f"j[{i}]->>'$'"
    if f.name == "metadata":
        expr = f"coalesce({text if fast else f'CAST({json} AS VARCHAR)'}, '{{}}')"
    elif typ in ("VARCHAR", "TIMESTAMPTZ"):
        expr = text if typ == "VARCHAR" else f"TRY_CAST({text} AS {typ})"
    elif typ == "VARCHAR[]":
        expr = f"TRY_CAST({json} AS {typ})"
    else:
        expr = f"TRY_CAST({text if fast else json} AS {typ})"
    return f'{expr} AS "{f.name}"'


_PATHS = ", ".join(f"'$[{i}]'" for i in range(len(SCHEMA)))
MAX_LINE = 33554432  # bytes; a larger event (huge prompt body) is skipped with a warning
_LINES = (
    # Each line is one field: orjson escapes every control character, so 0x1f never occurs.
    "read_csv(?, columns = {'line': 'VARCHAR'}, delim = '\x1f', quote = '', escape = '',"
    " header = false, auto_detect = false, max_line_size = " + str(MAX_LINE) + ")"
)
FAST_SQL = (
    "SELECT "
    + ", ".join(_column(i, f, True) for i, f in enumerate(SCHEMA, 1))
    + f" FROM (SELECT json_extract_string(line, [{_PATHS}]) AS l FROM {_LINES})"
)
TOLERANT_SQL = (
    "SELECT "
    + ", ".join(_column(i, f, False) for i, f in enumerate(SCHEMA, 1))
    + " FROM read_json(?, format = 'newline_delimited', records = 'false',"
    " columns = {'j': 'JSON[]'}, ignore_errors = true, maximum_object_size = " + str(MAX_LINE) + ")"
    " WHERE j IS NOT NULL"
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


def drop_partial_tail(path: Path) -> int:
    """Cut a last line without its newline (a writer killed mid-write); return complete lines."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.warning(
            "dropping partial last line (%d bytes) of journal %s", len(data) - end, path.name
        )
        os.truncate(path, end)
    return data.count(b"\n", 0, end)


def convert_journal(
    path: Path, sdir: Path, stem: str, con: duckdb.DuckDBPyConnection | None = None
) -> int:
    """Write the journal's events as segment ``sdir/stem.parquet``; return the row count."""
    lines = drop_partial_tail(path)
    if not lines:
        return 0
    con = con or connect()
    try:
        table = arrow_table(con.sql(FAST_SQL, params=[str(path)]))
    except duckdb.Error as exc:  # an unreadable line: parse line by line, skipping bad ones
        log.warning("journal %s has unreadable lines (%s); reading it line by line", path.name, exc)
        table = arrow_table(con.sql(TOLERANT_SQL, params=[str(path)]))
    table = table.filter(pc.and_(pc.is_valid(table["request_id"]), pc.is_valid(table["ts"])))
    if table.num_rows < lines:
        log.warning("skipped %d unreadable lines of journal %s", lines - table.num_rows, path.name)
    if table.num_rows:
        write_segment(table, sdir, stem)
    return int(table.num_rows)
