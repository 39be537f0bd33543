"""A UsageLog's background threads: one converts sealed journals into segments, another
compacts small segments once there are too many.

Both start on first use. The converter thread waits (blocked, not polling) for work; the
compactor thread exists only while a compaction runs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from core.usage._compact import AUTO_LOCK_WAIT_S, auto_compact
from core.usage._convert import connect, convert_journal
from core.usage._journal import JOURNAL_SUFFIX

log = logging.getLogger("costline.usage")

MAX_BACKLOG = 2  # sealed journals waiting for conversion before appends wait too
CLOSE_GRACE_S = 3.0  # how long closing a log lets a running compaction finish


class Converter:
    """One background thread turning sealed journals into segments, oldest first."""

    def __init__(self, sdir: Path, on_segment: Callable[[], None] | None = None) -> None:
        self._sdir = sdir
        self._on_segment = on_segment  # called (on this thread) after each new segment
        self._cond = threading.Condition()
        self._queue: deque[tuple[Path, int] | None] = deque()
        self._busy = 0  # journals queued or being converted
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

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
        """Wait until every queued journal is converted; return (and clear) the last error."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            error, self._error = self._error, None
            return error

    def queued(self) -> list[tuple[Path, int] | None]:
        return list(self._queue)

    def stop(self) -> None:
        with self._cond:
            if self._thread is not None:
                self._queue.append(None)
                self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        con: list[duckdb.DuckDBPyConnection] = []  # opened on first use, inside the try below
        try:
            while True:
                with self._cond:
                    while not self._queue:
                        self._cond.wait()
                    item = self._queue.popleft()
                if item is None:
                    return
                error = self._convert(*item, con)
                with self._cond:
                    self._busy -= 1
                    self._error = error or self._error
                    self._cond.notify_all()
                if error is None and self._on_segment is not None:
                    self._on_segment()
        finally:
            for c in con:
                c.close()

    def _convert(
        self, journal: Path, fd: int, con: list[duckdb.DuckDBPyConnection]
    ) -> Exception | None:
        stem = journal.name.removesuffix(JOURNAL_SUFFIX)
        try:
            if not con:
                con.append(connect())
            convert_journal(journal, self._sdir, stem, con[0])
            journal.unlink()  # only once the segment is durable
            pa.default_memory_pool().release_unused()  # keep the resident size flat
            return None
        except Exception as exc:  # the journal stays; recover() takes it after this process
            log.exception("usage journal %s could not be converted", journal)
            return exc
        finally:
            os.close(fd)


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
