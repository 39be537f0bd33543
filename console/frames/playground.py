"""The Playground's tables: providers and keys (masked), estimates and budget headroom before
sending, and a user's past runs; money as exact dollars."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd

from console.queries.playground import Estimate, Target, env_names, provider_problem
from core.budgets import BudgetStatus
from core.settings import ENV_KEY_NAMES, Settings, mask
from core.types import pico_to_usd


def fmt_usd(pico: int | None) -> str:
    """Exact dollars, at least cents: $0.000012345, $1.50."""
    if pico is None:
        return "–"
    d = pico_to_usd(int(pico))
    if d == d.quantize(Decimal("0.01")):
        return f"${d:,.2f}"
    return f"${d.normalize():,f}"


def providers_frame(s: Settings, secrets: Mapping[str, Any]) -> pd.DataFrame:
    """The configured providers; ``secrets`` tells where each key came from."""
    sec, table = env_names(secrets), secrets.get("providers") or {}
    rows = []
    for name, c in sorted(s.providers.items()):
        env = ENV_KEY_NAMES.get(name, name.upper()) + "_API_KEY"
        where = "secrets" if env in sec or name in table else "environment" if c.api_key else ""
        rows.append(
            {
                "provider": name,
                "wire": c.wire,
                "base url": c.base_url,
                "API key": mask(c.api_key),
                "key from": where,
                "status": provider_problem(s, name) or "ready",
            }
        )
    return pd.DataFrame(rows)


def estimate_row(est: Estimate) -> dict[str, object]:
    t = est.target
    return {
        "model": t.name,
        "provider": t.provider,
        "prompt tokens": est.prompt_tokens,
        "counted": "estimate" if est.tokens_estimated else "exact",
        "max cost": fmt_usd(est.max_cost),
        "typical output": est.typical_output,
        "typical cost": fmt_usd(est.typical_cost),
        "typical from": "your log" if est.typical_from_log else "assumed",
        "status": t.problem or "ready",
    }


def budget_row(t: Target, s: BudgetStatus, max_cost: int) -> dict[str, object]:
    b, limit = s.budget, s.limit_picousd
    left = None if limit is None else limit - s.spent_picousd - s.reserved_picousd
    return {
        "model": t.name,
        "budget": b.name,
        "scope": "global" if b.scope == "global" else f"{b.scope}={b.scope_value}",
        "window": s.window.label,
        "action": b.action,
        "spent": fmt_usd(s.spent_picousd),
        "reserved": fmt_usd(s.reserved_picousd),
        "limit": fmt_usd(limit) if limit is not None else f"{s.limit_tokens:,} tokens",
        "remaining": fmt_usd(left) if left is not None else "–",
        "used": f"{s.utilisation:.1%}",
        "fits max cost": "–" if left is None else "yes" if max_cost <= left else "no",
    }


def history_frame(runs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": runs["ts"],
            "model": runs["model"],
            "status": runs["status"],
            "tokens in": runs["input_tokens"],
            "tokens out": runs["output_tokens"],
            "cost": [fmt_usd(int(c)) for c in runs["cost_picousd"].fillna(0)],
            "latency ms": runs["latency_ms"].round(0),
            "cache hit": runs["cache_hit"],
            "request id": runs["request_id"],
        }
    )
