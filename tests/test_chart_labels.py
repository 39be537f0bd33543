"""Every mark of every console chart (the Overview's specs and the Forecast page's) says what
it is to a screen reader through a description the server wrote (an encoded ``description``
field, or the mark's own text), never the one Vega-Lite makes from the encoded floats: a
stacked spend bar read its stack top as its spend, an anomaly point or a budget rule the raw
float it is drawn at, an area or line its first day's fields ("spend ($): null")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from console.charts.forecast import forecast_chart, mark_anomalies
from console.charts.spend import cost_per_1k, spend_over_time, top_bars
from console.frames import forecast as fc_frames
from console.frames import overview as frames
from console.selection import Money, Scope
from core.types import PICO
from tests.test_console_forecast import finding

RAW_FLOAT = re.compile(r"\d\.\d{5,}")  # money has 2 decimals, a unit cost 4


def units(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every view that draws a mark, with the encoding it inherits from its layer."""
    for key in ("layer", "vconcat", "hconcat", "concat"):
        for child in spec.get(key, []):
            yield from units(
                {
                    "encoding": {**spec.get("encoding", {}), **child.get("encoding", {})},
                    **{k: v for k, v in child.items() if k != "encoding"},
                }
            )
    if "mark" in spec:
        yield spec


def described(unit: dict[str, Any]) -> bool:
    mark = unit["mark"] if isinstance(unit["mark"], dict) else {"type": unit["mark"]}
    if mark.get("aria") is False:
        return True
    if "description" in unit.get("encoding", {}):
        return unit["encoding"]["description"].get("field") == "description"
    return bool(mark.get("description"))


def rows(spec: dict[str, Any]) -> list[dict[str, Any]]:
    data = spec.get("datasets", {})
    return [r for frame in data.values() for r in frame.to_dict("records")]


def check(spec: dict[str, Any]) -> list[str]:
    """The spec's labels; fails on a mark left to Vega-Lite's own label or a raw float."""
    plain = spec if "datasets" in spec else json.loads(json.dumps(spec, default=str))
    bare = [u["mark"] for u in units(plain) if not described(u)]
    assert not bare, bare
    texts = [str(r["description"]) for r in rows(spec) if r.get("description")]
    texts += [
        u["mark"]["description"]
        for u in units(plain)
        if isinstance(u["mark"], dict) and u["mark"].get("description")
    ]
    assert not [t for t in texts if RAW_FLOAT.search(t)], texts
    return texts


def spend_series() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "period": pd.to_datetime(["2026-11-02", "2026-11-03", "2026-11-03"]),
            "key": ["gpt-4o", "gpt-4o", "gpt-4o-mini"],
            # $1.105 at the bottom of 3 Nov's stack, $6.505 above it (top: $7.61)
            "cost_picousd": pd.Series([PICO, 1_105_000_000_000, 6_505_000_000_000], dtype=object),
            "requests": [1, 2, 1],
            "unpriced": [0, 0, 0],
        }
    )


def test_overview_marks_are_labelled_with_their_own_money() -> None:
    money = Money()
    series = spend_series()
    frame = frames.series_frame(series, money, "day")
    marks = fc_frames.overview_marks(frame, [finding("2026-11-03")], money, "day")
    spec = mark_anomalies(
        spend_over_time(frame, frames.breakdown_frame(frame, money), "model", "day", "$"), marks
    )
    labels = check(spec)
    assert "2026-11-03 · gpt-4o-mini · $6.51 · 1 request" in labels  # not the top, 7.61
    assert "2026-11-03 · gpt-4o · $1.11 · 2 requests" in labels  # half a cent up
    assert "gpt-4o-mini · $6.51 in the selected periods · 1 request" in labels
    assert [t for t in labels if t.startswith("anomaly ") and "+$20.00 above expected" in t]
    top = pd.DataFrame(
        {
            "name": ["ann"],
            "cost_picousd": pd.Series([8_610_000_000_000], dtype=object),
            "requests": [4],
        }
    )
    assert check(top_bars(frames.top_frame(top, money), "Top users", "$")) == [
        "ann · $8.61 · 4 requests"
    ]
    per_1k = frames.per_1k_frame(series, money, "day")
    assert "2026-11-03 · $2,536.6667 per 1K requests · 3 requests" in check(
        cost_per_1k(per_1k, "day", "$")
    )


def test_forecast_marks_are_labelled() -> None:
    days = pd.date_range("2026-11-01", periods=6)
    series = pd.DataFrame(
        {
            "ds": days,
            "actual": [1.0, 2.123456, 9.987654, None, None, None],
            "yhat": [None, None, 9.987654, 3.333333, 3.5, 3.7],
            "lower": [None, None, 9.987654, 1.111111, 1.2, 1.3],
            "upper": [None, None, 9.987654, 5.555555, 5.6, 5.7],
        }
    )
    scope = Scope(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC))
    marks = fc_frames.marks_frame([finding("2026-11-03")], series, Money(), scope, "total", None)
    assert len(marks) == 1
    chart = forecast_chart(
        series,
        symbol="$",
        budget=3.333333,
        budget_label="budget pace $3.33/day",
        exhausted=date(2026, 11, 5),
        marks=marks,
        changepoints=pd.DataFrame({"ds": pd.to_datetime(["2026-11-02"])}),
    )
    spec = chart.to_dict()
    spec["datasets"] = {k: pd.DataFrame(v) for k, v in spec.get("datasets", {}).items()}
    labels = check(spec)
    assert {"actual spend", "forecast spend", "budget line: budget pace $3.33/day"} <= set(labels)
    assert "budget runs out 05 Nov 2026" in labels and "trend changed 02 Nov 2026" in labels
