"""Per-process journals: one JSON line per event, turned into a segment on flush or recovery.

A journal is ``events/journal/<host>_<pid>_<start>_<token>_<seq>.jsonl`` and becomes the
segment ``events/segments/<same stem>.parquet``. That shared name makes recovery idempotent:
a journal whose segment already exists (or was merged into a compacted one) is only deleted.

Recovery claims a dead process's journal by renaming it to ``<name>.recovering.<claimer>``
first, so two recoverers never convert the same journal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from core.usage._procid import HOST, ProcId
from core.usage._schema import COLUMNS, TS_INDEX, rows_to_table
from core.usage._segments import (
    SUFFIX,
    Snapshot,
    journal_dir,
    scan,
    segments_dir,
    write_segment,
)

log = logging.getLogger("costline.usage")

JOURNAL_SUFFIX = ".jsonl"
CLAIM = ".recovering."
FOREIGN_QUIET_S = 60.0  # another host's journal must also be this long untouched


def journal_name(owner: ProcId, seq: int) -> str:
    return f"{owner}_{seq:06d}{JOURNAL_SUFFIX}"


def owner_of(journal: str) -> ProcId | None:
    """The writer named in a journal file name (``.recovering.`` suffix ignored)."""
    stem = journal.split(CLAIM, 1)[0].removesuffix(JOURNAL_SUFFIX)
    return ProcId.parse(stem.rsplit("_", 1)[0]) if "_" in stem else None


def parse_journal(data: bytes, origin: str) -> list[tuple[Any, ...]]:
    """Journal bytes -> rows in schema order. A last line without newline is dropped."""
    lines = data.split(b"\n")
    tail = lines.pop()
    if tail:
        log.warning("dropping partial last line (%d bytes) of journal %s", len(tail), origin)
    rows = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            row = orjson.loads(line)
            if not isinstance(row, list) or len(row) != len(COLUMNS):
                raise ValueError(f"expected {len(COLUMNS)} values")
            row[TS_INDEX] = datetime.fromisoformat(row[TS_INDEX])
        except (ValueError, TypeError) as exc:
            log.warning("skipping unreadable line %d of journal %s: %s", number, origin, exc)
            continue
        rows.append(tuple(row))
    return rows


def rows_to_table_lenient(rows: Sequence[Sequence[Any]], origin: str) -> pa.Table:
    """rows_to_table, but a row of wrong types is logged and dropped instead of failing all."""
    try:
        return rows_to_table(rows)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        good = []
        for row in rows:
            try:
                rows_to_table([row])
                good.append(row)
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                log.error("dropping usage event %r from %s: %s", row[0], origin, exc)
        return rows_to_table(good)


def _locked_by_owner(path: Path) -> bool:
    """True if a process (on any host sharing this file system) holds the journal's lock."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True  # vanished or unreadable: not ours to recover now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    finally:
        os.close(fd)
    return False


def _writer_alive(owner: ProcId, path: Path) -> bool:
    if owner.host == HOST:
        return owner.alive_here()
    try:
        quiet = time.time() - path.stat().st_mtime > FOREIGN_QUIET_S
    except FileNotFoundError:
        return True
    return not quiet or _locked_by_owner(path)


def recover(home: Path | None = None) -> int:
    """Turn journals of dead processes into segments; return the number of rows recovered."""
    jdir, sdir = journal_dir(home), segments_dir(home)
    try:
        names = sorted(os.listdir(jdir))
    except FileNotFoundError:
        return 0
    me: ProcId | None = None
    snapshot: Snapshot | None = None
    total = 0
    for name in names:
        original = name.split(CLAIM, 1)[0]
        if not original.endswith(JOURNAL_SUFFIX):
            continue
        holder = ProcId.parse(name.split(CLAIM, 1)[1]) if CLAIM in name else owner_of(name)
        if holder is None or _writer_alive(holder, jdir / name):
            continue
        me = me or ProcId.current()
        claimed = jdir / f"{original}{CLAIM}{me}"
        try:
            os.rename(jdir / name, claimed)
        except FileNotFoundError:
            continue  # another recoverer claimed it first
        snapshot = snapshot or scan(sdir)
        try:
            total += _convert(claimed, original.removesuffix(JOURNAL_SUFFIX), sdir, snapshot)
        except Exception:  # keep going; the claim is retried once this process is gone
            log.exception("could not recover usage journal %s", claimed)
    return total


def _convert(claimed: Path, stem: str, sdir: Path, snapshot: Snapshot) -> int:
    fd = os.open(claimed, os.O_RDWR)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # tells other hosts it is in use
        rows = parse_journal(claimed.read_bytes(), claimed.name)
        if rows and snapshot.has(stem + SUFFIX):
            rows = []  # its owner wrote the segment but died before deleting the journal
        if rows:
            write_segment(rows_to_table_lenient(rows, claimed.name), sdir, stem)
            log.info("recovered %d usage events from journal %s", len(rows), claimed.name)
        claimed.unlink()
    finally:
        os.close(fd)
    return len(rows)
