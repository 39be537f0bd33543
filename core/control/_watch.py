"""Watcher: a router's view of the control plane, refreshed when its version changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from ._snapshot import ControlSnapshot

if TYPE_CHECKING:
    from ._store import ControlPlane

log = logging.getLogger(__name__)


class Watcher:
    """``current()`` returns the latest snapshot, checking ``version()`` (one cheap SELECT) at
    most once per ``min_interval_s`` and reloading only when it changed. No thread: the
    caller's own calls drive it. If the database is unreachable the last good snapshot is
    served and the error kept in ``last_error``. Safe to share between threads."""

    def __init__(
        self,
        plane: ControlPlane,
        min_interval_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.plane = plane
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = plane.snapshot()
        self._checked = clock()
        self.polls = 0
        self.reloads = 0
        self.last_error: Exception | None = None

    def current(self) -> ControlSnapshot:
        if self._clock() - self._checked < self.min_interval_s:
            return self._snapshot
        if not self._lock.acquire(blocking=False):
            return self._snapshot  # another thread is checking right now
        try:
            self._checked = self._clock()
            self._poll()
        finally:
            self._lock.release()
        return self._snapshot

    def refresh(self) -> ControlSnapshot:
        """Check now, whatever the interval."""
        with self._lock:
            self._checked = self._clock()
            self._poll()
        return self._snapshot

    def _poll(self) -> None:
        self.polls += 1
        try:
            if self.plane.version() != self._snapshot.version:
                self._snapshot = self.plane.snapshot()
                self.reloads += 1
            self.last_error = None
        except SQLAlchemyError as exc:
            if self.last_error is None:
                log.warning(
                    "control plane unreachable, serving version %s: %s", self._snapshot.version, exc
                )
            self.last_error = exc
