"""UsageLog: many processes append usage events at once, with no locks between them.

Each ``append`` is one ``os.write`` of one JSON line to this process's own journal (an
``O_APPEND`` file, no fsync), so a process killed with SIGKILL loses no event whose
``append`` returned: ``recover()`` converts its journal later. Every ``flush_every`` events,
or at the first append once ``flush_interval_s`` has passed, the journal is sealed and a
background thread turns it into a Parquet segment (DuckDB parses it without holding the GIL),
then deletes it. No event is held in Python memory: the journal is the buffer.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import duckdb
import orjson
import pyarrow as pa

from core.errors import ConfigError
from core.settings import costline_home
from core.usage._convert import connect, convert_journal
from core.usage._journal import JOURNAL_SUFFIX, journal_name, recover
from core.usage._procid import ProcId
from core.usage._schema import UsageEvent, event_row
from core.usage._segments import journal_dir, segments_dir

log = logging.getLogger("costline.usage")

_DUMPS = orjson.dumps
_OPT = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE
_monotonic = time.monotonic
_OPEN_LOGS: set[UsageLog] = set()
_BULK_LINES = 1024  # append_many writes this many lines per os.write
MAX_BACKLOG = 2  # sealed journals waiting for conversion before appends wait too


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):  # rare: a signal or a full disk cut the write short
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


class _Converter:
    """One background thread turning sealed journals into segments, oldest first."""

    def __init__(self, sdir: Path) -> None:
        self._sdir = sdir
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


class UsageLog:
    """Append-only usage log of this process. Thread-safe; flushes at exit."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        flush_every: int = 50_000,
        flush_interval_s: float = 5.0,
    ) -> None:
        if flush_every < 1 or flush_interval_s < 0:
            raise ConfigError("flush_every must be >= 1, flush_interval_s >= 0", field="flush")
        self.home = home if home is not None else costline_home()
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self._jdir = journal_dir(self.home)
        self._sdir = segments_dir(self.home)
        self._jdir.mkdir(parents=True, exist_ok=True)
        self._sdir.mkdir(parents=True, exist_ok=True)
        self._closed = False
        self._start_fresh()
        recover(self.home)
        _OPEN_LOGS.add(self)

    def _start_fresh(self) -> None:
        self._lock = threading.Lock()
        self._owner = ProcId.current()
        self._seq = 0
        self._fd = -1
        self._count = 0  # events in the open journal
        self._deadline = math.inf  # seal at the first append after this time
        self._converter = _Converter(self._sdir)

    @property
    def pending(self) -> int:
        """Events in the open journal, not yet handed to the converter."""
        return self._count

    def append(self, event: UsageEvent) -> None:
        line = _DUMPS(event_row(event), option=_OPT)
        with self._lock:
            _write_all(self._fd if self._fd >= 0 else self._open(), line)
            self._count += 1
            now = _monotonic()
            if self._count == 1:
                self._deadline = now + self.flush_interval_s
            if self._count >= self.flush_every or now >= self._deadline:
                self._seal()

    def append_many(self, events: Iterable[UsageEvent]) -> None:
        lines = [_DUMPS(event_row(e), option=_OPT) for e in events]
        with self._lock:
            i = 0
            while i < len(lines):
                n = min(_BULK_LINES, self.flush_every - self._count, len(lines) - i)
                _write_all(self._fd if self._fd >= 0 else self._open(), b"".join(lines[i : i + n]))
                if not self._count:
                    self._deadline = _monotonic() + self.flush_interval_s
                self._count += n
                i += n
                if self._count >= self.flush_every or _monotonic() >= self._deadline:
                    self._seal()

    def flush(self) -> None:
        """Turn every journalled event into a segment now (and wait for it)."""
        with self._lock:
            self._seal()
        error = self._converter.wait_idle()
        if error is not None:
            raise error

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _OPEN_LOGS.discard(self)
            self._seal()
        error = self._converter.wait_idle()
        self._converter.stop()
        if error is not None:
            raise error

    def __enter__(self) -> UsageLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # internals (called with self._lock held)

    def _open(self) -> int:
        if self._closed:
            raise ValueError("UsageLog is closed")
        path = self._jdir / journal_name(self._owner, self._seq)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        with contextlib.suppress(OSError):  # tells recoverers on other hosts we are alive
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd
        return fd

    def _seal(self) -> None:
        """Hand the open journal to the converter; the next append starts a new one."""
        if self._fd < 0:
            return
        journal = self._jdir / journal_name(self._owner, self._seq)
        fd, self._fd = self._fd, -1
        self._seq += 1
        self._count = 0
        self._deadline = math.inf
        self._converter.submit(journal, fd)

    def _after_fork_in_child(self) -> None:
        # The parent's journals (open or queued) stay the parent's: drop our copies.
        fds = [self._fd] + [item[1] for item in self._converter.queued() if item]
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        self._start_fresh()


def _close_all() -> None:
    for usage_log in list(_OPEN_LOGS):
        try:
            usage_log.close()
        except Exception:
            log.exception("usage log flush at exit failed; recover() will pick it up")


def _after_fork() -> None:
    for usage_log in list(_OPEN_LOGS):
        usage_log._after_fork_in_child()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork)
