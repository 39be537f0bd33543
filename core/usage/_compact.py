"""compact(): merge many small segments into few large ones, safely under live readers.

Order of operations: write the merged file (streamed a chunk at a time, each chunk sorted by
ts, so memory stays bounded whatever the file's size) naming its inputs in its Parquet
metadata, rename it into place, then delete the inputs. Readers skip every segment a present
merged file replaces, so at each instant they count each row exactly once. One compaction
runs at a time (an flock on events/compact.lock); writers and readers never wait for it.

``compact()`` (``costline compact``) merges every small segment. ``auto_compact()``, which a
UsageLog runs in the background once more than ``compact_threshold`` segments are small,
merges only segments of similar size (size tiers of x``AUTO_FANOUT`` rows, a tier once it
holds that many), so an event is rewritten a few times at most, not at every run. It also
leaves merged inputs in place (hidden from readers) for ``KEEP_REPLACED_S``, so a long query
that listed them before the merge is not cut short, and a later run deletes them. A segment
whose inputs are still there is not merged again until they are gone: a replaced segment
never replaces a present one, so deleting replaced segments in any order is safe.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.private import private_dir, private_open
from core.usage import _rollups
from core.usage._journal import CLAIM, JOURNAL_SUFFIX
from core.usage._schema import conform
from core.usage._segments import (
    IMPORT_LOCK,
    ROW_GROUP_ROWS,
    SUFFIX,
    SegmentInfo,
    Snapshot,
    events_dir,
    fs_now_ns,
    journal_dir,
    quarantine_segment,
    remove_import_temps,
    remove_stale_temps,
    scan,
    segment_info,
    segments_dir,
    write_segment_stream,
)

log = logging.getLogger("costline.usage")

TARGET_ROWS = 2_000_000
MAX_BYTES = 1 << 30
AUTO_FANOUT = 8
AUTO_MAX_BYTES = 256 << 20  # bounds one background merge (memory is bounded by _chunks)
AUTO_LOCK_WAIT_S = 30.0  # how long auto_compact waits for another process's compaction
KEEP_REPLACED_S = 120.0  # auto_compact deletes merged inputs this long after the merge
_RETRY_S = 0.5
CHUNK_ROWS = ROW_GROUP_ROWS // 2  # rows per sorted chunk (and row group) of a merged file
_LOCK_FDS: dict[int, int] = {}  # compact.lock descriptor -> thread holding it (see _after_fork)


@dataclass(frozen=True, slots=True)
class CompactResult:
    merged: int  # input segments merged away
    written: int  # new segments written
    not_done: str | None = None  # why nothing could be compacted (the bucket was unreachable,
    # another process led), as opposed to nothing needing it


_LOCKED = CompactResult(0, 0)  # returned (this very object) when another compaction runs


def small_segments(
    snapshot: Snapshot, target_rows: int, max_bytes: int, lingering: set[str] | None = None
) -> list[SegmentInfo]:
    """Active segments worth merging (oldest names first), except those replacing a
    ``lingering`` (still present) segment."""
    lingering = {s.name for s in snapshot.superseded} if lingering is None else lingering
    small = (
        s
        for s in snapshot.active
        if s.rows < target_rows // 2 and s.nbytes < max_bytes // 2 and not s.replaces & lingering
    )
    return sorted(small, key=lambda s: s.name)


def deletable(snapshot: Snapshot, keep_s: float, directory: Path) -> list[SegmentInfo]:
    """Replaced segments to delete now: all of them, or those replaced keep_s ago or more
    (by the mtime of the segment replacing them, on the clock of ``directory``'s file system)."""
    if keep_s <= 0 or not snapshot.superseded:
        return list(snapshot.superseded)
    since: dict[str, int] = {}
    for seg in (*snapshot.active, *snapshot.superseded):
        for name in seg.replaces:
            since[name] = min(since.get(name, seg.mtime_ns), seg.mtime_ns)
    cutoff = fs_now_ns(directory) - int(keep_s * 1e9)
    return [s for s in snapshot.superseded if since.get(s.name, cutoff) <= cutoff]


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


def _tier(rows: int, fanout: int) -> int:
    """0 below ``fanout`` rows, 1 below fanout**2, ...: merging a tier lands in a higher one."""
    tier = 0
    while rows >= fanout:
        rows //= fanout
        tier += 1
    return tier


def _tiered_groups(
    small: list[SegmentInfo], target_rows: int, max_bytes: int, fanout: int
) -> list[list[SegmentInfo]]:
    tiers: dict[int, list[SegmentInfo]] = {}
    for seg in small:
        tiers.setdefault(_tier(seg.rows, fanout), []).append(seg)
    full = [tiers[t] for t in sorted(tiers) if len(tiers[t]) >= fanout]
    return [g for segs in full for g in _groups(segs, target_rows, max_bytes)]


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
    target_rows: int = TARGET_ROWS,
    *,
    max_bytes: int = MAX_BYTES,
    wait: bool = True,
) -> CompactResult:
    """Merge segments smaller than target_rows/2 into segments of up to target_rows rows.

    ``max_bytes`` bounds the uncompressed size of one merged file (a merge holds about two
    chunks of ``CHUNK_ROWS`` rows in memory, whatever the size). With
    ``wait=False`` a compaction already running elsewhere makes this return at once.
    """
    return _compact(home, target_rows, max_bytes, wait, 0, None, 0.0)


def auto_compact(
    home: Path | None,
    threshold: int,
    *,
    target_rows: int = TARGET_ROWS,
    max_bytes: int = AUTO_MAX_BYTES,
    stop: threading.Event | None = None,
    lock_wait_s: float = 0.0,
    keep_replaced_s: float | None = None,
) -> CompactResult:
    """While more than ``threshold`` segments are small, merge size tiers; delete inputs
    replaced ``keep_replaced_s`` (default ``KEEP_REPLACED_S``) ago. If another process
    compacts, check again every 0.5 s for up to ``lock_wait_s`` (it may have done the work).
    ``stop`` ends this between two merges or checks."""
    stop = stop or threading.Event()
    keep_s = KEEP_REPLACED_S if keep_replaced_s is None else keep_replaced_s
    fanout = max(2, min(AUTO_FANOUT, threshold))
    sdir = segments_dir(home)
    merged = written = 0
    give_up = time.monotonic() + lock_wait_s
    while not stop.is_set():
        snapshot = scan(sdir)
        expired = deletable(snapshot, keep_s, sdir)
        lingering = {s.name for s in snapshot.superseded} - {s.name for s in expired}
        small = small_segments(snapshot, target_rows, max_bytes, lingering)
        if len(small) <= threshold and not expired:
            break
        result = _compact(home, target_rows, max_bytes, False, fanout, stop, keep_s)
        if result is _LOCKED and time.monotonic() < give_up:
            stop.wait(_RETRY_S)
            continue
        merged, written = merged + result.merged, written + result.written
        if not result.written:  # locked for too long, no tier full enough, or only deletions
            break
    return CompactResult(merged, written)


def _chunks(group: list[SegmentInfo], rows: int) -> Iterator[pa.Table]:
    """The group's rows, oldest segment first, in chunks of ``rows`` rows (the last may be
    shorter), each sorted by ts: a merge holds about two chunks in memory, whatever the
    merged file's size."""
    buf: list[pa.Table] = []
    held = 0
    for seg in group:
        with pq.ParquetFile(seg.path, pre_buffer=False) as pf:
            for batch in pf.iter_batches(batch_size=rows, use_threads=False):
                buf.append(conform(pa.Table.from_batches([batch]).replace_schema_metadata(None)))
                held += batch.num_rows
                while held >= rows:
                    table = pa.concat_tables(buf)  # no copy: slices share the buffers
                    yield table.slice(0, rows).sort_by("ts")
                    rest = table.slice(rows)
                    buf, held = ([rest] if rest.num_rows else []), rest.num_rows
    if buf:
        yield pa.concat_tables(buf).sort_by("ts")


def _compact(
    home: Path | None,
    target_rows: int,
    max_bytes: int,
    wait: bool,
    fanout: int,
    stop: threading.Event | None,
    keep_s: float,
) -> CompactResult:
    sdir = segments_dir(home)
    private_dir(sdir)
    lock_fd = private_open(events_dir(home) / "compact.lock", os.O_RDWR | os.O_CREAT)
    _LOCK_FDS[lock_fd] = threading.get_ident()
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return _LOCKED
        return _compact_locked(sdir, target_rows, max_bytes, home, fanout, stop, keep_s)
    finally:
        _LOCK_FDS.pop(lock_fd, None)
        os.close(lock_fd)


def _compact_locked(
    sdir: Path,
    target_rows: int,
    max_bytes: int,
    home: Path | None,
    fanout: int,
    stop: threading.Event | None,
    keep_s: float,
) -> CompactResult:
    snapshot = scan(sdir)
    journals = _journal_stems(home)
    lingering = {s.name for s in snapshot.superseded}
    for seg in deletable(snapshot, keep_s, sdir):  # kept for readers, or left by a crash
        _rollups.forget(home, [seg.name])
        seg.path.unlink(missing_ok=True)
        lingering.discard(seg.name)
    remove_stale_temps(sdir)
    remove_import_temps(sdir, events_dir(home) / IMPORT_LOCK)
    small = small_segments(snapshot, target_rows, max_bytes, lingering)
    if fanout > 1:
        groups = _tiered_groups(small, target_rows, max_bytes, fanout)
    else:
        groups = _groups(small, target_rows, max_bytes)
    merged = written = 0
    for group in groups:
        if stop is not None and stop.is_set():
            break
        name = f"compact-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        try:
            path, rows = write_segment_stream(
                _chunks(group, CHUNK_ROWS), sdir, name, replaces=_replaces(group, journals)
            )
        except (pa.ArrowException, ValueError) as exc:  # a damaged input (no checksum)
            log.warning("compaction: an input segment is unreadable (%s); checking each", exc)
            _quarantine_unreadable(group)
            continue
        merged_info = segment_info(path, path.stat())
        if merged_info is not None:
            _rollups.after_merge(home, merged_info)
        if keep_s <= 0:  # otherwise a later run deletes them
            for seg in group:
                _rollups.forget(home, [seg.name])
                seg.path.unlink(missing_ok=True)
        merged += len(group)
        written += 1
        log.info("compacted %d usage segments (%d rows) into %s", len(group), rows, name)
    return CompactResult(merged, written)


def _quarantine_unreadable(group: list[SegmentInfo]) -> None:
    """Read each segment whole; quarantine those that fail (older segments carry no
    checksum, so a damaged data page shows only when it is read)."""
    for seg in group:
        try:
            pq.read_table(seg.path)
        except FileNotFoundError:
            continue
        except (pa.ArrowException, ValueError, OSError) as exc:
            quarantine_segment(seg.path, f"unreadable: {exc}")


def _after_fork() -> None:
    # A forked child shares the parent's flock through inherited descriptors: drop those of
    # the parent's other threads (which do not exist here), or the lock would stay held for
    # as long as the child lives.
    me = threading.get_ident()
    for fd, holder in list(_LOCK_FDS.items()):
        if holder != me:
            os.close(fd)
            del _LOCK_FDS[fd]


os.register_at_fork(after_in_child=_after_fork)
