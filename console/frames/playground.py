"""The Playground's tables: estimates and budget headroom before sending, and a user's past
runs; money as exact dollars."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pandas as pd

from console.frames import budgets as budget_frames
from console.frames.display import local_time
from core.types import pico_to_usd, usd_places

if TYPE_CHECKING:  # queries use Streamlit's cache; frames stay pure
    from console.queries.budgets import Utilisation
    from console.queries.playground import Estimate, Target


def fmt_usd(pico: int | None) -> str:
    """Exact dollars, at least cents: $0.000012345, $1.50."""
    if pico is None:
        return "–"
    d = pico_to_usd(int(pico))
    if d == d.quantize(Decimal("0.01")):
        return usd_places(d)
    return f"{'-' if d < 0 else ''}${abs(d).normalize():,f}"


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


def budget_row(t: Target, u: Utilisation, max_cost: int) -> dict[str, object]:
    """One budget this call is charged to: spent and projected from the usage log (the
    projection of the Budgets page), what is left and whether the call's max cost fits."""
    b, limit = u.budget, u.budget.limit_picousd
    left = u.remaining_picousd
    return {
        "model": t.name,
        "budget": b.name,
        "scope": "global" if b.scope == "global" else f"{b.scope}={b.scope_value}",
        "window": u.label,
        "action": b.action,
        "spent": budget_frames.cents(u.spent_picousd),
        "limit": budget_frames.cents(limit) if limit is not None else f"{b.limit_tokens:,} tokens",
        "remaining": budget_frames.cents(max(left, 0)) if left is not None else "–",
        "used": f"{u.utilisation:.1%}",
        "projected at window end": budget_frames.cents(u.projected_spend_picousd),
        "outlook": budget_frames.severity_text(u),
        "runs out": budget_frames.runs_out(u),
        "fits max cost": "–" if left is None else "yes" if max_cost <= left else "no",
    }


def _costs(runs: pd.DataFrame) -> list[str]:
    """Each run's exact cost; 'unpriced' for a call logged unpriced (its cost is unknown: it
    read $0.00, as a free cache hit does)."""
    unpriced = (
        runs["unpriced"].fillna(False).astype(bool).tolist()
        if "unpriced" in runs.columns
        else [False] * len(runs)
    )
    costs = runs["cost_picousd"].fillna(0).tolist()
    return ["unpriced" if u else fmt_usd(int(c)) for c, u in zip(costs, unpriced, strict=True)]


def history_frame(runs: pd.DataFrame, tz: str) -> pd.DataFrame:
    """A user's runs: times in ``tz`` without an offset, whole milliseconds."""
    return pd.DataFrame(
        {
            "time": local_time(runs["ts"], tz),
            "model": runs["model"],
            "status": runs["status"],
            "tokens in": runs["input_tokens"],
            "tokens out": runs["output_tokens"],
            "cost": _costs(runs),
            "latency ms": runs["latency_ms"].round(0).astype("Int64"),
            "cache hit": runs["cache_hit"],
            "request id": runs["request_id"],
        }
    )
