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


PLACES = 6  # the log's cost column: millionths, as a call's cost needs


def _costs(page: pd.DataFrame, money: Money) -> list[str | None]:
    """Each call's cost in the currency as text, rounded half up to six decimals (exactly,
    from the picodollars): '$0.000013'. A billed call under half a millionth reads
    '<$0.000001' (a tiny embedding call never reads as free: '0.000000' was also what a free
    cache hit read), a free call '$0', a call logged unpriced nothing (its cost is unknown,
    not $0: the router logs 0 or nothing). The detail view has the exact amount."""
    unpriced = page["unpriced"].fillna(False).astype(bool)
    out: list[str | None] = []
    for p, u in zip(page["cost_picousd"].tolist(), unpriced, strict=True):
        if u:
            out.append(None)
        elif p is None or pd.isna(p) or int(p) == 0:
            out.append(f"{money.symbol}0")
        else:
            out.append(money.table(int(p), PLACES))
    return out
