"""Who wrote a journal: host, pid, process start time and a random token, packed in a file name.

The start time (clock ticks since boot, from /proc) guards against pid reuse: a journal whose
pid is alive but belongs to a process started at another time was left by a dead process.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:48] or "host"


HOST = _host()


def process_start(pid: int) -> int:
    """Start time of ``pid`` in clock ticks since boot, or 0 where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0
    # Field 22; the command name (field 2) may hold spaces, so split after its closing ')'.
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return 0


@dataclass(frozen=True, slots=True)
class ProcId:
    host: str
    pid: int
    start: int
    token: str

    @classmethod
    def current(cls) -> ProcId:
        pid = os.getpid()
        return cls(HOST, pid, process_start(pid), secrets.token_hex(4))

    @classmethod
    def parse(cls, text: str) -> ProcId | None:
        parts = text.rsplit("_", 3)
        if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]), parts[3])

    def __str__(self) -> str:
        return f"{self.host}_{self.pid}_{self.start}_{self.token}"

    def alive_here(self) -> bool:
        """True if this process (same host) still runs; pid reuse is caught by the start time."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by another user
        if self.start:
            now = process_start(self.pid)
            return now in (0, self.start)
        return True
