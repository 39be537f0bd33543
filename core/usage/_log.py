"""UsageLog: many processes append usage events at once, with no locks between them.

Each ``append`` is one ``os.write`` of one JSON line to this process's own journal (an
``O_APPEND`` file, no fsync), so a process killed with SIGKILL loses no event whose
``append`` returned: ``recover()`` converts its journal later. No event is held in Python
memory: the journal is the buffer.

The journal is sealed after ``flush_every`` events, or ``flush_interval_s`` after its first
event even if nothing else is appended (a timer thread, armed by the first append after a
seal, blocked while there is nothing to seal). A background thread then turns it into a
Parquet segment (DuckDB parses it without holding the GIL) and deletes it, so readers see an
event within about ``flush_interval_s``; ``flush()`` makes them visible at once. When more
than ``compact_threshold`` segments are small, a background thread compacts them.
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

import orjson

from core.errors import ConfigError
from core.private import private_dir, private_open
from core.settings import costline_home
from core.usage._journal import journal_name, recover
from core.usage._procid import ProcId
from core.usage._schema import UsageEvent, event_row
from core.usage._segments import journal_dir, segments_dir
from core.usage._workers import AutoCompactor, Converter

log = logging.getLogger("costline.usage")

_DUMPS = orjson.dumps
_OPT = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE
_monotonic = time.monotonic
_write = os.write
_OPEN_LOGS: set[UsageLog] = set()
_BULK_LINES = 1024  # append_many writes this many lines per os.write


def _write_all(fd: int, data: bytes) -> None:
    written = _write(fd, data)
    if written != len(data):  # rare: a signal or a full disk cut the write short
        view = memoryview(data)[written:]
        while view:
            view = view[_write(fd, view) :]


class UsageLog:
    """Append-only usage log of this process. Thread-safe; flushes at exit.

    ``flush_every``: events per segment at most. ``flush_interval_s``: how long an event may
    stay in the journal (invisible to readers). ``compact_threshold``: compact in the
    background once more than this many segments are small (0: never; ``costline compact``).
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        flush_every: int = 50_000,
        flush_interval_s: float = 2.0,
        compact_threshold: int = 64,
    ) -> None:
        if flush_every < 1 or flush_interval_s < 0 or compact_threshold < 0:
            raise ConfigError(
                "flush_every must be >= 1, flush_interval_s and compact_threshold >= 0",
                field="flush",
            )
        self.home = home if home is not None else costline_home()
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.compact_threshold = compact_threshold
        self._jdir = journal_dir(self.home)
        self._sdir = segments_dir(self.home)
        private_dir(self.home)
        private_dir(self._jdir)
        private_dir(self._sdir)
        self._closed = False
        self._start_fresh()
        recover(self.home)
        _OPEN_LOGS.add(self)

    def _start_fresh(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # wakes the flush timer
        self._timer: threading.Thread | None = None
        self._owner = ProcId.current()
        self._seq = 0
        self._fd = -1
        self._count = 0  # events in the open journal
        self._deadline = math.inf  # seal the open journal at this time
        self._compactor = (
            AutoCompactor(self.home, self.compact_threshold) if self.compact_threshold else None
        )
        poke = self._compactor.poke if self._compactor is not None else None
        self._converter = Converter(self._sdir, poke)

    @property
    def pending(self) -> int:
        """Events in the open journal, not yet handed to the converter."""
        return self._count

    def append(self, event: UsageEvent) -> None:
        line = _DUMPS(event_row(event), option=_OPT)
        with self._lock:
            fd = self._fd if self._fd >= 0 else self._open()
            written = _write(fd, line)  # _write_all, inlined: the hot path
            if written != len(line):
                _write_all(fd, line[written:])
            self._count += 1
            if self._count == 1:
                self._arm()
            if self._count >= self.flush_every or _monotonic() >= self._deadline:
                self._seal()

    def append_many(self, events: Iterable[UsageEvent]) -> None:
        lines = [_DUMPS(event_row(e), option=_OPT) for e in events]
        with self._lock:
            i = 0
            while i < len(lines):
                n = min(_BULK_LINES, self.flush_every - self._count, len(lines) - i)
                _write_all(self._fd if self._fd >= 0 else self._open(), b"".join(lines[i : i + n]))
                if not self._count:
                    self._arm()
                self._count += n
                i += n
                if self._count >= self.flush_every or _monotonic() >= self._deadline:
                    self._seal()

    def flush(self) -> None:
        """Make every event appended so far visible to readers now: seal the journal and wait
        until its segment is written. For callers that must read their own events at once
        (the console's playground); otherwise they show up within ``flush_interval_s``."""
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
            self._wake.notify()  # the timer thread ends
            timer = self._timer
        error = self._converter.wait_idle()
        self._converter.stop()
        if self._compactor is not None:
            self._compactor.stop()
        if timer is not None and timer is not threading.current_thread():
            timer.join()
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
        fd = private_open(path, flags)
        with contextlib.suppress(OSError):  # tells recoverers on other hosts we are alive
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd
        return fd

    def _arm(self) -> None:
        """The journal got its first event: seal it flush_interval_s from now."""
        self._deadline = _monotonic() + self.flush_interval_s
        if self.flush_interval_s <= 0:
            return  # the append itself seals it
        if self._timer is None:
            self._timer = threading.Thread(target=self._run_timer, name="usage-flush", daemon=True)
            self._timer.start()
        else:
            self._wake.notify()

    def _run_timer(self) -> None:
        """Seal the open journal at its deadline; wait without a timeout while none is open."""
        with self._lock:
            while not self._closed:
                delay = self._deadline - _monotonic()
                if delay > 0:
                    self._wake.wait(None if delay == math.inf else delay)
                    continue
                try:
                    self._seal()
                except Exception:
                    log.exception("usage log: sealing the journal on its timer failed")
                    self._deadline = math.inf

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
        # The parent's journals (open or queued) stay the parent's: drop our copies. Its
        # threads (converter, timer, compactor) do not exist here; new ones start on demand.
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
