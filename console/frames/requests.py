"""The Requests page's frames: the call log as shown (tokens summed, cost in the currency)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

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
    """Each call's cost in the currency, rounded half up to the six decimals the column shows
    (exactly, before it becomes a float: the browser's '%.6f' of the float 0.0000125 may read
    0.000012); blank for a call logged unpriced (its cost is unknown, not $0: the router logs
    0 or nothing)."""
    micro = Decimal("0.000001")
    shown = [
        float(money.amount(int(p)).quantize(micro, rounding=ROUND_HALF_UP))
        for p in page["cost_picousd"].fillna(0)
    ]
    unpriced = page["unpriced"].fillna(False).astype(bool)
    return [None if u else c for c, u in zip(shown, unpriced, strict=True)]
