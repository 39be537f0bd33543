"""Python children started by tests run on this process's clock, moved or not.

A test session may run with this process's clock moved and ticking (time-machine travelling:
``COSTLINE_TEST_TRAVEL`` in conftest, or a ``-p`` plugin doing the same). Time-machine moves
this process only, so a child that counts budget windows, stamps usage events or expires
shared keys would count on the real date while this process counts on the moved one.

``preamble()`` gives the lines a launcher puts before a child's code: they start the same
ticking travel in the child, to this process's wall clock minus CLOCK_MONOTONIC (one clock,
system-wide on Linux, never moved) plus the child's own CLOCK_MONOTONIC, so the child's
``time.time()``, ``datetime.now()`` and ``core.clock`` read what this process reads at the
same instant, however long the child took to start. When this process is not travelling the
preamble is empty: the child runs exactly the code it was given.
"""

from __future__ import annotations

import sys
import time

__all__ = ["preamble"]


def preamble() -> str:
    """One line of Python to run first in a child (empty unless this process travels)."""
    tm = sys.modules.get("time_machine")
    if tm is None or not tm.escape_hatch.is_travelling():
        return ""
    wall = time.time() - time.monotonic()  # this process's (moved) wall clock
    return (
        "import time as _t, time_machine as _tm; "
        f"_tm.travel({wall!r} + _t.monotonic(), tick=True).start(); del _t, _tm\n"
    )
