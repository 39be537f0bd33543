"""Spend charts (Overview, Requests): pure functions from a DataFrame to a chart.

The Overview's three charts (``spend_over_time``, ``top_bars``, ``cost_per_1k``) are Vega-Lite
specs written as plain dicts, each with its data under ``datasets`` as a DataFrame (what
``st.vega_lite_chart`` sends as Arrow): building them through Altair cost ~0.25 s of every
cold Overview run (encoding inference, schema validation, copies) for the same JSON.
``tests/test_console_charts.py`` validates them against Altair's Vega-Lite schema.

Amounts arrive as a float column ``amount`` in the display currency (exact sums converted
once, for drawing only); tooltips format them with the currency symbol.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import altair as alt
import pandas as pd

from console.charts.style import (
    ACCENT,
    BAR_STEP,
    DATE_FORMAT,
    HEIGHT,
    LABELS,
    LABELS_SPEC,
    MUTED,
    SCHEME,
    SMALL_HEIGHT,
    colours,
    spec_config,
    style,
)

Spec = dict[str, Any]  # a Vega-Lite spec; its "datasets" hold DataFrames
BRUSH = "periods"  # the spend chart's interval selection of periods (x)


def brushed(state: Any) -> tuple[float, float] | None:
    """The periods the spend chart's brush selected, from the chart's selection state
    (``{"selection": {"periods": {"period": [start, end]}}}``, chart milliseconds): its
    [start, end], or None when nothing is brushed."""
    try:
        values = state["selection"][BRUSH]["period"]
        start, end = (float(v) for v in values)
    except (KeyError, TypeError, ValueError):
        return None
    return (min(start, end), max(start, end))


def time_axis(grain: str) -> dict[str, Any]:
    """One tick per period at most (never "01 Dec 01 Dec" or "Sep 2026" four times), the
    labels that would overlap dropped, the year shown (DATE_FORMAT)."""
    return {
        "format": DATE_FORMAT.get(grain, "%d %b"),
        "tickCount": {"interval": grain, "step": 1},
        "labelOverlap": "greedy",
    }


def _time_x(grain: str) -> dict[str, Any]:
    return {
        "field": "period",
        "type": "temporal",
        "title": None,
        "scale": {"type": "utc"},
        "axis": time_axis(grain),
    }


def _tip(field: str, kind: str, title: str | None = None, fmt: str | None = None) -> dict[str, Any]:
    tip: dict[str, Any] = {"field": field, "type": kind}
    if title is not None:
        tip["title"] = title
    if fmt is not None:
        tip["format"] = fmt
    return tip


SERIES_COLUMNS = [
    "period",
    "period_end",
    "label",
    "key",
    "amount",
    "bottom",
    "top",
    "period_total",
    "requests",
    "amount_text",
    "total_text",
    "description",
]

# each mark's screen-reader label, written by the server (console.frames.overview.describe):
# Vega-Lite's own reads every encoded field, so a stacked bar said its stack top was its spend
DESCRIPTION = {"field": "description", "type": "nominal"}


def spend_over_time(
    df: pd.DataFrame, breakdown: pd.DataFrame, dim: str, grain: str, symbol: str
) -> Spec:
    """Stacked spend bars per period (x = period start to end) above a breakdown by ``dim``;
    clicking a breakdown bar or a legend entry highlights that value in both. Brushing
    periods selects them (the ``periods`` param, BRUSH): the page reads the selection back
    (``brushed``) and sends the breakdown of those periods, summed exactly on the server.

    ``df`` columns: period, period_end, label, key, amount, bottom and top (the bar's place
    in its period's stack), period_total, requests, amount_text and total_text (the
    tooltip's money; one row per period and key, drawn as they are: no aggregation, stack or
    join in the browser). ``breakdown``
    columns: key, amount, amount_text (the tooltip's exact money), requests: one row per key,
    drawn as it is (console.frames.overview.breakdown_frame)."""
    unit = symbol.strip()
    domain, palette = colours(list(df["key"].unique()))
    color = {
        "condition": {
            "param": "pick",
            "field": "key",
            "type": "nominal",
            "title": dim.replace("_", " "),
            "scale": {"domain": domain, "range": palette},
            "legend": {"columns": 5, "symbolLimit": 0, "labelLimit": 160},
        },
        "value": MUTED,
    }
    time = {
        "name": "time",
        "mark": {"type": "bar"},
        "encoding": {
            "x": _time_x(grain),
            "x2": {"field": "period_end"},
            # stacked in the frame (bottom, top): Vega-Lite does not stack a bar that has
            # both x and x2 (it drew each as a line at its own amount)
            "y": {"field": "top", "type": "quantitative", "title": f"spend ({unit})"},
            "y2": {"field": "bottom"},
            "color": color,
            "description": DESCRIPTION,
            "tooltip": [
                _tip("label", "nominal", "period"),
                _tip("key", "nominal", dim),
                _tip("amount_text", "nominal", "spend"),
                _tip("total_text", "nominal", "period total"),
                _tip("requests", "quantitative", "requests", ","),
            ],
        },
        "height": HEIGHT,
        "width": "container",
    }
    breakdown_view = {
        "name": "breakdown",
        "data": {"name": "breakdown"},
        "mark": {"type": "bar"},
        "encoding": {
            "y": {
                "field": "key",
                "type": "nominal",
                "sort": "-x",
                "title": None,
                "axis": LABELS_SPEC,
            },
            "x": {
                "field": "amount",
                "type": "quantitative",
                "title": f"spend in selected periods ({unit})",
            },
            "color": color,
            "description": DESCRIPTION,
            "tooltip": [
                _tip("key", "nominal", dim),
                _tip("amount_text", "nominal", "spend"),
                _tip("requests", "quantitative", "requests", ","),
            ],
        },
        "height": {"step": BAR_STEP},
        "width": "container",
    }
    return {
        "data": {"name": "series"},
        "datasets": {"series": df[SERIES_COLUMNS], "breakdown": breakdown},
        "params": [
            {
                "name": BRUSH,
                "select": {"type": "interval", "encodings": ["x"]},
                "views": ["time"],
            },
            {
                "name": "pick",
                "select": {"type": "point", "fields": ["key"]},
                "bind": "legend",
                "views": ["breakdown"],
            },
        ],
        "vconcat": [time, breakdown_view],
        "resolve": {"scale": {"color": "shared"}},
        "config": spec_config(),
    }


def _cents(symbol: str, amount: float) -> str:
    """'$1.01' for 1.005: the float read as its shortest decimal form, to the cent, half up,
    the sign first."""
    d = Decimal(repr(float(amount))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{'-' if d < 0 else ''}{symbol}{abs(d):,}"


def top_bars(df: pd.DataFrame, title: str, symbol: str) -> Spec:
    """Horizontal bars of the top spenders with each amount written beside its bar;
    ``df`` columns: name, amount, requests, shown (the amount as text; made from the float
    when absent) and description (each bar's screen-reader label; made from the others when
    absent)."""
    if "shown" not in df.columns:
        df = df.assign(shown=[_cents(symbol, a) for a in df["amount"]])
    if "description" not in df.columns:
        df = df.assign(
            description=[
                f"{n} · {s} · {int(r):,} request{'' if int(r) == 1 else 's'}"
                for n, s, r in zip(df["name"], df["shown"], df["requests"], strict=True)
            ]
        )
    encoding = {
        "y": {"field": "name", "type": "nominal", "sort": "-x", "title": None, "axis": LABELS_SPEC},
        "x": {
            "field": "amount",
            "type": "quantitative",
            "title": f"spend ({symbol.strip()})",
            "scale": {"domainMax": float(df["amount"].max() or 0) * 1.25 or 1},
        },
        "description": DESCRIPTION,
        "tooltip": [
            _tip("name", "nominal", title.lower()),
            _tip("shown", "nominal", "spend"),
            _tip("requests", "quantitative", fmt=","),
        ],
    }
    text = {"field": "shown", "type": "nominal"}
    return {
        "data": {"name": "top"},
        "datasets": {"top": df},
        "title": title,
        "encoding": encoding,
        "layer": [
            {"mark": {"type": "bar", "color": ACCENT}},
            {
                "mark": {"type": "text", "align": "left", "dx": 4, "fontSize": 12},
                "encoding": {"text": text},
            },
        ],
        "height": {"step": BAR_STEP},
        "width": "container",
        "config": spec_config(),
    }


def cost_per_1k(df: pd.DataFrame, grain: str, symbol: str) -> Spec:
    """Line of the cost per 1,000 requests; ``df`` columns: period, label, per_1k, per_1k_text (the
    tooltip's text), requests, description (each point's screen-reader label; the line itself
    is not announced: Vega-Lite labelled it with its first point's fields)."""
    return {
        "data": {"name": "per_1k"},
        "datasets": {"per_1k": df},
        "title": "Cost per 1K requests",
        "mark": {"type": "line", "point": True, "color": ACCENT, "aria": False},
        "encoding": {
            "x": _time_x(grain),
            "y": {
                "field": "per_1k",
                "type": "quantitative",
                "title": f"{symbol.strip()} per 1K requests",
            },
            "description": DESCRIPTION,
            "tooltip": [
                _tip("label", "nominal", "period"),
                _tip("per_1k_text", "nominal", "per 1K requests"),
                _tip("requests", "quantitative", fmt=","),
            ],
        },
        "height": SMALL_HEIGHT,
        "width": "container",
        "config": spec_config(),
    }


def errors_bars(df: pd.DataFrame) -> alt.Chart:
    """Errors per type, stacked by provider; ``df`` columns: error_type, provider, errors."""
    chart: alt.Chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("error_type:N", sort="-x", title=None, axis=LABELS),
            x=alt.X("sum(errors):Q", title="failed calls"),
            color=alt.Color("provider:N", scale=alt.Scale(scheme=SCHEME)),
            tooltip=["error_type:N", "provider:N", alt.Tooltip("errors:Q", format=",")],
        )
        .properties(height=alt.Step(BAR_STEP), width="container")
    )
    return style(chart)
