"""Say where a server listens only once it does.

``costline gateway`` and ``costline api`` print a line with their URL; a script waits for
that line, then connects. Printed before uvicorn started, the line could come before the
socket listened (uvicorn runs the app's startup first) and the script's connection was
refused. ``run`` prints it once uvicorn's server has started; ``announce_when_listening``
is for uvicorn's worker processes, which only the workers know about: it prints once a
connection succeeds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

__all__ = ["announce_when_listening", "probe_host", "run"]

STARTUP_FAILURE = 3  # uvicorn's exit status when the server did not start


def run(app: Any, line: str, **kwargs: Any) -> int:
    """``uvicorn.run(app, **kwargs)`` (one process), printing ``line`` (if any) once the
    socket listens; 0 once served, uvicorn's STARTUP_FAILURE if it never started."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and line:
                print(line, flush=True)

    server = Server(uvicorn.Config(app, **kwargs))
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
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
