"""The Admin page's tables: users and the audit log."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

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
                "entity": f"{e.entity}:{e.entity_id}",
                "before": _json(e.before),
                "after": _json(e.after),
            }
            for e in entries
        ]
    )


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, default=str, sort_keys=True)


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
