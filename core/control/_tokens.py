"""API tokens: bearer secrets that act as one console user (see docs/api.md, "Tokens").

A token looks like ``clt_<43 url-safe characters>``. Only ``HMAC-SHA256(pepper, token)`` is
stored, under a unique index, so finding a token's user is one index probe and a stolen
database does not yield usable tokens (the pepper is not in it). The pepper comes from
``COSTLINE_TOKEN_PEPPER`` (set the same value on every host of a fleet), else from
``$COSTLINE_HOME/token_pepper``, created once with 32 random bytes (mode 0600).

Every call re-reads the user's row: a disabled user's tokens stop working at once, and the
role used is the one stored now. Creating and revoking tokens is an admin action, audited.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from core.errors import ConfigError, PermissionDenied
from core.private import private_dir
from core.settings import costline_home

from . import _rows as rows
from . import _schema as s
from . import _validate as v
from ._base import StoreBase
from ._engine import write_tx
from ._models import Actor, ApiToken

TOKEN_PREFIX = "clt_"
PEPPER_ENV = "COSTLINE_TOKEN_PEPPER"
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per token


@cache
def _file_pepper(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
        fh.flush()
        os.fsync(fh.fileno())
    return path.read_bytes()


def pepper() -> bytes:
    env = os.environ.get(PEPPER_ENV)
    if env:
        return env.encode()
    return _file_pepper(costline_home() / "token_pepper")


def token_hash(token: str) -> str:
    return hmac.new(pepper(), token.encode(), hashlib.sha256).hexdigest()


class TokenStore(StoreBase):
    """Create, list, revoke and resolve API tokens."""

    def api_tokens(self, username: str | None = None) -> list[ApiToken]:
        stmt = sa.select(s.api_tokens).order_by(s.api_tokens.c.created_at, s.api_tokens.c.id)
        if username is not None:
            stmt = stmt.where(s.api_tokens.c.username == username)
        with self.engine.connect() as conn:
            return [rows.token_from_row(r) for r in conn.execute(stmt).mappings()]

    def create_api_token(
        self,
        username: str,
        actor: Actor,
        *,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> tuple[str, ApiToken]:
        """A new token for ``username`` (an admin action). Returns (secret, record): the
        secret is not stored and cannot be shown again."""
        name = (name or "api").strip()
        if len(name) > 100:
            raise ConfigError("name: at most 100 characters", field="name")
        if expires_at is not None and expires_at <= self.now():
            raise ConfigError("expires_at: must be in the future", field="expires_at")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            id=secrets.token_hex(8),
            username=username,
            name=name,
            prefix=secret[:10],
            created_at=self.now(),
            created_by=actor.username,
            expires_at=expires_at,
        )
        with self._tx(actor, "api_token") as conn:
            user = conn.execute(
                sa.select(s.users.c.disabled).where(s.users.c.username == username)
            ).first()
            if user is None:
                raise ConfigError(f"user: no user {username!r}", field="user")
            if user.disabled:
                raise ConfigError(f"user: {username!r} is disabled", field="user")
            conn.execute(
                s.api_tokens.insert().values(
                    id=token.id,
                    username=username,
                    name=name,
                    token_hash=token_hash(secret),
                    prefix=token.prefix,
                    created_at=token.created_at,
                    created_by=actor.username,
                    expires_at=expires_at,
                )
            )
            self._audit(conn, actor, "api_token.create", "api_token", token.id, None, token)
        return secret, token

    def revoke_api_token(self, token_id: str, actor: Actor) -> bool:
        """Revoke a token (admin); False when it does not exist or was already revoked."""
        v.check_name("id", token_id)
        with self._tx(actor, "api_token") as conn:
            row = (
                conn.execute(sa.select(s.api_tokens).where(s.api_tokens.c.id == token_id))
                .mappings()
                .first()
            )
            if row is None or row["revoked_at"] is not None:
                return False
            before = rows.token_from_row(row)
            now = self.now()
            conn.execute(
                s.api_tokens.update()
                .where(s.api_tokens.c.id == token_id)
                .values(revoked_at=now, revoked_by=actor.username)
            )
            after = rows.token_from_row({**row, "revoked_at": now, "revoked_by": actor.username})
            self._audit(conn, actor, "api_token.revoke", "api_token", token_id, before, after)
        return True

    def token_actor(self, secret: str) -> Actor:
        """The user a token acts for, with the role stored now; PermissionDenied when the
        token is unknown, revoked, expired, or its user is disabled or gone."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise PermissionDenied("invalid API token")
        t, u = s.api_tokens, s.users
        stmt = (
            sa.select(t.c.id, t.c.expires_at, t.c.revoked_at, t.c.last_used_at, u.c.username)
            .add_columns(u.c.role, u.c.disabled)
            .join(u, u.c.username == t.c.username)
            .where(t.c.token_hash == token_hash(secret))
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        now = self.now()
        if row is None or row.revoked_at is not None:
            raise PermissionDenied("invalid or revoked API token")
        if row.expires_at is not None and row.expires_at <= now:
            raise PermissionDenied("API token expired")
        if row.disabled:
            raise PermissionDenied(f"user {row.username!r} is disabled")
        if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
            with write_tx(self.engine) as wconn:  # not audited, no version bump: bookkeeping
                wconn.execute(t.update().where(t.c.id == row.id).values(last_used_at=now))
        return Actor(row.username, row.role)
