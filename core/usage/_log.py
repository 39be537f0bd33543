"""UsageLog: many processes append usage events at once, with no locks between them.

Each ``append`` is one ``os.write`` of one framed record (length + CRC32 + JSON, see
_frame) to this process's own journal (an ``O_APPEND`` file, no fsync), so a process killed
with SIGKILL loses no event whose ``append`` returned: ``recover()`` converts its journal
later. The journal is the buffer, except when it cannot be written (disk full, quota, I/O
error): then a failed write is cut back, events are held in memory (up to
``MAX_HELD_BYTES``, counted and warned) and written, in order, as soon as the file system
takes them again; meanwhile ``check()`` (called by the Router before any provider call)
raises ``UsageLogUnavailable``. An event over ``MAX_EVENT_BYTES`` has its long fields cut
and is flagged ``truncated`` (see _limits).

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
from typing import Any

import orjson

from core.errors import ConfigError, UsageLogUnavailable
from core.private import private_dir, private_open
from core.settings import costline_home
from core.usage import _bucket
from core.usage._frame import frame
from core.usage._journal import journal_name, recover
from core.usage._limits import MAX_EVENT_BYTES, shrink
from core.usage._procid import ProcId
from core.usage._schema import UsageEvent, event_row
from core.usage._segments import journal_dir, segments_dir
from core.usage._workers import AutoCompactor, Converter

log = logging.getLogger("costline.usage")

_OPEN_LOGS: set[UsageLog] = set()
_BULK_LINES = 1024  # append_many writes this many lines per os.write
MAX_HELD_BYTES = 64 << 20  # events kept in memory while the journal cannot be written
RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0  # backoff of writing held events again
HEALTH_COUNTERS = (
    "held_events",
    "held_bytes",
    "dropped_events",
    "write_failures",
    "written_late",
    "truncated_events",
    "conversion_retries",
)
FREE_MARGIN = 1 << 20  # free bytes beyond the held events that make a retry worth it now


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):  # rare: a signal or a full disk cut the write short
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


class UsageLog:
    """Append-only usage log of this process. Thread-safe; flushes at exit.

    ``flush_every``: events per segment at most. ``flush_interval_s``: how long an event may
    stay in the journal (invisible to readers). ``compact_threshold``: compact in the
    background once more than this many segments are small (0: never; ``costline compact``).
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
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
        self.home = Path(home) if home is not None else costline_home()
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
        self._size = 0  # bytes written to the open journal
        self._torn = False  # a failed write left bytes that could not be cut back
        self._slow = False  # events held or journal torn: appends take the slow path
        self._held: list[bytes] = []  # framed events waiting for the disk
        self._held_bytes = 0
        self._retry_at = math.inf
        self._retry_s = RETRY_MIN_S
        self._dropped = self._failures = self._written_late = self._truncated = 0
        self._last_error: str | None = None
        # with a bucket, segments leave this disk: the bucket's leader compacts them there
        self._shipper = _bucket.shipper_for(self.home)
        self._compactor = (
            AutoCompactor(self.home, self.compact_threshold)
            if self.compact_threshold and self._shipper is None
            else None
        )
        poke = self._compactor.poke if self._compactor is not None else None
        if self._shipper is not None:
            poke = self._shipper.poke
            self._shipper.poke()  # ship what an earlier process left in the outbox
        self._converter = Converter(self._sdir, poke)

    @property
    def pending(self) -> int:
        """Events in the open journal, not yet handed to the converter."""
        return self._count

    def append(self, event: UsageEvent) -> None:
        self.append_row(event_row(event))

    def append_row(self, row: tuple[Any, ...]) -> None:
        """Append one event given as its row: the values in ``COLUMNS`` order, as
        ``event_row(UsageEvent(...))`` gives them (``ts`` an aware datetime, ``metadata`` a
        dict). The router builds its events this way, with no ``UsageEvent`` in between."""
        payload = orjson.dumps(row, option=orjson.OPT_NAIVE_UTC)
        if len(payload) > MAX_EVENT_BYTES:
            payload = self._shrunk(row)
        line = frame(payload)
        with self._lock:
            if self._slow:  # events are held in memory: keep their order
                self._hold([line], None)
                return
            try:
                fd = self._fd if self._fd >= 0 else self._open()
                _write_all(fd, line)
            except OSError as exc:
                self._cut_back()
                self._hold([line], exc)
                return
            self._size += len(line)
            self._count += 1
            if self._count == 1:
                self._arm()
            if self._count >= self.flush_every or time.monotonic() >= self._deadline:
                self._seal()

    def append_many(self, events: Iterable[UsageEvent]) -> None:
        lines = []
        for e in events:
            payload = orjson.dumps(event_row(e), option=orjson.OPT_NAIVE_UTC)
            if len(payload) > MAX_EVENT_BYTES:
                payload = self._shrunk(event_row(e))
            lines.append(frame(payload))
        with self._lock:
            i = 0
            while i < len(lines):
                if self._slow:
                    self._hold(lines[i:], None)
                    return
                n = min(_BULK_LINES, self.flush_every - self._count, len(lines) - i)
                data = b"".join(lines[i : i + n])
                try:
                    _write_all(self._fd if self._fd >= 0 else self._open(), data)
                except OSError as exc:
                    self._cut_back()
                    self._hold(lines[i:], exc)
                    return
                self._size += len(data)
                if not self._count:
                    self._arm()
                self._count += n
                i += n
                if self._count >= self.flush_every or time.monotonic() >= self._deadline:
                    self._seal()

    def check(self) -> None:
        """Raise ``UsageLogUnavailable`` if a call finished now could not be recorded: events
        are held in memory because the journal cannot be written (disk full) and writing them
        fails again. Called before a provider is paid; costs one attribute read when healthy."""
        if not self._slow:
            return
        with self._lock:
            if self._due() and self._drain():
                return
            held, error = len(self._held), self._last_error
        raise UsageLogUnavailable(
            f"the usage log cannot be written ({error}); no provider was called."
            f" {held} completed calls are held in memory until it can be written",
            held=held,
        )

    def health(self) -> dict[str, int | str | None]:
        """Counters for metrics and ``costline doctor``."""
        with self._lock:
            return {
                "held_events": len(self._held),
                "held_bytes": self._held_bytes,
                "dropped_events": self._dropped,
                "write_failures": self._failures,
                "written_late": self._written_late,
                "truncated_events": self._truncated,
                "conversion_retries": self._converter.retries,
                "last_error": self._last_error,
            }

    def flush(self) -> None:
        """Make every event appended so far visible to readers now: seal the journal and wait
        until its segment is written. For callers that must read their own events at once
        (the console's playground); otherwise they show up within ``flush_interval_s``."""
        with self._lock:
            self._drain()
            self._seal()
            held = len(self._held)
        self._converter.retry_now()
        error = self._converter.wait_idle()
        if error is not None:
            raise error
        if held:
            raise UsageLogUnavailable(
                f"the usage log cannot be written ({self._last_error});"
                f" {held} events are held in memory",
                held=held,
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._drain()
            if self._held:
                log.error(
                    "usage log closed with %d events it could not write (%s): they are lost",
                    len(self._held),
                    self._last_error,
                )
                self._dropped += len(self._held)
                self._held, self._held_bytes = [], 0
            self._closed = True
            _OPEN_LOGS.discard(self)
            self._seal()
            self._wake.notify()  # the timer thread ends
            timer = self._timer
        self._converter.retry_now()  # a last try for journals that failed before
        error = self._converter.wait_idle()
        self._converter.stop()
        if self._compactor is not None:
            self._compactor.stop()
        if self._shipper is not None:
            self._shipper.drain(_bucket.CLOSE_DRAIN_S)  # what is left ships on the next start
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
        self._size = 0
        return fd

    def _arm(self) -> None:
        """The journal got its first event: seal it flush_interval_s from now."""
        self._deadline = time.monotonic() + self.flush_interval_s
        if self.flush_interval_s <= 0:
            return  # the append itself seals it
        self._start_timer()

    def _run_timer(self) -> None:
        """Seal the open journal at its deadline and retry writing held events; wait without
        a timeout while there is nothing to do."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                if self._slow and now >= self._retry_at:
                    try:
                        self._drain()
                    except Exception:
                        log.exception("usage log: writing held events failed")
                        self._retry_at = now + RETRY_MAX_S
                    continue
                delay = min(self._deadline, self._retry_at) - now
                if delay > 0:
                    self._wake.wait(None if delay == math.inf else delay)
                    continue
                try:
                    self._seal()
                except Exception:
                    log.exception("usage log: sealing the journal on its timer failed")
                    self._deadline = math.inf

    def _start_timer(self) -> None:
        if self._timer is None:
            self._timer = threading.Thread(target=self._run_timer, name="usage-flush", daemon=True)
            self._timer.start()
        else:
            self._wake.notify()

    def _shrunk(self, row: tuple[object, ...]) -> bytes:
        payload, cut = shrink(row, lambda r: orjson.dumps(r, option=orjson.OPT_NAIVE_UTC))
        if cut:
            with self._lock:
                self._truncated += 1
            log.warning(
                "usage event over %d bytes: its long fields were truncated", MAX_EVENT_BYTES
            )
        return payload

    def _cut_back(self) -> None:
        """Remove what a failed write left of a record (a torn record never reaches a
        reader glued to the next one); if that fails too, the next write starts with a
        newline."""
        if self._fd < 0:
            return
        try:
            os.ftruncate(self._fd, self._size)
            self._torn = False
        except OSError:
            self._torn = self._slow = True

    def _due(self) -> bool:
        """Worth trying to write held events now: the backoff is over, or the file system
        has room for them again (a cheap statvfs)."""
        if time.monotonic() >= self._retry_at:
            return True
        try:
            st = os.statvfs(self._jdir)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize > self._held_bytes + FREE_MARGIN

    def _hold(self, lines: list[bytes], exc: OSError | None) -> None:
        """Keep events the journal could not take (bounded); a timer retries them."""
        for line in lines:
            if self._held_bytes + len(line) > MAX_HELD_BYTES:
                self._dropped += 1
                if self._dropped == 1 or self._dropped % 1000 == 0:
                    log.error(
                        "usage log: %d events dropped: %d MB held in memory already",
                        self._dropped,
                        MAX_HELD_BYTES >> 20,
                    )
                continue
            self._held.append(line)
            self._held_bytes += len(line)
        self._slow = True
        if exc is not None:
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            if self._failures == 1 or self._failures % 1000 == 0:
                log.warning(
                    "usage log: cannot write the journal (%s); %d events held in memory",
                    self._last_error,
                    len(self._held),
                )
            self._retry_at = time.monotonic() + self._retry_s
            self._start_timer()
        elif self._due():
            self._drain()

    def _drain(self) -> bool:
        """Write the held events; True when none is left."""
        if not self._slow:
            return True
        if self._torn:
            self._cut_back()
        data = b"".join(self._held)
        torn = self._torn
        fd = self._fd
        try:
            if data or torn:
                fd = fd if fd >= 0 else self._open()
                _write_all(fd, b"\n" + data if torn else data)
        except OSError as exc:
            self._cut_back()
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
            self._retry_at = time.monotonic() + self._retry_s
            return False
        n = len(self._held)
        if data or torn:
            self._size = os.fstat(fd).st_size if torn else self._size + len(data)
        self._torn = self._slow = False
        self._held, self._held_bytes = [], 0
        self._retry_s, self._retry_at = RETRY_MIN_S, math.inf
        if n:
            self._written_late += n
            log.warning("usage log: the journal is writable again; wrote %d held events", n)
            self._count += n
            if self._count == n:
                self._arm()
            if self._count >= self.flush_every or time.monotonic() >= self._deadline:
                self._seal()
        return True

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


def log_health() -> dict[str, int]:
    """This process's open logs' counters, summed (for metrics)."""
    out = dict.fromkeys(HEALTH_COUNTERS, 0)
    for usage_log in list(_OPEN_LOGS):
        for k, v in usage_log.health().items():
            if isinstance(v, int):
                out[k] = out.get(k, 0) + v
    return out


def _after_fork() -> None:
    for usage_log in list(_OPEN_LOGS):
        usage_log._after_fork_in_child()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork)
