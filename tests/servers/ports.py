"""Free loopback ports for the servers tests start, and for "nothing listens here".

A port is free when it is picked; the server that gets it binds it a little later. Under
pytest-xdist (``make test``) each worker takes only its own share of the ports, so another
worker never picks one that a starting server is about to bind.
"""

from __future__ import annotations

import os
import socket


def worker_share() -> tuple[int, int]:
    """(this xdist worker's number, the number of workers); (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return (int(name[2:]) if name[2:].isdigit() else 0) % max(count, 1), max(count, 1)


def free_port() -> int:
    """A port free on 127.0.0.1 now, of this worker's share: (port // 2) % workers is the
    worker's number (not port % workers: the kernel hands out even ports first)."""
    worker, count = worker_share()
    for _ in range(100 * count):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port // 2 % count == worker:
            return port
    raise RuntimeError("no free port of this worker's share")
