"""One leader at a time across hosts (bucket compaction, imports): a PostgreSQL advisory lock
when the control plane is on PostgreSQL, else a Redis key (SET NX PX, released only by its
holder), else a local file lock (one host).

    with leader_lock("costline.compact:s3://b/p", home) as leading:
        if leading: ...
    with fleet_lock("costline.import:s3://b/p", home, wait_s=600, what="an import"):
        ...  # waits for the lock; UsageLogUnavailable after wait_s
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.private import private_dir, private_open
from core.usage._segments import events_dir

log = logging.getLogger("costline.usage")

REDIS_LOCK_TTL_MS = 15 * 60 * 1000  # a leader that dies frees the lock after this long
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_id(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def _backend() -> str:
    url = os.environ.get("COSTLINE_CONTROL_URL", "")
    if url.startswith(("postgres://", "postgresql")):
        return "postgres"
    return "redis" if os.environ.get("REDIS_URL") else "file"


@contextlib.contextmanager
def leader_lock(name: str, home: Path | None = None) -> Iterator[bool]:
    """Try to become the leader for ``name`` (never waits); yields whether this process leads."""
    backend = _backend()
    if backend == "postgres":
        with _pg_lock(name) as got:
            yield got
    elif backend == "redis":
        with _redis_lock(name) as got:
            yield got
    else:
        with _file_lock(home) as got:
            yield got


@contextlib.contextmanager
def fleet_lock(name: str, home: Path | None, wait_s: float, what: str) -> Iterator[None]:
    """Hold ``name``'s lock (as ``leader_lock`` takes it: every host sharing the control
    plane, else Redis) for the block, waiting up to ``wait_s`` for it; then
    ``UsageLogUnavailable`` naming ``what`` waited. With neither PostgreSQL nor Redis, a
    file lock in ``home`` (that host's processes)."""
    from core.errors import UsageLogUnavailable

    deadline = time.monotonic() + wait_s
    delay = 0.02
    while True:
        if _backend() == "file":
            with _file_lock(home, f"{lock_id(name) & 0xFFFFFFFF:08x}.lock", wait=True):
                yield
            return
        with leader_lock(name, home) as got:
            if got:
                yield
                return
        left = deadline - time.monotonic()
        if left <= 0:
            raise UsageLogUnavailable(
                f"{what} waited {wait_s:.0f} s for the fleet's lock {name!r} (held by another"
                " host's or process's run of the same kind); nothing was done, try again"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.5)


@contextlib.contextmanager
def _pg_lock(name: str) -> Iterator[bool]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from core.control import control_url

    engine = create_engine(control_url(), poolclass=NullPool)
    try:
        with engine.connect() as conn:  # the lock lives as long as this session
            key = lock_id(name)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.rollback()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _redis_lock(name: str) -> Iterator[bool]:
    from core.state import redis_client

    client: Any = redis_client(os.environ["REDIS_URL"])
    key, token = f"costline:leader:{{{name}}}", secrets.token_hex(8)
    try:
        got = bool(client.set(key, token, nx=True, px=REDIS_LOCK_TTL_MS))
        try:
            yield got
        finally:
            if got:
                with contextlib.suppress(Exception):  # it expires anyway
                    client.eval(_RELEASE, 1, key, token)
    finally:
        client.close()


@contextlib.contextmanager
def _file_lock(
    home: Path | None, name: str = "bucket-compact.lock", *, wait: bool = False
) -> Iterator[bool]:
    path = events_dir(home) / name
    private_dir(path.parent)
    fd = private_open(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
