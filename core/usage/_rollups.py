"""Hourly rollups: exact aggregates of the usage log per hour and dimensions.

One rollup file per segment, ``events/rollups/<segment name>``: the segment's rows grouped
by UTC hour and ``ROLLUP_DIMS``, with exact integer sums (picodollars, tokens, counts). A
compaction writes the rollup of each merged segment right after the segment, and deletes
the rollups of the segments it removes. Retention (``_prune.py``) moves a
segment's rollup to ``events/rollups/pruned/`` before deleting the segment: from then on the
reader adds the pruned rollups to the raw rows, so totals, spend by period and by any
rollup dimension stay exact after the raw events are gone (see docs/retention.md).

A pruned rollup counts only while its segment is absent, so a crash between moving the
rollup and deleting the segment never counts a row twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from core.private import make_private, private_dir
from core.usage._convert import DUCK_TYPES
from core.usage._schema import COLUMNS, SCHEMA
from core.usage._segments import SUFFIX, SegmentInfo, events_dir, fsync_dir

ROLLUP_DIMS: tuple[str, ...] = tuple(
    d
    for d in ("org", "project", "user", "key", "model", "provider", "task", "status", "source")
    if d in COLUMNS
)
TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
COSTS = (
    "cost_picousd",
    "cost_input_picousd",
    "cost_cached_input_picousd",
    "cost_cache_write_picousd",
    "cost_output_picousd",
    "cost_reasoning_picousd",
    "saved_picousd",
)
# measure -> its value per raw event (summed per group); sums of sums when re-aggregating
ROW_MEASURES: dict[str, str] = {
    "requests": "1",
    **{c: f"coalesce({c}, 0)" for c in (*TOKENS, *COSTS)},
    "saved_cache_picousd": "CASE WHEN cache_hit THEN coalesce(saved_picousd, 0) ELSE 0 END",
    "saved_sampling_picousd": (
        "CASE WHEN NOT coalesce(cache_hit, false) AND NOT coalesce(ai_called, true)"
        " THEN coalesce(saved_picousd, 0) ELSE 0 END"
    ),
    "cache_hits": "CASE WHEN cache_hit THEN 1 ELSE 0 END",
    "unpriced": "CASE WHEN unpriced THEN 1 ELSE 0 END",
    "ai_skipped": "CASE WHEN NOT ai_called THEN 1 ELSE 0 END",
    "degraded": "CASE WHEN degraded THEN 1 ELSE 0 END",
    "estimated": "CASE WHEN usage_estimated THEN 1 ELSE 0 END",
    "latency_ms_sum": "coalesce(latency_ms, 0)",
}
MEASURES: tuple[str, ...] = tuple(ROW_MEASURES)
_FLOAT = {"latency_ms_sum"}
# picodollar sums: DECIMAL(38,0) in the file (Parquet's exact 128-bit integer; DuckDB writes a
# HUGEINT as a DOUBLE), so one hour of one group may hold any amount up to 10**38 pUSD; an
# int64 failed the prune of an hour above 2**63 pUSD (~$9.22M). Files written before hold
# BIGINT: readers take both (``ROLLUP_READ``)
MONEY: tuple[str, ...] = tuple(m for m in MEASURES if m.endswith("_picousd"))
MONEY_TYPE = "DECIMAL(38,0)"


def _stored_type(measure: str) -> str:
    if measure in _FLOAT:
        return "DOUBLE"
    return MONEY_TYPE if measure in MONEY else "BIGINT"


def rollup_columns(money: str = "HUGEINT") -> str:
    """The measures of rollup files as readers take them: money as HUGEINT (or ``money``,
    e.g. DECIMAL(38,0), which reads the files' own type ~5x faster) whether the file holds
    DECIMAL(38,0) or (written before) BIGINT; read with ``union_by_name``."""
    return ", ".join(f"CAST({m} AS {money}) AS {m}" if m in MONEY else m for m in MEASURES)


HOUR_US = 3_600_000_000


def rollups_dir(home: Path | None = None) -> Path:
    return events_dir(home) / "rollups"


def pruned_dir(home: Path | None = None) -> Path:
    return rollups_dir(home) / "pruned"


def _q(name: str) -> str:
    return f'"{name}"'


def aggregate_sql(source: str, *, raw: bool) -> str:
    """GROUP BY hour and ROLLUP_DIMS over ``source``: raw events (``raw``) or rollup rows."""
    dims = ", ".join(_q(d) for d in ROLLUP_DIMS)
    if raw:
        hour = f"make_timestamptz((epoch_us(ts) // {HOUR_US}) * {HOUR_US})"
        values = ROW_MEASURES
        bounds = "min(ts) AS min_ts, max(ts) AS max_ts"
    else:
        hour = "hour"
        values = {m: m for m in MEASURES}
        bounds = "min(min_ts) AS min_ts, max(max_ts) AS max_ts"
    sums = ", ".join(f"CAST(sum({expr}) AS {_stored_type(m)}) AS {m}" for m, expr in values.items())
    return f"SELECT {hour} AS hour, {dims}, {sums}, {bounds} FROM {source} GROUP BY ALL"


_local = threading.local()
# a forked child must not use the parent's DuckDB connection (its threads are gone)
os.register_at_fork(after_in_child=lambda: _local.__dict__.clear())


def _connect(home: Path | None) -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection for rollups (made once: connecting costs ~15 ms)."""
    con: duckdb.DuckDBPyConnection | None = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET threads = 1")
        con.execute("SET memory_limit = '256MB'")  # a large rollup spills instead of growing
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")  # never print into a caller's stdout
        _local.con = con
    con.execute(f"SET temp_directory = {_literal(str(events_dir(home) / 'tmp'))}")
    return con


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def conformed(segments: Sequence[SegmentInfo]) -> str:
    """The segments' rows in SCHEMA's columns (columns older files lack are NULL), as a
    parenthesised SELECT; by name only when some file lacks a column."""
    if not segments:
        cols = ", ".join(f"CAST(NULL AS {DUCK_TYPES[str(f.type)]}) AS {_q(f.name)}" for f in SCHEMA)
        return f"(SELECT {cols} WHERE false)"
    present = {c for s in segments for c in s.columns}
    cols = ", ".join(
        _q(f.name)
        if f.name in present
        else f"CAST(NULL AS {DUCK_TYPES[str(f.type)]}) AS {_q(f.name)}"
        for f in SCHEMA
    )
    files = ", ".join(_literal(str(s.path)) for s in segments)
    union = "true" if any(len(s.columns) != len(COLUMNS) for s in segments) else "false"
    return f"(SELECT {cols} FROM read_parquet([{files}], union_by_name = {union}))"


def write_rollup(
    home: Path | None,
    segments: Sequence[SegmentInfo],
    directory: Path,
    name: str,
    *,
    durable: bool = True,
) -> Path:
    """Aggregate ``segments`` into ``directory/name`` atomically (DuckDB streams the rows
    and spills a large aggregate to disk, so memory stays bounded). ``durable=False`` skips
    the fsyncs: fine for the rollup of a present segment, which can be computed again."""
    private_dir(directory)
    final = directory / name
    tmp = directory / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    con = _connect(home)
    try:
        sql = aggregate_sql(conformed(segments), raw=True)
        con.execute(f"COPY ({sql}) TO {_literal(str(tmp))} (FORMAT parquet)")
        make_private(tmp)
        if durable:
            fsync_file(tmp)
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(directory)
    return final


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def after_merge(home: Path | None, merged: SegmentInfo) -> None:
    """A compaction wrote ``merged``: store its rollup beside it."""
    write_rollup(home, [merged], rollups_dir(home), merged.name, durable=False)


def forget(home: Path | None, segment_names: Iterable[str]) -> None:
    """Segments merged away: their rollups go first (a present rollup never outlives the
    segment it describes, except briefly while a merge is written)."""
    directory = rollups_dir(home)
    for name in segment_names:
        (directory / name).unlink(missing_ok=True)


def pruned_rollups(home: Path | None, present: Iterable[str]) -> list[Path]:
    """Pruned rollups whose segment is absent from ``present`` (a listing taken BEFORE
    this call), i.e. the rows that exist only as rollups."""
    names = set(present)
    try:
        listing = sorted(os.listdir(pruned_dir(home)))
    except FileNotFoundError:
        return []
    return [
        pruned_dir(home) / n
        for n in listing
        if n.endswith(SUFFIX) and not n.startswith(".") and n not in names
    ]


def purge_source(home: Path | None, source: str) -> int:
    """Remove the rows of ``source`` (e.g. 'demo') from the pruned rollups, as removing a
    data set removes its raw rows; returns how many requests they counted."""
    import pyarrow.compute as pc

    removed = 0
    directory = pruned_dir(home)
    for path in sorted(directory.glob("*" + SUFFIX)) if directory.is_dir() else []:
        table = pq.read_table(path)
        hit = pc.fill_null(pc.equal(table["source"], source), False)
        n = int(pc.sum(pc.if_else(hit, table["requests"], 0)).as_py() or 0)
        if not pc.any(hit).as_py():
            continue
        rest = table.filter(pc.invert(hit))
        tmp = directory / f".{path.name}.{os.getpid()}.tmp"
        pq.write_table(rest, tmp, compression="snappy")
        make_private(tmp)
        os.replace(tmp, path)
        removed += n
    if removed:
        fsync_dir(directory)
    return removed
