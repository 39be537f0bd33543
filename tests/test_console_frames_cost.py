"""The Overview's frames stay cheap: a cold Overview run builds them on the page's critical
path (its script run), so the spend chart's 90 days x 15 models are shaped without a Decimal
per row or a pandas group-by with a Python sum per group (~0.1 s of every cold run before),
and the floats they draw are still the nearest to the exact amounts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from console.frames.overview import OTHER, per_1k_frame, series_frame
from console.selection import Money


def month(keys: int = 15, days: int = 90) -> pd.DataFrame:
    """A period per day, ``keys`` models each, costs in exact picodollars."""
    rows = [
        {
            "period": pd.Timestamp("2026-09-01") + pd.Timedelta(days=d),
            "key": f"model-{k:02d}",
            "cost_picousd": (d + 1) * (k + 1) * 1_000_003_000 + k,
            "requests": d + k + 1,
            "unpriced": 0,
        }
        for d in range(days)
        for k in range(keys)
    ]
    return pd.DataFrame(rows).astype({"cost_picousd": object})


def test_the_spend_chart_floats_are_the_nearest_to_the_exact_amounts() -> None:
    eur = Money("EUR", "0.92")
    assert eur.floats([1_005_000_000_000, -7, 0]) == [0.9246, -6.44e-12, 0.0]
    assert Money().floats([123_456_789_012_345]) == [123.456789012345]
    # past Decimal's 28 digits the amount is rounded as Money.amount rounds it
    odd = Money("X", "3.14159265358979323846264338")
    big = 10**20 + 1
    assert odd.floats([big]) == [float(odd.amount(big))]


def test_shaping_the_spend_chart_needs_no_decimal_per_row_nor_a_group_by(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = month()
    calls = {"amount": 0, "groupby": 0}
    amount, groupby = Money.amount, pd.DataFrame.groupby

    def counted_amount(self: Money, pico: int) -> Decimal:
        calls["amount"] += 1
        return amount(self, pico)

    def counted_groupby(self: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        calls["groupby"] += 1
        return groupby(self, *args, **kwargs)

    monkeypatch.setattr(Money, "amount", counted_amount)
    monkeypatch.setattr(pd.DataFrame, "groupby", counted_groupby)
    frame = series_frame(series, Money(), "day", series)
    assert len(frame) == 90 * 10 and set(frame["key"]) >= {OTHER}
    assert calls == {"amount": 4, "groupby": 0}  # one signed zero per floats() call
    unit = per_1k_frame(series, Money(), "day")
    assert len(unit) == 90 and calls["groupby"] == 0
    monkeypatch.undo()
    # the same figures as exact arithmetic: day 1's "other" (models 00-05) and its unit cost
    first = frame[frame["period"] == pd.Timestamp("2026-09-01")]
    other = sum(1 * (k + 1) * 1_000_003_000 + k for k in range(6))
    assert first[first["key"] == OTHER]["amount"].tolist() == [other / 10**12]
    day = sum((k + 1) * 1_000_003_000 + k for k in range(15))
    asks = sum(k + 1 for k in range(15))
    assert unit["per_1k_text"].iloc[0] == Money().text(Decimal(day * 1000) / asks / 10**12, 4)
