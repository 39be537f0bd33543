"""The Requests page's frames: the call log as shown (tokens summed, cost in the currency)."""

from __future__ import annotations

import pandas as pd

from console.selection import Money


def log_frame(page: pd.DataFrame, money: Money) -> pd.DataFrame:
    """The request log as shown: one row per call with tokens and cost in the currency."""
    tokens = (
        page[
            [
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
            ]
        ]
        .fillna(0)
        .sum(axis=1)
    )
    route = page["requested_model"].fillna(page["model"]).astype(str) + " → " + page["model"]
    return pd.DataFrame(
        {
            "time": page["ts"],
            "org / user": page["org"].fillna("–") + " / " + page["user"].fillna("–"),
            "task": page["task"],
            "key": page["key"],
            "model (requested → used)": route,
            "tokens": tokens.astype("int64"),
            "cost": _costs(page, money),
            "latency ms": page["latency_ms"].round(0),
            "cache hit": page["cache_hit"],
            "status": page["status"],
            "route reason": page["route_reason"],
            "request id": page["request_id"],
        }
    )


def _costs(page: pd.DataFrame, money: Money) -> list[float | None]:
    """Each call's cost in the currency; blank for a call logged unpriced (its cost is
    unknown, not $0: the router logs 0 or nothing)."""
    shown = money.floats(page["cost_picousd"].fillna(0))
    unpriced = page["unpriced"].fillna(False).astype(bool)
    return [None if u else c for c, u in zip(shown, unpriced, strict=True)]
