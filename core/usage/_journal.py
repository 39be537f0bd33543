"""Per-process journals and their recovery.

A writer appends one framed record per event (see _frame) to
``events/journal/<host>_<pid>_<start>_<token>_<seq>.jsonl``; the journal becomes the
segment ``events/segments/<same stem>.parquet``. That shared name makes recovery idempotent:
a journal whose segment already exists (or was merged into a compacted one) is only deleted.

recover() claims a dead writer's journal by renaming it to ``<name>.recovering.<claimer>``
first, so two recoverers never convert the same journal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

import duckdb

from core.usage._convert import connect, convert_journal
from core.usage._procid import HOST, ProcId
from core.usage._quarantine import quarantine_file
from core.usage._segments import SUFFIX, Snapshot, fs_now_ns, journal_dir, scan, segments_dir

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
    """A live writer holds its journal's flock: always ask the lock, whatever the host name
    (containers in other PID namespaces share host names and file systems, so a pid unknown
    here proves nothing). A free lock is trusted once the pid is gone here too (same host),
    or the file has been quiet for FOREIGN_QUIET_S (another host; file systems without
    flock)."""
    if _locked_by_owner(path):
        return True
    if owner.host == HOST:
        return owner.alive_here()
    try:
        quiet = fs_now_ns(path.parent) - path.stat().st_mtime_ns > FOREIGN_QUIET_S * 1e9
    except FileNotFoundError:
        return True
    return not quiet


def recover(home: Path | None = None) -> int:
    """Turn journals of dead processes into segments; return the number of rows recovered."""
    jdir, sdir = journal_dir(home), segments_dir(home)
    try:
        names = sorted(os.listdir(jdir))
    except FileNotFoundError:
        return 0
    me: ProcId | None = None
    snapshot: Snapshot | None = None
    con: duckdb.DuckDBPyConnection | None = None
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
        con = con or connect()
        try:
            stem = original.removesuffix(JOURNAL_SUFFIX)
            total += _recover_one(claimed, sdir, stem, snapshot, con)
        except OSError:  # keep going; the claim is retried once this process is gone
            log.exception("could not recover usage journal %s", claimed)
        except Exception as exc:  # unreadable whatever the disk: out of the way, kept
            log.exception("could not recover usage journal %s: quarantined", claimed)
            quarantine_file(home, claimed, f"recovery failed: {exc}", kind="journal")
    if con is not None:
        con.close()
    return total


def _recover_one(
    claimed: Path, sdir: Path, stem: str, snapshot: Snapshot, con: duckdb.DuckDBPyConnection
) -> int:
    fd = os.open(claimed, os.O_RDWR)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # tells other hosts it is in use
        # If the segment exists, its owner wrote it but died before deleting the journal.
        rows = 0 if snapshot.has(stem + SUFFIX) else convert_journal(claimed, sdir, stem, con)
        if rows:
            log.info("recovered %d usage events from journal %s", rows, claimed.name)
        claimed.unlink()
    finally:
        os.close(fd)
    return rows
