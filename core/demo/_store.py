"""Demo rows in the usage log: written as ``demo-*`` segments, removed wherever they are.

Compaction may merge demo segments with real ones. Removal therefore works like a
compaction, under the same lock: ``demo-*`` segments are deleted, and any other segment
holding demo rows (source 'demo' and a ``demo-`` request id) is rewritten without them
(the new file names the old one as replaced, so readers never count a row twice).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.demo._table import DEMO_PREFIX
from core.private import private_dir, private_open
from core.usage import (
    SegmentInfo,
    conform,
    events_dir,
    purge_source,
    scan,
    segments_dir,
    write_segment,
)


@contextmanager
def locked(home: Path | None, name: str) -> Iterator[None]:
    """An exclusive flock on ``events/<name>`` (compact.lock is the compaction's own)."""
    path = events_dir(home) / name
    private_dir(path.parent)
    fd = private_open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def demo_segments(home: Path | None) -> list[SegmentInfo]:
    return [s for s in scan(segments_dir(home)).active if s.name.startswith(DEMO_PREFIX)]


def write(table: pa.Table, home: Path | None, seed: int) -> str:
    name = f"{DEMO_PREFIX}s{seed}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    return write_segment(table, segments_dir(home), name).name


def _may_hold_demo(path: Path) -> bool:
    """From the row-group statistics of ``source``: could any row be 'demo'?"""
    md = pq.read_metadata(path)
    names = md.schema.to_arrow_schema().names
    if "source" not in names:
        return False
    col = names.index("source")
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max or stats.min <= "demo" <= stats.max:
            return True
    return False


def _demo_rows(table: pa.Table) -> pa.Array:
    return pc.and_(
        pc.fill_null(pc.equal(table["source"], "demo"), False),
        pc.starts_with(table["request_id"], DEMO_PREFIX),
    )


def purge(home: Path | None) -> int:
    """Remove every demo row from the usage log; returns how many."""
    sdir = segments_dir(home)
    private_dir(sdir)
    removed = 0
    with locked(home, "compact.lock"):
        snapshot = scan(sdir)
        for seg in snapshot.superseded:  # left by a compaction that died (as compact() does)
            seg.path.unlink(missing_ok=True)
        for seg in snapshot.active:
            if seg.name.startswith(DEMO_PREFIX):
                seg.path.unlink(missing_ok=True)
                removed += seg.rows
                continue
            if not _may_hold_demo(seg.path):
                continue
            table = conform(pq.read_table(seg.path))
            demo = _demo_rows(table)
            count = pc.sum(demo).as_py() or 0
            if not count:
                continue
            rest = table.filter(pc.invert(demo)).replace_schema_metadata(None)
            if rest.num_rows:
                name = (
                    f"compact-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-"
                    f"{secrets.token_hex(4)}"
                )
                write_segment(rest, sdir, name, replaces=[seg.name])
            seg.path.unlink(missing_ok=True)
            removed += count
        removed += purge_source(home, "demo")  # demo days that retention already pruned
    return removed
