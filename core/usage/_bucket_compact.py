"""Compaction of the bucket's segments, by one leader across all hosts (``_leader.py``).

The leader syncs its cache, merges small segments into one (its Parquet metadata names
every segment it replaces, transitively, so a late re-upload of a merged input is still
hidden), uploads the merged segment's hourly rollup as ``rollups/<name>`` and then the
segment itself (each upload confirmed before the next: a reader that sees the segment finds
its rollup; a rollup whose segment never arrived is never read), and deletes from the
bucket the inputs replaced ``KEEP_REPLACED_S`` ago, with their rollups (readers mid-query
still find them meanwhile).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from pathlib import Path

from pyarrow.fs import FileSystem

from core.usage._bucket import BucketConfig, Mirror, filesystem, upload
from core.usage._compact import (
    AUTO_MAX_BYTES,
    CHUNK_ROWS,
    KEEP_REPLACED_S,
    TARGET_ROWS,
    CompactResult,
    _chunks,
    _groups,
    deletable,
    small_segments,
)
from core.usage._leader import leader_lock
from core.usage._rollups import write_rollup
from core.usage._segments import events_dir, scan, segment_info, write_segment_stream

log = logging.getLogger("costline.usage")

MIN_SMALL = 16  # merge once this many segments are small


def compact_bucket(
    home: Path,
    cfg: BucketConfig,
    *,
    wait: bool = False,
    target_rows: int = TARGET_ROWS,
    keep_replaced_s: float = KEEP_REPLACED_S,
    min_small: int = MIN_SMALL,
) -> CompactResult:
    """Merge the bucket's small segments if this process wins the leader lock (``wait``:
    retry for up to a minute)."""
    deadline = time.monotonic() + (60.0 if wait else 0.0)
    while True:
        with leader_lock("costline.compact:" + cfg.url(), home) as leading:
            if leading:
                return _compact_led(home, cfg, target_rows, keep_replaced_s, min_small)
        if time.monotonic() >= deadline:
            return CompactResult(0, 0, "another process leads the compaction")
        time.sleep(0.5)


def _compact_led(
    home: Path, cfg: BucketConfig, target_rows: int, keep_s: float, min_small: int
) -> CompactResult:
    mirror = Mirror(home, cfg)
    if not mirror.sync(force=True):
        return CompactResult(0, 0, f"the bucket {cfg.url()} could not be listed")
    fs = filesystem(cfg)
    snapshot = scan(mirror.dir)
    expired = deletable(snapshot, keep_s, mirror.dir)
    for seg in expired:
        fs.delete_file(cfg.path("segments", seg.name))
        seg.path.unlink(missing_ok=True)
        _delete_rollup(fs, cfg, mirror, seg.name)
    lingering = {s.name for s in snapshot.superseded} - {s.name for s in expired}
    small = small_segments(snapshot, target_rows, AUTO_MAX_BYTES, lingering)
    if len(small) < min_small:
        return CompactResult(0, 0)
    tmp = events_dir(home) / "tmp"
    merged = written = 0
    for group in _groups(small, target_rows, AUTO_MAX_BYTES):
        replaces = sorted({s.name for s in group} | {n for s in group for n in s.replaces})
        name = f"compact-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        path, rows = write_segment_stream(_chunks(group, CHUNK_ROWS), tmp, name, replaces=replaces)
        rollup: Path | None = None
        try:
            info = segment_info(path, path.stat())
            if info is None:
                raise RuntimeError(f"merged segment {path} does not validate")
            rollup = write_rollup(home, [info], tmp, "rollup-" + path.name, durable=False)
            upload(cfg, rollup, path.name, fs, "rollups")  # first: then commit the segment
            upload(cfg, path, path.name, fs)
            rollup.replace(mirror.rollups / path.name)
            path.replace(mirror.dir / path.name)
        finally:
            path.unlink(missing_ok=True)
            if rollup is not None:
                rollup.unlink(missing_ok=True)
        merged += len(group)
        written += 1
        log.info("bucket compaction: %d segments (%d rows) into %s", len(group), rows, name)
    return CompactResult(merged, written)


def _delete_rollup(fs: FileSystem, cfg: BucketConfig, mirror: Mirror, name: str) -> None:
    """A merged-away segment's rollup goes after the segment (never read without it)."""
    with contextlib.suppress(OSError):  # absent, or left: unread without its segment
        fs.delete_file(cfg.path("rollups", name))
    (mirror.rollups / name).unlink(missing_ok=True)
