"""Python children started by tests die with the test process.

Killing pytest (SIGTERM, SIGKILL, a CI timeout) used to leave the children its tests had
started running, some of them busy in loops that wait for a parent that no longer exists.
``die_with_parent()`` gives the line a launcher puts first in a child's code: on Linux the
child asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and
exits at once if the parent is already gone. The kernel's "parent" is the thread that
started the child: start children that must outlive a thread from the main thread.

A child with children of its own (``costline gateway --workers N``, ``costline console`` and
its Streamlit) asks for SIGTERM instead: it stops them on SIGTERM, and they would outlive a
SIGKILL (the kernel's request is not inherited across a fork). ``python_m(module)`` is
``python -m module`` with that line first.
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["die_with_parent", "python_m"]

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> str:
    """One line of Python to run first in a child of this process (empty off Linux): the
    child gets ``signum`` when this process dies."""
    if not sys.platform.startswith("linux"):
        return ""
    return (
        "import ctypes as _c, os as _o; "
        f"_c.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, {int(signum)}); "
        f"_o.getppid() == {os.getpid()} or _o._exit(1); del _c, _o\n"
    )


def python_m(module: str, first: str = "", signum: int | None = signal.SIGKILL) -> list[str]:
    """The command ``python -m module`` (append its arguments) that gets ``signum`` when this
    process dies (None: nothing); ``first``: code to run before the module."""
    death = die_with_parent(signum) if signum is not None else ""
    run = f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", death + first + run]
