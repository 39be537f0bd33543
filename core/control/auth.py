"""Console users: scrypt password hashes, sign-in with lock-out, the first admin.

Hashes look like ``scrypt$16384$8$1$<salt b64>$<key b64>`` (parameters travel with the hash,
so they can be raised later). Sign-in never says whether a user exists: unknown users cost
the same scrypt work and get the same answers (their lock-out is counted in memory).
After ``MAX_FAILURES`` consecutive failures an account is locked for 30 s, doubling with every
further failure up to one hour; while locked the password is not even checked.
There is no default password: ``ensure_admin`` creates ``admin`` once, with the password from
``COSTLINE_ADMIN_PASSWORD`` or a random one that it returns for the caller to print.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.errors import ConfigError, PermissionDenied

from . import _schema as s
from . import _validate as v
from ._engine import write_tx
from ._models import SYSTEM, Actor, User
from ._rows import user_from_row

if TYPE_CHECKING:
    from ._store import ControlPlane

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_LEN = 2**14, 8, 1, 32
MAX_FAILURES = 5
FIRST_LOCK_S, MAX_LOCK_S = 30, 3600
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_LEN
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algo, n, r, p, salt, key = encoded.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def lock_delay(failures: int) -> timedelta:
    """How long the account stays locked after ``failures`` consecutive failures."""
    if failures < MAX_FAILURES:
        return timedelta(0)
    return timedelta(seconds=min(FIRST_LOCK_S * 2 ** (failures - MAX_FAILURES), MAX_LOCK_S))


def authenticate(plane: ControlPlane, username: str, password: str) -> Actor:
    """The signed-in Actor, or LoginFailed / AccountLocked (never 'no such user')."""
    now = plane.now()
    with plane.engine.connect() as conn:
        row = (
            conn.execute(sa.select(s.users).where(s.users.c.username == username))
            .mappings()
            .first()
        )
    if row is None:
        return _phantom(plane, username, password, now)
    if row["locked_until"] is not None and row["locked_until"] > now:
        raise AccountLocked(row["locked_until"])
    ok = verify_password(password, row["password_hash"]) and not row["disabled"]
    users = s.users
    until = None
    with write_tx(plane.engine) as wconn:  # commit the count, then raise
        if ok:
            wconn.execute(
                users.update()
                .where(users.c.username == username)
                .values(failed_attempts=0, locked_until=None)
            )
            return Actor(username, row["role"])
        failures = (
            wconn.scalar(
                users.update()
                .where(users.c.username == username)
                .values(failed_attempts=users.c.failed_attempts + 1)
                .returning(users.c.failed_attempts)
            )
            or 0
        )
        if failures >= MAX_FAILURES:
            until = now + lock_delay(failures)
            wconn.execute(
                users.update().where(users.c.username == username).values(locked_until=until)
            )
            plane._audit(
                wconn,
                SYSTEM,
                "user.locked",
                "user",
                username,
                None,
                {"failed_attempts": failures, "locked_until": until},
                bump=False,
            )
    if until is None:
        raise LoginFailed()
    raise AccountLocked(until)


def _phantom(plane: ControlPlane, username: str, password: str, now: datetime) -> Actor:
    """Unknown user: same work, same answers as a real one, counted in this process only."""
    failures, until = plane.login_phantoms.get(username, (0, None))
    if until is not None and until > now:
        raise AccountLocked(until)
    verify_password(password, _dummy_hash())
    failures += 1
    until = now + lock_delay(failures) if failures >= MAX_FAILURES else None
    if len(plane.login_phantoms) > 10_000:
        plane.login_phantoms.clear()
    plane.login_phantoms[username] = (failures, until)
    if until is not None:
        raise AccountLocked(until)
    raise LoginFailed()


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


def create_user(plane: ControlPlane, username: str, password: str, role: str, actor: Actor) -> User:
    username = v.validate_username(username)
    role = v.validate_role(role)
    hashed = hash_password(v.validate_password(password))  # slow part outside the lock
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
            )
        )
        plane._audit(conn, actor, "user.create", "user", username, None, user)
    return user


def set_password(plane: ControlPlane, username: str, password: str, actor: Actor) -> None:
    """New password; also clears failures and any lock. The audit row says only 'changed'."""
    hashed = hash_password(v.validate_password(password))
    with plane._tx(actor, "user") as conn:
        _user(conn, username)
        conn.execute(
            s.users.update()
            .where(s.users.c.username == username)
            .values(password_hash=hashed, failed_attempts=0, locked_until=None)
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
        create_user(plane, ADMIN, password, ADMIN, SYSTEM)
    except ConfigError as exc:
        if exc.field == "username":
            return None  # another process created it first, or 'admin' exists with a lower role
        raise
    return password if generated else None
