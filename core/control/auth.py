"""Console users: scrypt password hashes, sign-in with throttling, the first admin.

Hashes (``_passwords.py``) carry their scrypt parameters; a hash made at a lower cost than
the plane's (``ControlPlane(scrypt_n=...)``, OWASP's 2^17 by default) is re-hashed on the
next successful sign-in. Sign-in never says whether a user exists: unknown users cost the
same scrypt work and get the same answers. Failed attempts are counted atomically before
the password is checked, per client and per account (``_throttle.py``); while locked the
password is not even checked. ``unlock_user`` (``costline users unlock NAME``) clears both.
There is no default password: ``ensure_admin`` creates ``admin`` once, with the password
from ``COSTLINE_ADMIN_PASSWORD`` or a random one that it returns for the caller to print;
a generated one must be changed at the first sign-in (``must_change_password``).
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.errors import ConfigError, PermissionDenied

from . import _schema as s
from . import _throttle as th
from . import _validate as v
from ._engine import write_tx
from ._models import SYSTEM, Actor, User
from ._passwords import SCRYPT_N, hash_password, needs_rehash, verify_password
from ._rows import user_from_row
from ._throttle import MAX_FAILURES, lock_delay

if TYPE_CHECKING:
    from ._store import ControlPlane

__all__ = [
    "ADMIN",
    "MAX_FAILURES",
    "SCRYPT_N",
    "AccountLocked",
    "LoginFailed",
    "authenticate",
    "change_own_password",
    "ensure_admin",
    "hash_password",
    "lock_delay",
    "must_change_password",
    "unlock_user",
    "verify_password",
]
ADMIN = "admin"


class LoginFailed(PermissionDenied):
    """Wrong username or password (deliberately the same message for both)."""

    def __init__(self, message: str = "invalid username or password") -> None:
        super().__init__(message)


class AccountLocked(LoginFailed):
    """Too many failed sign-ins; try again after ``locked_until`` (UTC)."""

    def __init__(self, locked_until: datetime) -> None:
        when = locked_until.strftime("%Y-%m-%d %H:%M:%S")
        super().__init__(f"too many failed sign-ins: try again after {when} UTC")
        self.locked_until = locked_until


@cache
def _dummy_hash(n: int) -> str:
    return hash_password(secrets.token_hex(16), n)


def authenticate(
    plane: ControlPlane, username: str, password: str, client: str | None = None
) -> Actor:
    """The signed-in Actor, or LoginFailed / AccountLocked (never 'no such user').
    ``client`` names who is asking (the console passes the browser's address): failures
    are throttled per client and username, and per username over all clients."""
    now, client = plane.now(), th.client_key(client)
    with plane.engine.connect() as conn:
        row = (
            conn.execute(sa.select(s.users).where(s.users.c.username == username))
            .mappings()
            .first()
        )
    try:
        if row is None:
            until = plane.login_phantoms.charge(client, username, now)
            verify_password(password, _dummy_hash(plane.scrypt_n))
            _refuse(until)
        if row["locked_until"] is not None and row["locked_until"] > now:
            raise th.Locked(row["locked_until"])
        client_until = th.charge_client(plane.engine, client, username, now)
        account_until = th.charge_account(plane.engine, username, now)
    except th.Locked as exc:
        raise AccountLocked(exc.until) from None
    ok = verify_password(password, row["password_hash"]) and not row["disabled"]
    if ok:
        th.clear(plane.engine, client, username)
        _rehash(plane, username, password, row["password_hash"])
        return Actor(username, row["role"])
    locks = [u for u in (client_until, account_until) if u is not None]
    if locks:
        with write_tx(plane.engine) as conn:
            failures = conn.scalar(
                sa.select(s.users.c.failed_attempts).where(s.users.c.username == username)
            )
            details = {"client": client, "failed_attempts": failures, "locked_until": max(locks)}
            if account_until is not None:
                details["account_locked_until"] = account_until
            plane._audit(conn, SYSTEM, "user.locked", "user", username, None, details, bump=False)
    _refuse(max(locks, default=None))


def _refuse(until: datetime | None) -> NoReturn:
    if until is None:
        raise LoginFailed()
    raise AccountLocked(until)


def _rehash(plane: ControlPlane, username: str, password: str, stored: str) -> None:
    """A hash made at a lower cost than the plane's: replace it (unless it changed)."""
    if not needs_rehash(stored, plane.scrypt_n):
        return
    fresh = hash_password(password, plane.scrypt_n)
    u = s.users
    with write_tx(plane.engine) as conn:
        conn.execute(
            u.update()
            .where(u.c.username == username, u.c.password_hash == stored)
            .values(password_hash=fresh)
        )


def unlock_user(plane: ControlPlane, username: str, actor: Actor) -> User:
    """Clear every failure count and lock of ``username`` (all clients); audited."""
    with plane._tx(actor, "user") as conn:
        before = _user(conn, username)
        t = s.login_throttle
        locks = conn.execute(
            sa.select(t.c.client, t.c.failures, t.c.locked_until).where(t.c.username == username)
        ).all()
        conn.execute(t.delete().where(t.c.username == username))
        conn.execute(
            s.users.update()
            .where(s.users.c.username == username)
            .values(failed_attempts=0, locked_until=None)
        )
        after = _user(conn, username)
        details = {
            "failed_attempts": before.failed_attempts,
            "locked_until": before.locked_until,
            "clients": [
                {"client": c, "failures": f, "locked_until": until} for c, f, until in locks
            ],
        }
        plane._audit(conn, actor, "user.unlock", "user", username, details, after, bump=False)
    plane.login_phantoms.forget(username)
    return after


def must_change_password(plane: ControlPlane, username: str) -> bool:
    """Must this user choose a new password before using the console?"""
    with plane.engine.connect() as conn:
        flag = conn.scalar(
            sa.select(s.users.c.must_change_password).where(s.users.c.username == username)
        )
    return bool(flag)


def change_own_password(
    plane: ControlPlane, username: str, current: str, new: str, client: str | None = None
) -> None:
    """A signed-in user's own change: the current password is checked (and throttled like
    a sign-in), the new one must differ; clears ``must_change_password``; audited."""
    new = v.validate_password(new)
    if new == current:
        raise ConfigError(
            "password: choose a password different from the current one", field="password"
        )
    actor = authenticate(plane, username, current, client)
    hashed = hash_password(new, plane.scrypt_n)
    with write_tx(plane.engine) as conn:
        conn.execute(
            s.users.update()
            .where(s.users.c.username == username)
            .values(password_hash=hashed, must_change_password=False)
        )
        plane._audit(
            conn, actor, "user.change_password", "user", username, None, {"password": "changed"}
        )


def _user(conn: Connection, username: str) -> User:
    row = conn.execute(sa.select(s.users).where(s.users.c.username == username)).mappings().first()
    if row is None:
        raise ConfigError(f"username: no user {username!r}", field="username")
    return user_from_row(row)


def _other_admins(conn: Connection, username: str) -> int:
    return int(
        conn.scalar(
            sa.select(sa.func.count())
            .select_from(s.users)
            .where(
                s.users.c.role == ADMIN,
                s.users.c.disabled.is_(False),
                s.users.c.username != username,
            )
        )
        or 0
    )


def create_user(
    plane: ControlPlane,
    username: str,
    password: str,
    role: str,
    actor: Actor,
    *,
    must_change: bool = False,
) -> User:
    username = v.validate_username(username)
    role = v.validate_role(role)
    hashed = hash_password(v.validate_password(password), plane.scrypt_n)  # outside the lock
    with plane._tx(actor, "user") as conn:
        if conn.scalar(sa.select(s.users.c.username).where(s.users.c.username == username)):
            raise ConfigError(f"username: {username!r} already exists", field="username")
        user = User(username=username, role=role, created_at=plane.now())
        conn.execute(
            s.users.insert().values(
                username=username,
                password_hash=hashed,
                role=role,
                failed_attempts=0,
                locked_until=None,
                created_at=user.created_at,
                disabled=False,
                must_change_password=must_change,
            )
        )
        plane._audit(conn, actor, "user.create", "user", username, None, user)
    return user


def set_password(plane: ControlPlane, username: str, password: str, actor: Actor) -> None:
    """New password; also clears failures, every lock and the must-change flag. The audit
    row says only 'changed'."""
    hashed = hash_password(v.validate_password(password), plane.scrypt_n)
    with plane._tx(actor, "user") as conn:
        _user(conn, username)
        conn.execute(s.login_throttle.delete().where(s.login_throttle.c.username == username))
        conn.execute(
            s.users.update()
            .where(s.users.c.username == username)
            .values(
                password_hash=hashed,
                failed_attempts=0,
                locked_until=None,
                must_change_password=False,
            )
        )
        plane._audit(
            conn, actor, "user.set_password", "user", username, None, {"password": "changed"}
        )


def _change(
    plane: ControlPlane, username: str, actor: Actor, action: str, **values: object
) -> User:
    with plane._tx(actor, "user") as conn:
        before = _user(conn, username)
        demoted = values.get("role", before.role) != ADMIN or values.get("disabled", False)
        if (
            before.role == ADMIN
            and not before.disabled
            and demoted
            and not _other_admins(conn, username)
        ):
            raise ConfigError(
                "role: the last enabled admin cannot be demoted or disabled", field="role"
            )
        conn.execute(s.users.update().where(s.users.c.username == username).values(**values))
        after = _user(conn, username)
        if after != before:
            plane._audit(conn, actor, action, "user", username, before, after)
    return after


def set_role(plane: ControlPlane, username: str, role: str, actor: Actor) -> User:
    return _change(plane, username, actor, "user.set_role", role=v.validate_role(role))


def disable_user(plane: ControlPlane, username: str, actor: Actor, disabled: bool = True) -> User:
    return _change(
        plane, username, actor, "user.disable" if disabled else "user.enable", disabled=disabled
    )


def ensure_admin(plane: ControlPlane, password_env: str = "COSTLINE_ADMIN_PASSWORD") -> str | None:
    """Create ``admin`` on first start (no admin yet). Returns the generated one-time password
    when the environment gave none; None when it used the env password or did nothing."""
    with plane.engine.connect() as conn:
        if conn.scalar(sa.select(s.users.c.username).where(s.users.c.role == ADMIN).limit(1)):
            return None
    password = os.environ.get(password_env) or ""
    generated = not password
    if generated:
        password = secrets.token_urlsafe(18)
    elif len(password) < 8:
        raise ConfigError(
            f"{password_env}: the admin password must be at least 8 characters", field=password_env
        )
    try:
        create_user(plane, ADMIN, password, ADMIN, SYSTEM, must_change=generated)
    except ConfigError as exc:
        if exc.field == "username":
            return None  # another process created it first, or 'admin' exists with a lower role
        raise
    return password if generated else None
