"""The Admin page's tables: users and the audit log."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from console.frames.display import header
from core.control import ApiToken, AuditEntry, User


def users_frame(users: Sequence[User]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "username": u.username,
                "role": u.role,
                "disabled": u.disabled,
                "failed sign-ins": u.failed_attempts,
                "locked until": u.locked_until,
                "created": u.created_at,
            }
            for u in users
        ]
    )


def audit_frame(entries: Sequence[AuditEntry]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "time": e.ts,
                "actor": e.actor,
                "action": e.action,
                "what": f"{e.entity.replace('_', ' ')} {e.entity_id}",
                "changes": changes(e.before, e.after),
            }
            for e in entries
        ]
    )


HIDDEN = {"password_hash", "key_hash", "token_hash"}


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """A before/after pair in words: 'limit usd: 60 → 5; name: A → B' for a change, the
    values set for a creation ('created: name=A, …'), 'deleted' for a removal."""
    if before is None and after is None:
        return ""
    if before is None:
        assert after is not None
        set_ = [f"{header(k)}={_text(v)}" for k, v in sorted(after.items()) if _shown(k, v)]
        return "created: " + ", ".join(set_)
    if after is None:
        return (
            "deleted (was: "
            + ", ".join(
                f"{header(k)}={_text(v)}" for k, v in sorted(before.items()) if _shown(k, v)
            )
            + ")"
        )
    keys = sorted({*before, *after} - HIDDEN)
    diff = [
        f"{header(k)}: {_text(before.get(k))} → {_text(after.get(k))}"
        for k in keys
        if before.get(k) != after.get(k)
    ]
    changed_secret = any(before.get(k) != after.get(k) for k in HIDDEN & {*before, *after})
    return "; ".join(diff + (["password changed"] if changed_secret else [])) or "no change"


def _shown(key: str, value: object) -> bool:
    return key not in HIDDEN and value not in (None, "", [], {})


def _text(value: object) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "–"
    if isinstance(value, dict):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)


def tokens_frame(tokens: Sequence[ApiToken]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": t.id,
                "user": t.username,
                "name": t.name,
                "starts with": t.prefix + "…",
                "created": t.created_at,
                "by": t.created_by,
                "last used": t.last_used_at,
                "state": "revoked" if t.revoked_at else "active",
            }
            for t in tokens
        ],
        columns=["id", "user", "name", "starts with", "created", "by", "last used", "state"],
    )
