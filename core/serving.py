"""Say where a server listens only once it does.

``costline gateway`` and ``costline api`` print a line with their URL; a script waits for
that line, then connects. Printed before uvicorn started, the line could come before the
socket listened (uvicorn runs the app's startup first) and the script's connection was
refused. ``run`` prints it once uvicorn's server has started; ``announce_when_listening``
is for uvicorn's worker processes, which only the workers know about: it prints once a
connection succeeds. ``StartupSignals`` stops a server told to stop while it starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["StartupSignals", "announce_when_listening", "probe_host", "run"]

STARTUP_FAILURE = 3  # uvicorn's exit status when the server did not start


class StartupSignals:
    """Stop signals (SIGTERM, SIGINT) that come while a server starts, before uvicorn has
    handlers of its own.

    The gateway ignored a SIGTERM then (its handler swallows uvicorn's re-raise after a
    drain) and went on to serve; a SIGINT was a traceback from whatever was importing.
    Caught here, the first is noted in ``got``: the starter returns at its next step, or
    ``handed_over`` sends it again once uvicorn's handlers are in, and uvicorn stops as for
    a signal while it serves. A second SIGINT raises KeyboardInterrupt, for a start that
    hangs. Main thread only (signal handlers are its alone); elsewhere nothing is caught."""

    def __init__(self, *signums: int) -> None:
        self.got: int | None = None
        self.signums: tuple[int, ...] = ()
        self._handler = self._note  # one object: getsignal() returns it while it is ours
        if threading.current_thread() is threading.main_thread():
            self.signums = signums
            for signum in signums:
                signal.signal(signum, self._handler)

    def _note(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and self.got == signal.SIGINT:
            raise KeyboardInterrupt
        self.got = self.got or signum

    def ours(self) -> bool:
        """Whether any of the signals still comes to this object."""
        return any(signal.getsignal(s) is self._handler for s in self.signums)

    @contextlib.contextmanager
    def handed_over(self) -> Iterator[None]:
        """Run uvicorn inside: once its handlers replace these, the signal noted (if any)
        is sent again, from a daemon thread."""
        done = threading.Event()

        def wait() -> None:
            while self.ours() and not done.wait(0.01):
                pass
            if self.got is not None and not done.is_set():
                os.kill(os.getpid(), self.got)

        if self.signums:
            threading.Thread(target=wait, name="hand-over", daemon=True).start()
        try:
            yield
        finally:
            done.set()


def run(app: Any, line: str, signals: StartupSignals | None = None, **kwargs: Any) -> int:
    """``uvicorn.run(app, **kwargs)`` (one process), printing ``line`` (if any) once the
    socket listens; 0 once served, uvicorn's STARTUP_FAILURE if it never started.
    ``signals``: those caught while the caller started (a stop noted is passed on)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and line:
                print(line, flush=True)

    server = Server(uvicorn.Config(app, **kwargs))
    handed = signals.handed_over() if signals else contextlib.nullcontext()
    with handed, contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        server.run()
    return 0 if server.started else STARTUP_FAILURE


def probe_host(host: str) -> str:
    """Where to connect to reach a server bound to ``host`` (any address: loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def announce_when_listening(host: str, port: int, line: str) -> threading.Thread:
    """Print ``line`` (from a daemon thread) once a connection to ``host:port`` succeeds.
    Nothing is printed if something listened there already: that server is not ours."""

    def accepts() -> bool:
        try:
            socket.create_connection((probe_host(host), port), timeout=1.0).close()
        except OSError:
            return False
        return True

    def wait() -> None:
        while not accepts():
            time.sleep(0.02)
        print(line, flush=True)

    taken = accepts()
    thread = threading.Thread(target=wait, name="announce", daemon=True)
    if not taken:
        thread.start()
    return thread
