"""Charts: top N series plus "other", colours fixed per value whatever the data, each top
spender's amount written on the chart, the period's total in the spend tooltip; the
Overview's hand-written Vega-Lite specs are valid Vega-Lite."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from altair.utils.schemapi import validate_jsonschema
from altair.vegalite.v6.schema import core

from console.charts.forecast import mark_anomalies
from console.charts.spend import Spec, cost_per_1k, spend_over_time, top_bars
from console.charts.style import OTHER_COLOUR, colours
from console.frames.overview import OTHER, TOP_N, breakdown_frame, series_frame
from console.selection import Money


def series(keys: list[str]) -> pd.DataFrame:
    rows = [
        {
            "period": pd.Timestamp(f"2026-11-0{d}"),
            "key": k,
            "cost_picousd": (i + 1) * 10**12,
            "requests": 1,
        }
        for i, k in enumerate(keys)
        for d in (1, 2)
    ]
    return pd.DataFrame(rows).astype({"cost_picousd": object})


def as_json(spec: Spec) -> dict[str, Any]:
    """The spec as the browser gets it (datasets as rows), checked against the Vega-Lite
    schema Altair ships."""
    data = {k: v.to_dict("records") for k, v in spec["datasets"].items()}
    out: dict[str, Any] = json.loads(json.dumps({**spec, "datasets": data}, default=str))
    validate_jsonschema(out, core.load_schema())
    return out


def test_more_than_ten_series_become_the_top_nine_and_other() -> None:
    keys = [f"model-{i:02d}" for i in range(14)]
    frame = series_frame(series(keys), Money(), "day")
    shown = set(frame["key"])
    assert len(shown) == TOP_N + 1 and OTHER in shown
    assert "model-13" in shown and "model-00" not in shown  # the biggest stay
    other = frame[frame["key"] == OTHER]["amount"].sum()
    assert other == 2 * sum(range(1, 6))  # model-00..04, two days, exact


def test_colours_are_distinct_and_stable_per_value() -> None:
    domain, palette = colours(["gpt-4o", "claude-sonnet-4", "gemini-2.0-flash", OTHER])
    before = dict(zip(domain, palette, strict=True))
    assert len(set(palette)) == len(palette) and before[OTHER] == OTHER_COLOUR
    domain, palette = colours(["gpt-4o", "gemini-2.0-flash", "deepseek-chat"])
    after = dict(zip(domain, palette, strict=True))
    assert after["gpt-4o"] == before["gpt-4o"]
    assert after["gemini-2.0-flash"] == before["gemini-2.0-flash"]
    many = [f"model-{i}" for i in range(12)]
    assert len(set(colours(many)[1])) == 12  # past 10 series no two share a colour


def test_top_spenders_show_their_amounts_and_spend_tooltip_has_the_period_total() -> None:
    df = pd.DataFrame({"name": ["ann", "bob"], "amount": [1234.5, 12.0], "requests": [3, 1]})
    spec = json.dumps(as_json(top_bars(df, "Top users", "$")))
    assert '"text"' in spec and "$1,234.50" in spec
    frame = series_frame(series(["a", "b"]), Money(), "day")
    spec = json.dumps(
        as_json(spend_over_time(frame, breakdown_frame(frame, Money()), "model", "day", "$"))
    )
    assert "period_total" in spec and "period total" in spec


def test_period_total_is_the_exact_sum_of_the_period() -> None:
    frame = series_frame(series(["a", "b", "c"]), Money(), "day")
    assert list(frame["period_total"]) == [6.0] * len(frame)  # 1 + 2 + 3 on both days
    assert frame.groupby("period")["amount"].sum().tolist() == [6.0, 6.0]


def test_overview_specs_are_valid_vega_lite() -> None:
    frame = series_frame(series(["a", "b"]), Money(), "week")
    marks = pd.DataFrame(
        {
            "period": [pd.Timestamp("2026-11-01 12:00")],
            "amount": [3.0],
            **{c: ["x"] for c in ("when", "what", "ratio", "excess", "culprits")},
        }
    )
    spec = as_json(
        mark_anomalies(
            spend_over_time(frame, breakdown_frame(frame, Money()), "model", "week", "$"), marks
        )
    )
    assert set(spec["datasets"]) == {"series", "breakdown", "marks"}
    assert spec["vconcat"][0]["layer"][0]["name"] == "time"  # the brush's view
    per_1k = frame.assign(per_1k=1.0)[["period", "label", "per_1k", "requests"]]
    assert as_json(cost_per_1k(per_1k, "week", "$"))["title"] == "Cost per 1K requests"


def test_time_ticks_are_one_per_period_at_most() -> None:
    for grain in ("hour", "day", "month"):
        frame = series_frame(series(["a"]), Money(), grain)
        spec = spend_over_time(frame, breakdown_frame(frame, Money()), "model", grain, "$")
        axis = spec["vconcat"][0]["encoding"]["x"]["axis"]
        assert axis["tickCount"] == {"interval": grain, "step": 1}
        assert axis["labelOverlap"] == "greedy"


def test_bars_stack_in_key_order_refunds_below_zero() -> None:
    """The frame places each bar in its period's stack (the chart draws top to bottom as they
    are): spend up from zero in key order, a refund (negative) down from zero."""
    rows = series(["a", "b", "c"])
    rows["cost_picousd"] = [2 * 10**12, 2 * 10**12, -(10**12), -(10**12), 3 * 10**12, 5]
    frame = series_frame(rows.astype({"cost_picousd": object}), Money(), "day")
    first = frame[frame["period"] == frame["period"].min()].set_index("key")
    assert first[["bottom", "top"]].to_dict("index") == {
        "a": {"bottom": 0.0, "top": 2.0},
        "b": {"bottom": -1.0, "top": 0.0},
        "c": {"bottom": 2.0, "top": 5.0},
    }
    spec = as_json(spend_over_time(frame, breakdown_frame(frame, Money()), "model", "day", "$"))
    time = spec["vconcat"][0]["encoding"]
    assert (time["y"]["field"], time["y2"]["field"]) == ("top", "bottom")
    assert "stack" not in time["y"]  # nothing stacked by the browser
