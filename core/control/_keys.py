"""Virtual keys of the gateway: stored as a keyed hash with a shown prefix, never the secret.

A key speaks for an optional org/project/user and may be limited to some models; its budgets
and rate limits are ordinary rows with scope ``key`` (see ``core/keys.py``, which issues the
secret). Creating and revoking are audited writes (engineer or admin) that bump the version,
so running gateways see a revocation at their next version poll.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.errors import ConfigError

from . import _rows as rows
from . import _schema as s
from . import _validate as v
from ._base import StoreBase
from ._models import Actor

HASH_HEX = 64  # HMAC-SHA256, hex


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One gateway key. ``models`` empty means every model; times are aware UTC."""

    name: str
    prefix: str
    key_hash: str
    org: str | None = None
    project: str | None = None
    user: str | None = None
    models: tuple[str, ...] = ()
    created_at: datetime | None = None
    created_by: str = ""
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def status(self, now: datetime) -> str:
        """'active', 'revoked' or 'expired' at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


def validate_key(k: VirtualKey, *, model_exists: Callable[[str], bool] | None = None) -> VirtualKey:
    """The stored form of ``k`` or a ConfigError naming the field."""
    name = v.check_name("name", k.name)
    if len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
        raise v.fail("name", "use at most 64 letters, digits and - _ . @", k.name)
    if not isinstance(k.key_hash, str) or len(k.key_hash) != HASH_HEX:
        raise v.fail("key_hash", f"must be {HASH_HEX} hex characters", "(hidden)")
    models = tuple(dict.fromkeys(v.check_model("models", m, model_exists) for m in k.models))
    if k.expires_at is not None and k.expires_at.tzinfo is None:
        raise v.fail("expires_at", "must be timezone-aware", k.expires_at)
    return replace(
        k,
        name=name,
        models=models,
        org=_optional("org", k.org),
        project=_optional("project", k.project),
        user=_optional("user", k.user),
    )


def _optional(field: str, value: str | None) -> str | None:
    return None if value in (None, "") else v.check_name(field, value)


def key_row(k: VirtualKey) -> dict[str, Any]:
    return {
        "name": k.name,
        "prefix": k.prefix,
        "key_hash": k.key_hash,
        "org": k.org,
        "project": k.project,
        "user": k.user,
        "models_json": json.dumps(list(k.models)),
        "created_at": k.created_at,
        "created_by": k.created_by,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
        "revoked_by": k.revoked_by,
    }


def key_from_row(r: rows.Row) -> VirtualKey:
    return VirtualKey(
        name=r["name"],
        prefix=r["prefix"],
        key_hash=r["key_hash"],
        org=r["org"],
        project=r["project"],
        user=r["user"],
        models=tuple(json.loads(r["models_json"])),
        created_at=r["created_at"],
        created_by=r["created_by"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        revoked_by=r["revoked_by"],
    )


def audit_view(k: VirtualKey | None) -> dict[str, Any] | None:
    """What the audit log records of a key: everything but its hash."""
    if k is None:
        return None
    out: dict[str, Any] = rows.plain(k)
    out.pop("key_hash", None)
    return out


class KeyStore(StoreBase):
    """Virtual-key reads and the two writes (create, revoke)."""

    def virtual_keys(self, conn: Connection | None = None) -> list[VirtualKey]:
        if conn is None:
            with self.engine.connect() as c:
                return self.virtual_keys(c)
        stmt = sa.select(s.virtual_keys).order_by(s.virtual_keys.c.name)
        return [key_from_row(r) for r in conn.execute(stmt).mappings()]

    def virtual_key(self, name: str) -> VirtualKey | None:
        with self.engine.connect() as conn:
            stmt = sa.select(s.virtual_keys).where(s.virtual_keys.c.name == name)
            row = conn.execute(stmt).mappings().first()
        return None if row is None else key_from_row(row)

    def create_virtual_key(self, key: VirtualKey, actor: Actor) -> VirtualKey:
        """Store a new key (its name is never reused, even after revocation)."""
        key = validate_key(key, model_exists=self.model_exists)
        key = replace(key, created_at=key.created_at or self.now(), created_by=actor.username)
        with self._tx(actor, "virtual_key") as conn:
            table = s.virtual_keys
            got = conn.execute(sa.select(table.c.name).where(table.c.name == key.name)).first()
            if got is not None:
                raise ConfigError(
                    f"name: a key named {key.name!r} exists (names are never reused)",
                    field="name",
                )
            conn.execute(table.insert().values(key_row(key)))
            self._audit(
                conn, actor, "virtual_key.create", "virtual_key", key.name, None, audit_view(key)
            )
        return key

    def revoke_virtual_key(self, name: str, actor: Actor) -> VirtualKey:
        """Revoke now; revoking a revoked key changes nothing."""
        with self._tx(actor, "virtual_key") as conn:
            table = s.virtual_keys
            row = conn.execute(sa.select(table).where(table.c.name == name)).mappings().first()
            if row is None:
                raise ConfigError(f"name: no key named {name!r}", field="name")
            before = key_from_row(row)
            if before.revoked_at is not None:
                return before
            after = replace(before, revoked_at=self.now(), revoked_by=actor.username)
            conn.execute(
                table.update()
                .where(table.c.name == name)
                .values(revoked_at=after.revoked_at, revoked_by=after.revoked_by)
            )
            self._audit(
                conn,
                actor,
                "virtual_key.revoke",
                "virtual_key",
                name,
                audit_view(before),
                audit_view(after),
            )
        return after
