"""Python children started by tests die with the test process.

Killing pytest (SIGTERM, SIGKILL, a CI timeout) used to leave the children its tests had
started running, some of them busy in loops that wait for a parent that no longer exists.
``die_with_parent()`` gives the line a launcher puts first in a child's code: on Linux the
child asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and
exits at once if the parent is already gone. The kernel's "parent" is the thread that
started the child: start children that must outlive a thread from the main thread.
"""

from __future__ import annotations

import os
import sys

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1


def die_with_parent() -> str:
    """One line of Python to run first in a child of this process (empty off Linux)."""
    if not sys.platform.startswith("linux"):
        return ""
    return (
        "import ctypes as _c, os as _o, signal as _s; "
        f"_c.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, _s.SIGKILL); "
        f"_o.getppid() == {os.getpid()} or _o._exit(1); del _c, _o, _s\n"
    )
