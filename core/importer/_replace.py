"""Replacing a source's rows in a time range (a corrected re-export), the way a compaction
rewrites segments: under the compaction's lock, a segment holding such rows is rewritten
without them (the new file names the old one as replaced, so readers never count a row twice)
and then deleted.

The new rows are written first and then the old ones removed, skipping the rows of the load
that replaces them: an interrupted replace leaves old and new rows both, and running the same
replace again finishes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import clock
from core.importer._rows import exact_sum
from core.private import private_dir, private_open
from core.usage import IMPORT_LOCK, conform, events_dir, scan, segments_dir, write_segment


@contextmanager
def _compaction_lock(home: Path | None, name: str = "compact.lock") -> Iterator[None]:
    path = events_dir(home) / name
    private_dir(path.parent)
    fd = private_open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def import_lock(home: Path | None) -> AbstractContextManager[None]:
    """Held from an import's duplicate check until its rows are written and its load marked
    written: imports into one usage log run one at a time (two overlapping files imported at
    once would each find the other's rows absent), and a load left unwritten while the lock
    is free was claimed by a process that died. This host's lock; an import also takes the
    fleet's (``core.importer._fleet``)."""
    return _compaction_lock(home, IMPORT_LOCK)


def _may_hold(path: Path, start: datetime, end: datetime) -> bool:
    """From the row-group statistics of ``ts``: could any row fall in [start, end)?"""
    md = pq.read_metadata(path)
    names = md.schema.to_arrow_schema().names
    col = names.index("ts")
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return True
        lo, hi = stats.min, stats.max
        lo = lo if lo.tzinfo else lo.replace(tzinfo=UTC)
        hi = hi if hi.tzinfo else hi.replace(tzinfo=UTC)
        if lo < end and hi >= start:
            return True
    return False


def _matches(table: pa.Table, source: str, start: datetime, end: datetime, keep: str) -> pa.Array:
    ts = table["ts"]
    return pc.and_(
        pc.and_(
            pc.fill_null(pc.equal(table["source"], source), False),
            pc.and_(pc.greater_equal(ts, pa.scalar(start)), pc.less(ts, pa.scalar(end))),
        ),
        pc.invert(_of_load(table["metadata"], keep)),
    )


def _of_load(metadata: pa.ChunkedArray, keep: str) -> pa.Array:
    """Rows the load whose metadata is ``keep`` wrote: that metadata, or a file's own
    metadata with the load's ``import`` id added (each distinct text parsed once)."""
    col = metadata.combine_chunks()
    if not keep:
        return pa.array(np.zeros(len(col), bool))
    ident = json.loads(keep).get("import")
    enc = pc.dictionary_encode(col)
    flags: list[bool] = []
    for v in enc.dictionary.to_pylist():
        if v == keep or not ident or ident not in v:  # the common cases: no parse
            flags.append(v == keep)
            continue
        try:
            d = json.loads(v)
        except ValueError:
            d = None
        flags.append(isinstance(d, dict) and d.get("import") == ident)
    return pc.fill_null(pa.array(flags, pa.bool_()).take(enc.indices), False)


def count_rows(
    home: Path | None, source: str, start: datetime, end: datetime, keep: str = ""
) -> tuple[int, int]:
    """(rows, cost pUSD) that ``remove_rows`` would remove now."""
    rows = cost = 0
    for seg in scan(segments_dir(home)).active:
        if not _may_hold(seg.path, start, end):
            continue
        table = conform(
            pq.read_table(seg.path, columns=["ts", "source", "metadata", "cost_picousd"])
        )
        hit = _matches(table, source, start, end, keep)
        rows += int(pc.sum(hit).as_py() or 0)
        cost += exact_sum(pc.fill_null(table["cost_picousd"].filter(hit), 0).to_numpy())
    return rows, cost


def remove_rows(
    home: Path | None, source: str, start: datetime, end: datetime, keep: str
) -> tuple[int, int]:
    """Delete the events of ``source`` with ``start <= ts < end`` whose metadata is not
    ``keep`` (the replacing load's); returns (rows, cost pUSD) removed."""
    sdir = segments_dir(home)
    private_dir(sdir)
    removed = cost = 0
    with _compaction_lock(home):
        snapshot = scan(sdir)
        for seg in snapshot.superseded:  # left by a compaction that died
            seg.path.unlink(missing_ok=True)
        for seg in snapshot.active:
            if not _may_hold(seg.path, start, end):
                continue
            table = conform(pq.read_table(seg.path))
            hit = _matches(table, source, start, end, keep)
            count = int(pc.sum(hit).as_py() or 0)
            if not count:
                continue
            cost += exact_sum(pc.fill_null(table["cost_picousd"].filter(hit), 0).to_numpy())
            rest = table.filter(pc.invert(hit)).replace_schema_metadata(None)
            if rest.num_rows:
                stamp = clock.now().strftime("%Y%m%dT%H%M%S")
                name = f"compact-{stamp}-{secrets.token_hex(4)}"
                write_segment(rest, sdir, name, replaces=[seg.name])
            seg.path.unlink(missing_ok=True)
            removed += count
    return removed, cost
