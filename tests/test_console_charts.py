"""Charts: top N series plus "other", colours fixed per value whatever the data, each top
spender's amount written on the chart, the period's total in the spend tooltip."""

from __future__ import annotations

import json

import pandas as pd

from console.charts.spend import spend_over_time, top_bars
from console.charts.style import OTHER_COLOUR, colours
from console.frames.overview import OTHER, TOP_N, series_frame
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
    spec = json.dumps(top_bars(df, "Top users", "$").to_dict())
    assert '"text"' in spec and "$1,234.50" in spec
    frame = series_frame(series(["a", "b"]), Money(), "day")
    spec = json.dumps(spend_over_time(frame, "model", "day", "$").to_dict())
    assert "period_total" in spec and "period total" in spec


def test_time_ticks_are_one_per_period_at_most() -> None:
    for grain in ("hour", "day", "month"):
        frame = series_frame(series(["a"]), Money(), grain)
        spec = spend_over_time(frame, "model", grain, "$").to_dict()
        axis = spec["vconcat"][0]["encoding"]["x"]["axis"]
        assert axis["tickCount"] == {"interval": grain, "step": 1}
        assert axis["labelOverlap"] == "greedy"
