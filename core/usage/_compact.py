"""compact(): merge many small segments into few large ones, safely under live readers.

Order of operations: write the merged file (sorted by ts) naming its inputs in its Parquet
metadata, rename it into place, then delete the inputs. Readers skip every segment a present
merged file replaces, so at each instant they count each row exactly once. One compaction
runs at a time (an flock on events/compact.lock); writers and readers never wait for it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.usage._journal import CLAIM, JOURNAL_SUFFIX
from core.usage._schema import conform
from core.usage._segments import (
    SUFFIX,
    SegmentInfo,
    events_dir,
    journal_dir,
    remove_stale_temps,
    scan,
    segments_dir,
    write_segment,
)

log = logging.getLogger("costline.usage")


@dataclass(frozen=True, slots=True)
class CompactResult:
    merged: int  # input segments merged away
    written: int  # new segments written


def _groups(small: list[SegmentInfo], target_rows: int, max_bytes: int) -> list[list[SegmentInfo]]:
    """Pack segments (oldest names first) into groups of at most target_rows / max_bytes."""
    groups: list[list[SegmentInfo]] = [[]]
    rows = nbytes = 0
    for seg in small:
        if groups[-1] and (rows + seg.rows > target_rows or nbytes + seg.nbytes > max_bytes):
            groups.append([])
            rows = nbytes = 0
        groups[-1].append(seg)
        rows += seg.rows
        nbytes += seg.nbytes
    return [g for g in groups if len(g) > 1]


def _replaces(group: list[SegmentInfo], journals: set[str]) -> list[str]:
    """The inputs' names, plus names they replace whose journal still exists: recovery must
    keep seeing those as written, or a dead writer's journal would be converted twice."""
    names = {s.name for s in group}
    names.update(n for s in group for n in s.replaces if n.removesuffix(SUFFIX) in journals)
    return sorted(names)


def _journal_stems(home: Path | None) -> set[str]:
    try:
        names = os.listdir(journal_dir(home))
    except FileNotFoundError:
        return set()
    return {n.split(CLAIM, 1)[0].removesuffix(JOURNAL_SUFFIX) for n in names}


def compact(
    home: Path | None = None,
    target_rows: int = 2_000_000,
    *,
    max_bytes: int = 1 << 30,
    wait: bool = True,
) -> CompactResult:
    """Merge segments smaller than target_rows/2 into segments of up to target_rows rows.

    ``max_bytes`` bounds the uncompressed size of one merge (the memory it needs). With
    ``wait=False`` a compaction already running elsewhere makes this return at once.
    """
    sdir = segments_dir(home)
    sdir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(events_dir(home) / "compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return CompactResult(0, 0)
        return _compact_locked(sdir, target_rows, max_bytes, home)
    finally:
        os.close(lock_fd)


def _compact_locked(
    sdir: Path, target_rows: int, max_bytes: int, home: Path | None
) -> CompactResult:
    snapshot = scan(sdir)
    journals = _journal_stems(home)
    for seg in snapshot.superseded:  # left by a compaction that died before deleting them
        seg.path.unlink(missing_ok=True)
    remove_stale_temps(sdir)
    small = sorted((s for s in snapshot.active if s.rows < target_rows // 2), key=lambda s: s.name)
    merged = written = 0
    for group in _groups(small, target_rows, max_bytes):
        table = pa.concat_tables([conform(pq.read_table(s.path)) for s in group])
        table = table.sort_by("ts").replace_schema_metadata(None)
        name = f"compact-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        write_segment(table, sdir, name, replaces=_replaces(group, journals))
        for seg in group:
            seg.path.unlink(missing_ok=True)
        merged += len(group)
        written += 1
        log.info("compacted %d usage segments (%d rows) into %s", len(group), len(table), name)
    return CompactResult(merged, written)
