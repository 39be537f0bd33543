"""The one place Costline reads "now" from.

Everything that asks what time it is (demo generation, budget windows, detectors, forecasts,
the console's ranges, event timestamps) calls ``now()`` or ``today(tz)`` here, never
``datetime.now()`` / ``date.today()`` directly, so a test can pin the clock for all of them:

    with frozen(datetime(2027, 2, 28, 23, 30, tzinfo=UTC)):
        generate_demo(...)          # "today" is 28 Feb 2027 everywhere

``set_clock(fn)`` installs any zero-argument function returning an aware datetime (a ticking
offset, a fake that steps); ``set_clock(None)`` restores the system clock. Durations and
timeouts keep using ``time.monotonic()`` / ``time.perf_counter()``: they measure elapsed time,
not the date.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["frozen", "is_system", "now", "offset", "set_clock", "timestamp", "today"]

Clock = Callable[[], datetime]


def _system() -> datetime:
    return datetime.now(UTC)


_clock: Clock = _system


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return _clock()


def timestamp() -> float:
    """``now()`` as POSIX seconds (for code that keeps time as floats)."""
    if _clock is _system:
        return time.time()  # the same value, without building a datetime (hot paths)
    return _clock().timestamp()


def is_system() -> bool:
    """True unless a clock is installed (``set_clock``, ``frozen``, ``offset``)."""
    return _clock is _system


def today(tz: str = "UTC") -> date:
    """Today's date in the IANA zone ``tz``."""
    return _clock().astimezone(ZoneInfo(tz)).date()


def set_clock(clock: Clock | None) -> Clock:
    """Install ``clock`` (None: the system clock); returns the clock it replaced."""
    global _clock
    previous = _clock
    _clock = clock or _system
    return previous


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    """Pin the clock at ``at`` (aware) for the duration of the block."""
    if at.tzinfo is None:
        raise ValueError("frozen() needs an aware datetime, e.g. datetime(..., tzinfo=UTC)")
    previous = set_clock(lambda: at)
    try:
        yield
    finally:
        set_clock(previous)


@contextmanager
def offset(delta: timedelta) -> Iterator[None]:
    """Run the block with the clock moved by ``delta`` and still ticking."""
    previous = set_clock(lambda: _system() + delta)
    try:
        yield
    finally:
        set_clock(previous)
