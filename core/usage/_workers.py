"""A UsageLog's background threads: one converts sealed journals into segments, another
compacts small segments once there are too many.

Both start on first use. The converter thread waits (blocked, not polling) for work; the
compactor thread exists only while a compaction runs.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from core.usage._compact import AUTO_LOCK_WAIT_S, auto_compact
from core.usage._convert import connect, convert_journal
from core.usage._journal import JOURNAL_SUFFIX
from core.usage._quarantine import quarantine_file

log = logging.getLogger("costline.usage")

MAX_BACKLOG = 2  # sealed journals waiting for conversion before appends wait too
CLOSE_GRACE_S = 3.0  # how long closing a log lets a running compaction finish
RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0  # backoff of a failed conversion
GIVE_UP_AFTER = 3  # failures (other than OSError) before a journal is quarantined


class Converter:
    """One background thread turning sealed journals into segments, oldest first.

    A journal that fails (disk full, I/O error) stays on disk and is tried again after
    ``RETRY_MIN_S``, doubling up to ``RETRY_MAX_S``, for as long as this process lives (then
    recover() takes it). One that fails ``GIVE_UP_AFTER`` times for a reason other than an
    OSError (it cannot be read, whatever the disk) is quarantined.
    """

    def __init__(self, sdir: Path, on_segment: Callable[[], None] | None = None) -> None:
        self._sdir = sdir
        self._on_segment = on_segment  # called (on this thread) after each new segment
        self._cond = threading.Condition()
        self._queue: deque[tuple[Path, int] | None] = deque()
        self._retry: list[tuple[float, int, int, Path, int]] = []  # due, seq, failures, path, fd
        self._seq = 0
        self._failures: dict[Path, int] = {}  # of journals queued again by retry_now
        self._busy = 0  # journals queued or being converted (first attempt)
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self.retries = 0  # conversions tried again after a failure

    def submit(self, journal: Path, fd: int) -> None:
        """Queue a sealed journal (the converter closes ``fd``); wait if too far behind."""
        with self._cond:
            while self._busy >= MAX_BACKLOG:
                self._cond.wait()
            self._busy += 1
            self._queue.append((journal, fd))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="usage-log", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self) -> Exception | None:
        """Wait until every queued journal was tried once; return (and clear) the last error."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            error, self._error = self._error, None
            return error

    def retry_now(self) -> None:
        """Queue every journal waiting for a retry again now (``flush()``: try everything);
        forget errors of earlier attempts."""
        with self._cond:
            self._error = None
            for _, _, failures, journal, fd in sorted(self._retry):
                self._failures[journal] = failures
                self._queue.append((journal, fd))
                self._busy += 1
            self._retry = []
            self._cond.notify_all()

    @property
    def retrying(self) -> int:
        """Journals waiting to be tried again."""
        return len(self._retry)

    def queued(self) -> list[tuple[Path, int] | None]:
        """Journals queued or waiting for a retry (read without the lock: called in a
        forked child, where a parent's thread may have held it)."""
        return list(self._queue) + [(r[3], r[4]) for r in list(self._retry)]

    def stop(self) -> None:
        with self._cond:
            if self._thread is not None:
                self._queue.append(None)
                self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _next(self) -> tuple[tuple[Path, int] | None, int, bool]:
        """The next journal to convert, its failures so far and whether it comes from the
        retry heap (then nobody waits for it in wait_idle) (cond held)."""
        while True:
            if self._queue:
                item = self._queue.popleft()
                return item, self._failures.pop(item[0], 0) if item else 0, False
            now = time.monotonic()
            if self._retry and self._retry[0][0] <= now:
                _, _, failures, journal, fd = heapq.heappop(self._retry)
                self.retries += 1
                return (journal, fd), failures, True
            self._cond.wait(self._retry[0][0] - now if self._retry else None)

    def _run(self) -> None:
        con: list[duckdb.DuckDBPyConnection] = []  # opened on first use, inside the try below
        try:
            while True:
                with self._cond:
                    item, failures, retried = self._next()
                if item is None:
                    return
                first = not retried
                error = self._convert(*item, con, failures)
                with self._cond:
                    if first:
                        self._busy -= 1
                        self._error = error or self._error
                    self._cond.notify_all()
                if error is None and self._on_segment is not None:
                    self._on_segment()
        finally:
            for c in con:
                c.close()
            with self._cond:
                left, self._retry = self._retry, []
            for _, _, _, journal, fd in left:
                log.warning("usage journal %s left for recover() after failed conversions", journal)
                os.close(fd)

    def _convert(
        self, journal: Path, fd: int, con: list[duckdb.DuckDBPyConnection], failures: int
    ) -> Exception | None:
        stem = journal.name.removesuffix(JOURNAL_SUFFIX)
        try:
            if not con:
                con.append(connect())
            convert_journal(journal, self._sdir, stem, con[0])
            journal.unlink()  # only once the segment is durable
            pa.default_memory_pool().release_unused()  # keep the resident size flat
        except Exception as exc:
            failures += 1
            if failures >= GIVE_UP_AFTER and not isinstance(exc, OSError):
                log.exception("usage journal %s cannot be converted: quarantined", journal)
                quarantine_file(
                    self._sdir.parent.parent, journal, f"conversion failed: {exc}", kind="journal"
                )
                os.close(fd)
                return exc
            delay = min(RETRY_MIN_S * 2 ** (failures - 1), RETRY_MAX_S)
            log.warning(
                "usage journal %s could not be converted (%s); trying again in %.0f s",
                journal.name,
                exc,
                delay,
            )
            with self._cond:
                self._seq += 1
                heapq.heappush(
                    self._retry, (time.monotonic() + delay, self._seq, failures, journal, fd)
                )
            return exc
        os.close(fd)
        return None


class AutoCompactor:
    """Runs ``auto_compact`` on a short-lived thread when poked (after each new segment).

    A poke during a run makes the thread check once more when the run ends. Across
    processes, compact.lock lets one compaction run at a time; the others skip theirs.
    """

    def __init__(self, home: Path, threshold: int) -> None:
        self._home = home
        self._threshold = threshold
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._stop = threading.Event()

    def poke(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, name="usage-compact", daemon=True)
            self._thread.start()

    def stop(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Give a running compaction ``grace_s`` to finish, then stop it after its current
        merge (what is left is merged by the next flush of any process)."""
        with self._lock:
            thread = self._thread
            self._again = False
        if thread is not None and thread is not threading.current_thread():
            thread.join(grace_s)
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        while True:
            try:
                result = auto_compact(
                    self._home, self._threshold, stop=self._stop, lock_wait_s=AUTO_LOCK_WAIT_S
                )
                if result.written:
                    pa.default_memory_pool().release_unused()
            except Exception:  # never kills the log; the next poke tries again
                log.exception("background compaction of usage segments failed")
            with self._lock:
                if not self._again or self._stop.is_set():
                    self._thread = None
                    return
                self._again = False
