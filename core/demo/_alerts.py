"""The budget alerts the demo history would have fired: for each demo budget and window, the
first call whose spend reached each threshold, with the guard's own message."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate

import pandas as pd
import pyarrow as pa

from core.budgets import threshold, window
from core.control import Budget

SCOPE_COLUMNS = {"org": "org", "project": "project", "user": "user", "model": "model"}


@dataclass(frozen=True, slots=True)
class DemoAlert:
    budget_id: str
    window_key: str
    pct: int
    ts: datetime
    spent_picousd: int
    limit_picousd: int
    message: str


def history_alerts(
    table: pa.Table, budgets: list[Budget], created: Mapping[str, datetime] | None = None
) -> Iterator[DemoAlert]:
    """Alerts of USD budgets scoped to one org, project, user or model (or global); a budget
    in ``created`` has none for calls before that time."""
    df = table.select(["ts", *SCOPE_COLUMNS.values(), "cost_picousd"]).to_pandas()
    df = df[df["cost_picousd"] > 0].sort_values("ts", kind="stable")
    quarter = df["ts"].dt.floor("15min")  # window edges fall on quarter hours in every zone
    for b in budgets:
        limit = b.limit_picousd
        if not limit or not b.enabled or (b.scope != "global" and b.scope not in SCOPE_COLUMNS):
            continue
        mine = df if b.scope == "global" else df[df[SCOPE_COLUMNS[b.scope]] == b.scope_value]
        if created and b.id in created:
            mine = mine[mine["ts"] >= created[b.id]]
        keys = {q: b.window_key(q.to_pydatetime()) for q in quarter[mine.index].unique()}
        label = quarter[mine.index].map(keys)
        for key, rows in mine.groupby(label, sort=True):
            # Python ints, like every money sum: an int64 cumsum (and spent * 100) wrapped
            # past 2**63 pUSD, i.e. a window above ~$92,234 compared wrong; costs are > 0, so
            # the running sum only grows and the first call to reach a threshold is a bisect
            spent = list(accumulate(int(c) for c in rows["cost_picousd"].tolist()))
            for pct in sorted(b.thresholds):
                first = bisect_left(spent, -(-pct * limit // 100))  # spent * 100 >= pct * limit
                if first == len(spent):
                    break
                at = pd.Timestamp(rows["ts"].iloc[first]).to_pydatetime()
                total = spent[first]
                yield DemoAlert(
                    b.id,
                    str(key),
                    pct,
                    at,
                    total,
                    limit,
                    threshold(b, window(b, at), pct, "usd", total, limit),
                )
