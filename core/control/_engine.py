"""Engine: SQLite (WAL, busy timeout) by default, PostgreSQL when COSTLINE_CONTROL_URL says so.

Precedence of the database URL, highest first:

    | source                            | example                                          |
    |-----------------------------------|--------------------------------------------------|
    | ControlPlane(url=...)             | "sqlite:////srv/costline/control.db"             |
    | COSTLINE_CONTROL_URL              | "postgresql+psycopg://costline@db:5432/costline" |
    | default                           | sqlite at $COSTLINE_HOME/control.db              |

SQLite notes: the stdlib driver's own transaction handling is switched off so that write
transactions start with ``BEGIN IMMEDIATE`` (take the write lock first, wait up to the busy
timeout) and reads with a plain ``BEGIN``; WAL lets the console read while routers write.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from core.errors import ConfigError
from core.private import create_private, private_dir
from core.settings import costline_home

BUSY_TIMEOUT_MS = 15_000
WRITE = "costline_write"  # connection execution option: start with BEGIN IMMEDIATE on SQLite


def control_url(url: str | None = None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    url = url or env.get("COSTLINE_CONTROL_URL") or ""
    if not url:
        return f"sqlite:///{costline_home(env) / 'control.db'}"
    for bare in ("postgres://", "postgresql://"):  # psycopg 3 is the driver we ship
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def check_control_url(url: str | None = None) -> sa.URL:
    """The control plane's URL, parsed; a ConfigError naming ``COSTLINE_CONTROL_URL`` (or the
    URL given) when it is not a database URL, or names a database or driver SQLAlchemy
    cannot load here (``foo://``, ``mysql://`` without its driver installed)."""
    problem = "is not a database URL"
    try:
        parsed = sa.make_url(control_url(url))
        problem = "names no database SQLAlchemy knows"
        dialect = parsed.get_dialect()
        problem = "needs a database driver that is not installed"
        dialect.import_dbapi()  # the driver create_engine would import
        return parsed
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError):
        env = url is None or url == os.environ.get("COSTLINE_CONTROL_URL")
        where = "COSTLINE_CONTROL_URL" if env else "control-plane URL"
        raise ConfigError(
            f"{where} {_redact(control_url(url))!r} {problem}: use one such as "
            "'postgresql+psycopg://user:password@host:5432/costline' (or none: SQLite)",
            field="COSTLINE_CONTROL_URL" if env else "url",
        ) from None


def _redact(url: str) -> str:
    """``url`` with any credentials before an '@' cut out."""
    head, at, tail = url.rpartition("@")
    return f"{head.partition('//')[0]}//…@{tail}" if at else url


def make_engine(url: str | None = None) -> Engine:
    parsed = check_control_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    kw: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000}}
    memory = parsed.database in (None, "", ":memory:")
    if memory:
        kw.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _private_db(Path(parsed.database or ""))
    engine = sa.create_engine(parsed, **kw)
    sa.event.listen(engine, "connect", _sqlite_connect)
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _private_db(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask); SQLite
    gives its -wal and -shm files the database file's mode. An existing file is never
    opened here: closing that descriptor would drop the locks of this process's open
    connections (see ``create_private``)."""
    private_dir(path.parent)
    create_private(path)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _wal(cur)
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _wal(cur: sqlite3.Cursor) -> None:
    """Switch the file to WAL (it stays so). While another process opens or converts a new
    database, SQLite may answer "database is locked" at once, without its busy handler:
    retry that, with jitter, for up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction; SQLite takes the write lock up front so reads never upgrade."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """One consistent read: a single snapshot for all statements (REPEATABLE READ on PG)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
