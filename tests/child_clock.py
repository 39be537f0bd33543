"""Python children started by tests run on this process's clock, moved or not.

A test session may run with this process's clock moved and ticking (time-machine travelling:
``COSTLINE_TEST_TRAVEL`` in conftest, or a ``-p`` plugin doing the same). Time-machine moves
this process only, so a child that counts budget windows, stamps usage events or expires
shared keys would count on the real date while this process counts on the moved one.

``preamble()`` gives the line a launcher puts before a child's code. The child's clock is
this process's wall clock minus CLOCK_MONOTONIC (one clock, system-wide on Linux, never moved)
plus the child's own CLOCK_MONOTONIC: it reads what this process reads at the same instant,
however long the child took to start, and keeps ticking. Two depths:

- ``process=True``: the same time-machine travel in the child (``time.time()``,
  ``datetime.now()``, hence ``core.clock``). For children that share live counters with this
  process (SQLite-shared or memory state: key expiry and rate windows are ``time.time()``).
- ``process=False``: ``core.clock`` only (dates: budget windows, event timestamps, demo
  days); ``time.time()`` stays the kernel's. Used for usage-log children. (It once kept a
  moved ``time.time()`` from making fresh files look months old; core.usage now ages files on
  the file system's clock, ``_segments.fs_now_ns``, so either depth would do.)

When this process is not travelling the preamble is empty: the child runs exactly the code
it was given.
"""

from __future__ import annotations

import sys
import time

__all__ = ["preamble"]


def preamble(*, process: bool = True) -> str:
    """One line of Python to run first in a child (empty unless this process travels)."""
    tm = sys.modules.get("time_machine")
    if tm is None or not tm.escape_hatch.is_travelling():
        return ""
    wall = time.time() - time.monotonic()  # this process's (moved) wall clock
    if process:
        return (
            "import time as _t, time_machine as _tm; "
            f"_tm.travel({wall!r} + _t.monotonic(), tick=True).start(); del _t, _tm\n"
        )
    return (
        "import time as _t, datetime as _d, core.clock as _c; "
        "_c.set_clock(lambda t=_t, d=_d: "
        f"d.datetime.fromtimestamp({wall!r} + t.monotonic(), d.UTC)); del _t, _d, _c\n"
    )
