"""UsageLog: many processes append usage events at once, with no locks between them.

Each ``append`` is one ``os.write`` of one JSON line to this process's own journal (an
``O_APPEND`` file, no fsync), so a process killed with SIGKILL loses no event whose
``append`` returned: ``recover()`` converts its journal later. Every ``flush_every`` events,
or at the first append once ``flush_interval_s`` has passed, the buffered rows become one
Parquet segment and the journal is deleted; the next append starts the next journal.
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
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from core.errors import ConfigError
from core.settings import costline_home
from core.usage._journal import journal_name, recover, rows_to_table_lenient
from core.usage._procid import ProcId
from core.usage._schema import UsageEvent, event_row
from core.usage._segments import journal_dir, segments_dir, write_segment

log = logging.getLogger("costline.usage")

_DUMPS = orjson.dumps
_OPT = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE
_monotonic = time.monotonic
_OPEN_LOGS: set[UsageLog] = set()
_BULK_LINES = 1024  # append_many writes this many lines per os.write


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):  # rare: a signal or a full disk cut the write short
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


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
        # pyarrow imports pandas on its first conversion of Python objects; do it now, since
        # imports fail during interpreter shutdown, when the at-exit flush may run.
        rows_to_table_lenient([], "warm-up")
        recover(self.home)
        _OPEN_LOGS.add(self)

    def _start_fresh(self) -> None:
        self._lock = threading.Lock()
        self._owner = ProcId.current()
        self._seq = 0
        self._fd = -1
        self._rows: list[tuple[Any, ...]] = []
        self._limit = self.flush_every  # flush when this many rows are buffered
        self._deadline = math.inf  # or at the first append after this time

    @property
    def pending(self) -> int:
        """Events journalled but not yet in a segment."""
        return len(self._rows)

    def append(self, event: UsageEvent) -> None:
        row = event_row(event)
        line = _DUMPS(row, option=_OPT)
        with self._lock:
            _write_all(self._fd if self._fd >= 0 else self._open(), line)
            rows = self._rows
            rows.append(row)
            now = _monotonic()
            if len(rows) == 1:
                self._deadline = now + self.flush_interval_s
            if len(rows) >= self._limit or now >= self._deadline:
                self._flush_in_append()

    def append_many(self, events: Iterable[UsageEvent]) -> None:
        rows = [event_row(e) for e in events]
        lines = [_DUMPS(r, option=_OPT) for r in rows]
        with self._lock:
            i = 0
            while i < len(rows):
                n = max(1, min(_BULK_LINES, self._limit - len(self._rows)))
                _write_all(self._fd if self._fd >= 0 else self._open(), b"".join(lines[i : i + n]))
                if not self._rows:
                    self._deadline = _monotonic() + self.flush_interval_s
                self._rows.extend(rows[i : i + n])
                i += n
                if len(self._rows) >= self._limit or _monotonic() >= self._deadline:
                    self._flush_in_append()

    def flush(self) -> None:
        """Turn the buffered events into a segment now."""
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._flush_locked()
            finally:
                self._closed = True
                _OPEN_LOGS.discard(self)

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

    def _flush_locked(self) -> None:
        if self._fd < 0:
            return
        name = journal_name(self._owner, self._seq)
        if self._rows:
            table = rows_to_table_lenient(self._rows, name)
            write_segment(table, self._sdir, name.removesuffix(".jsonl"))
        # The segment is durable; only now may the journal go (a crash in between leaves
        # both, and recovery sees the segment and just deletes the journal).
        (self._jdir / name).unlink()
        os.close(self._fd)
        self._fd = -1
        self._rows = []
        self._seq += 1
        self._limit = self.flush_every
        self._deadline = math.inf

    def _flush_in_append(self) -> None:
        try:
            self._flush_locked()
        except Exception:  # the events are safe in the journal; try again later
            log.exception("usage log flush failed; %d events stay journalled", len(self._rows))
            self._limit = len(self._rows) + self.flush_every
            self._deadline = _monotonic() + max(self.flush_interval_s, 1.0)

    def _after_fork_in_child(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # the parent's journal and buffered rows stay the parent's
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
