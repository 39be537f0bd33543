"""The write path shared by every store method: role check, lock, audit row, version bump.

Every write is one transaction that (1) takes the control-plane write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR UPDATE`` on the ``meta`` row), (2) re-checks
the actor's role against the users table, (3) reads the stored value, (4) writes, (5) appends
an audit row (before -> after JSON) and (6) bumps ``meta.version``. A write that changes
nothing writes nothing. Values are validated before the transaction starts, so a rejected
write leaves the database untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core import clock
from core.errors import PermissionDenied

from . import _rows as rows
from . import _schema as s
from ._engine import control_url, make_engine, read_tx, write_tx
from ._migrations import migrate
from ._models import DEFAULT_SETTINGS, SYSTEM, Actor
from ._passwords import SCRYPT_N, check_cost
from ._redact import redact_webhooks
from ._throttle import Phantoms

T = TypeVar("T")
# A check of the stored value, run inside the write transaction before it changes anything
# (the REST API's If-Match): set with ``StoreBase.expect``; it raises to refuse the write.
Precondition = Callable[[Any], None]
_PRECONDITION: ContextVar[Precondition | None] = ContextVar("precondition", default=None)
ENGINEER = frozenset(
    {
        "budget",
        "routing_policy",
        "sampling_strategy",
        "cache_setting",
        "rate_limit",
        "model_score",
        "alert",
        "playground",
        "virtual_key",
    }
)
EVERYTHING = ENGINEER | {"price_override", "user", "setting", "api_token", "audit"}
PERMISSIONS: Mapping[str, frozenset[str]] = {
    "viewer": frozenset(),
    "engineer": ENGINEER,
    "admin": EVERYTHING,
    "system": EVERYTHING,
}


def can(role: str, entity: str) -> bool:
    """May ``role`` change ``entity`` (an entity name such as 'budget' or 'user')?"""
    return entity in PERMISSIONS.get(role, frozenset())


class StoreBase:
    """Engine, migrations and the generic read/write helpers of ``ControlPlane``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        model_exists: Callable[[str], bool] | None = None,
        auto_migrate: bool = True,
        now: Callable[[], datetime] | None = None,
        scrypt_n: int = SCRYPT_N,
    ):
        """``scrypt_n``: the cost of new password hashes. Lower it only in tests, here:
        nothing else (no setting, no environment variable) can."""
        self.url = control_url(url)
        self.scrypt_n = check_cost(scrypt_n)
        self.engine = make_engine(self.url)
        self.model_exists = model_exists
        self.now = now or clock.now
        self.login_phantoms = Phantoms()  # unknown usernames' sign-in failures
        if auto_migrate:
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    @contextmanager
    def expect(check: Precondition) -> Iterator[None]:
        """Writes in this block first call ``check(stored value or None)`` under the write
        lock; an exception from it aborts the write (compare-and-set)."""
        token = _PRECONDITION.set(check)
        try:
            yield
        finally:
            _PRECONDITION.reset(token)

    @staticmethod
    def _precondition(before: Any) -> None:
        check = _PRECONDITION.get()
        if check is not None:
            check(before)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ControlPlane({sa.make_url(self.url).render_as_string(hide_password=True)!r})"

    def version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(sa.select(s.meta.c.version).where(s.meta.c.id == 1)) or 0)

    def _all(self, ent: rows.Entity[T], conn: Connection | None = None) -> list[T]:
        if conn is None:
            with read_tx(self.engine) as c:
                return self._all(ent, c)
        stmt = sa.select(ent.table).order_by(*ent.table.primary_key.columns)
        return [ent.from_row(r) for r in conn.execute(stmt).mappings()]

    def _get(
        self, ent: rows.Entity[T], key: Mapping[str, Any], conn: Connection | None = None
    ) -> T | None:
        if conn is None:
            with self.engine.connect() as c:
                return self._get(ent, key, c)
        row = conn.execute(sa.select(ent.table).where(ent.where(key))).mappings().first()
        return None if row is None else ent.from_row(row)

    # ---- the write path --------------------------------------------------------------------

    def authorize(self, actor: Actor, entity: str) -> None:
        """Raise PermissionDenied unless ``actor`` may use ``entity`` (e.g. 'playground'), by
        the role stored for that user now, not the one the caller claims."""
        if not can(actor.role, entity):
            raise PermissionDenied(f"role {actor.role!r} may not use {entity}")
        with self.engine.connect() as conn:
            self._check_user(conn, actor, entity, "use")

    @staticmethod
    def _check_user(conn: Connection, actor: Actor, entity: str, verb: str) -> None:
        if actor == SYSTEM:
            return
        row = conn.execute(
            sa.select(s.users.c.role, s.users.c.disabled).where(
                s.users.c.username == actor.username
            )
        ).first()
        if row is None or row.disabled or not can(row.role, entity):
            role = "unknown or disabled user" if row is None or row.disabled else row.role
            raise PermissionDenied(f"{actor.username!r} ({role}) may not {verb} {entity}")

    @contextmanager
    def _tx(self, actor: Actor, entity: str) -> Iterator[Connection]:
        """A write transaction for ``actor`` on ``entity``, holding the write lock."""
        if not can(actor.role, entity):
            raise PermissionDenied(f"role {actor.role!r} may not change {entity}")
        with write_tx(self.engine) as conn:
            conn.execute(sa.select(s.meta.c.version).where(s.meta.c.id == 1).with_for_update())
            self._check_user(conn, actor, entity, "change")
            yield conn

    def _audit(
        self,
        conn: Connection,
        actor: Actor,
        action: str,
        entity: str,
        entity_id: str,
        before: Any,
        after: Any,
        *,
        bump: bool = True,
    ) -> None:
        conn.execute(
            s.audit_log.insert().values(
                ts=self.now(),
                actor=actor.username,
                action=action,
                entity=entity,
                entity_id=entity_id,
                # webhook URLs hold secrets: the audit keeps only scheme, host and a digest
                before_json=None
                if before is None
                else rows.dumps(redact_webhooks(rows.plain(before))),
                after_json=None
                if after is None
                else rows.dumps(redact_webhooks(rows.plain(after))),
            )
        )
        if bump:
            conn.execute(
                s.meta.update().where(s.meta.c.id == 1).values(version=s.meta.c.version + 1)
            )

    def _upsert(
        self,
        ent: rows.Entity[T],
        value: T,
        actor: Actor,
        prepare: Callable[[Connection, T | None, T], T] | None = None,
    ) -> T:
        key = ent.key(value)
        with self._tx(actor, ent.name) as conn:
            before = self._get(ent, key, conn)
            self._precondition(before)
            if prepare is not None:
                value = prepare(conn, before, value)
            data = ent.to_row(value)
            stored = ent.from_row(data)
            if before == stored:
                return stored
            if before is None:
                conn.execute(ent.table.insert().values(data))
            else:
                conn.execute(ent.table.update().where(ent.where(key)).values(data))
            action = f"{ent.name}.{'create' if before is None else 'update'}"
            self._audit(conn, actor, action, ent.name, ent.key_id(key), before, stored)
        return stored

    def _delete(self, ent: rows.Entity[T], key: Mapping[str, Any], actor: Actor) -> bool:
        with self._tx(actor, ent.name) as conn:
            before = self._get(ent, key, conn)
            self._precondition(before)
            if before is None:
                return False
            conn.execute(ent.table.delete().where(ent.where(key)))
            self._audit(conn, actor, f"{ent.name}.delete", ent.name, ent.key_id(key), before, None)
        return True

    def _setting(self, conn: Connection, key: str) -> Any:
        text = conn.scalar(sa.select(s.settings.c.value_json).where(s.settings.c.key == key))
        return DEFAULT_SETTINGS.get(key) if text is None else json.loads(text)
