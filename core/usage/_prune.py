"""Retention: remove raw usage segments older than N days, keeping their hourly rollups.

``prune(home, keep_days)`` (``costline prune``, and the worker on every scan when the
``retention_days`` setting is set) deletes every active segment whose newest event is older
than ``now - keep_days``. Before a segment goes, its rollup is moved (or first computed) to
``events/rollups/pruned/``; readers add those rollups to the raw rows, so totals stay exact
(see ``_rollups.py``). A segment holding any newer event stays whole, so raw events are kept
at least ``keep_days``. Prune runs under the compaction lock, never beside a merge.

It also removes live rollups whose segment is gone (a demo purge or a crash left them).
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from core import clock
from core.errors import ConfigError
from core.private import private_dir, private_open
from core.usage import _rollups
from core.usage._segments import SegmentInfo, events_dir, fsync_dir, scan, segments_dir

log = logging.getLogger("costline.usage")


@dataclass(frozen=True, slots=True)
class PruneResult:
    segments: int  # raw segments removed
    rows: int  # raw events removed (still counted through their rollups)
    cutoff: datetime  # events before this may be gone


def newest_event(seg: SegmentInfo) -> datetime | None:
    """The segment's newest ts, from its row-group statistics (None if unknown)."""
    md = pq.read_metadata(seg.path)
    names = md.schema.to_arrow_schema().names
    col = names.index("ts")
    newest: datetime | None = None
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        top = stats.max
        if isinstance(top, datetime):
            top = top if top.tzinfo else top.replace(tzinfo=UTC)
            newest = top if newest is None else max(newest, top)
    return newest


MAX_RETENTION_DAYS = 36_500  # the retention_days setting's maximum (core.control._validate)


def prune(home: Path | None, keep_days: int, *, now: datetime | None = None) -> PruneResult:
    if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 1:
        raise ConfigError(f"retention_days: must be a whole number >= 1 (got {keep_days!r})")
    if keep_days > MAX_RETENTION_DAYS:  # as the setting; more reaches past year 1 (a traceback)
        raise ConfigError(
            f"retention_days: at most {MAX_RETENTION_DAYS:,} days (got {keep_days:,});"
            " leave retention unset to keep raw events forever"
        )
    cutoff = (now or clock.now()) - timedelta(days=keep_days)
    if os.environ.get("COSTLINE_EVENTS_URL"):  # local segments are the bucket's outbox
        log.info("retention skipped: the usage log is in a bucket (COSTLINE_EVENTS_URL)")
        return PruneResult(0, 0, cutoff)
    sdir = segments_dir(home)
    private_dir(sdir)
    lock_fd = private_open(events_dir(home) / "compact.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        return _prune_locked(home, sdir, cutoff)
    finally:
        os.close(lock_fd)


def _prune_locked(home: Path | None, sdir: Path, cutoff: datetime) -> PruneResult:
    snapshot = scan(sdir)
    removed = rows = 0
    live = _rollups.rollups_dir(home)
    gone = _rollups.pruned_dir(home)
    for seg in snapshot.active:
        newest = newest_event(seg)
        if newest is None or newest >= cutoff:
            continue
        target = gone / seg.name
        if not target.exists():
            if (live / seg.name).exists():  # written without fsync: make it durable first
                private_dir(gone)
                _rollups.fsync_file(live / seg.name)
                os.rename(live / seg.name, target)
                fsync_dir(gone)
            else:
                _rollups.write_rollup(home, [seg], gone, seg.name)
        seg.path.unlink(missing_ok=True)
        removed += 1
        rows += seg.rows
        log.info("pruned usage segment %s (%d rows, newest %s)", seg.name, seg.rows, newest)
    _drop_orphans(home, snapshot.active, snapshot.superseded)
    return PruneResult(removed, rows, cutoff)


def _drop_orphans(
    home: Path | None, active: tuple[SegmentInfo, ...], superseded: tuple[SegmentInfo, ...]
) -> None:
    present = {s.name for s in (*active, *superseded)}
    live = _rollups.rollups_dir(home)
    try:
        names = os.listdir(live)
    except FileNotFoundError:
        return
    for name in names:
        if name.endswith(".parquet") and not name.startswith(".") and name not in present:
            (live / name).unlink(missing_ok=True)
