"""The Keys page's table: one row per key, never a secret."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd

from core.control import Budget, RateLimit, VirtualKey


def keys_frame(
    keys: Sequence[VirtualKey],
    budgets: Sequence[Budget],
    limits: Sequence[RateLimit],
    spend: Mapping[str, str],
    now: datetime,
) -> pd.DataFrame:
    """``spend``: each key's spend in the range shown, already formatted."""
    by_budget = {b.scope_value: b for b in budgets if b.scope == "key"}
    rows = []
    for k in keys:
        b = by_budget.get(k.name)
        lim = [r for r in limits if r.scope == "key" and r.scope_value == k.name]
        bound = ", ".join(
            f"{f}={getattr(k, f)}" for f in ("org", "project", "user") if getattr(k, f)
        )
        rows.append(
            {
                "name": k.name,
                "key": k.prefix + "…",
                "status": k.status(now),
                "bound to": bound or "–",
                "models": ", ".join(k.models) or "all",
                "budget": f"${b.limit_usd} / {b.period}" if b and b.limit_usd is not None else "–",
                "limits": ", ".join(f"{r.limit:,} {r.metric}/min" for r in lim) or "–",
                "spend": spend.get(k.name, "–"),
                "created": k.created_at,
                "expires": k.expires_at,
                "revoked": k.revoked_at,
            }
        )
    return pd.DataFrame(rows)
