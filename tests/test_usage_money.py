"""Money stays exact: integer picodollar sums equal Python's sums, even past int64."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

from test_usage_support import event

from core.usage import Filters, Reader, UsageLog


def test_sums_over_many_events_equal_the_python_sum(costline_home: Path) -> None:
    rng = random.Random(7)
    # Values a float64 cannot hold exactly (> 2**53), so a float sum anywhere would drift.
    costs = [rng.randrange(10**15, 9 * 10**15) + rng.randrange(1000) for _ in range(20_000)]
    saved = [rng.randrange(10**13) for _ in costs]
    events = [
        event(i, cost_picousd=c, saved_picousd=s)
        for i, (c, s) in enumerate(zip(costs, saved, strict=True))
    ]
    with UsageLog(flush_every=3_000) as log:
        log.append_many(events)
    reader = Reader()
    totals = reader.totals()
    assert totals["cost_picousd"] == sum(costs)
    assert totals["cost_usd"] == Decimal(sum(costs)).scaleb(-12)
    assert totals["saved_picousd"] == sum(saved)
    by_model = reader.spend_by(["model"], None)
    for model, cost in zip(by_model["model"], by_model["cost_picousd"], strict=True):
        assert int(cost) == sum(e.cost_picousd for e in events if e.model == model)
    by_day = reader.spend_by([], "day", Filters(org="acme"))
    assert sum(int(c) for c in by_day["cost_picousd"]) == sum(
        e.cost_picousd for e in events if e.org == "acme"
    )


def test_sums_beyond_int64_stay_exact(costline_home: Path) -> None:
    big = 2**62 + 12_345  # four of these overflow int64
    with UsageLog() as log:
        log.append_many(event(i, cost_picousd=big, model="m") for i in range(4))
    reader = Reader()
    assert reader.totals()["cost_picousd"] == 4 * big
    df = reader.spend_by(["model"], None)
    assert df["cost_picousd"].tolist() == [4 * big]
    assert isinstance(df["cost_picousd"].iloc[0], int)
