"""Forecast charts: pure functions from small frames to Altair charts (no Streamlit).

Frames arrive in the display currency (``console.frames.forecast`` builds them):

- series: ds, actual, yhat, lower, upper (actual on history days, the rest on forecast days;
  the tooltips write them as exact text, half a cent up)
- marks (anomalies): ds, amount (where to draw the point), what, when, ratio, excess, culprits,
  description (the point's screen-reader label)
- changepoints: ds

``mark_anomalies`` puts the same points on the Overview's spend chart (a Vega-Lite dict,
see ``console.charts.spend``).
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import altair as alt
import pandas as pd

from console.charts.style import ACCENT, HEIGHT, MUTED, style

ACTUAL = "#1f2a44"
FORECAST = ACCENT
BAND = ACCENT
BUDGET = "#b8860b"
EXHAUSTED = "#c0392b"
ANOMALY = "#d62728"
X_FORMAT = "%d %b %Y"  # with the year: a forecast of old data must say which year


def _x() -> alt.X:
    return alt.X("ds:T", title=None, axis=alt.Axis(format=X_FORMAT))


def forecast_chart(
    series: pd.DataFrame,
    *,
    symbol: str,
    band: str = "80%",
    budget: float | None = None,
    budget_label: str = "",
    exhausted: date | None = None,
    marks: pd.DataFrame | None = None,
    changepoints: pd.DataFrame | None = None,
    title: str = "",
) -> alt.LayerChart:
    """History, forecast line, interval band, budget line, exhaustion date, anomalies and
    changepoints on one time axis."""
    money = f"spend ({symbol.strip()})"
    cols = [c for c in ("actual", "yhat", "lower", "upper") if c in series.columns]
    series = series.assign(**{f"{c}_text": money_texts(series[c], symbol) for c in cols})
    base = alt.Chart(series)
    tooltip = [  # money as text, half a cent up (the browser's ',.2f' of 1.005 is 1.00)
        alt.Tooltip("ds:T", title="day", format="%a %d %b %Y"),
        alt.Tooltip("actual_text:N", title="actual"),
        alt.Tooltip("yhat_text:N", title="forecast"),
        alt.Tooltip("lower_text:N", title=f"{band} low"),
        alt.Tooltip("upper_text:N", title=f"{band} high"),
    ]
    # one area or line per series: each says what it is (Vega-Lite labelled it with its first
    # day's fields, "spend ($): null"); the points and rules say their own day
    area = base.mark_area(
        color=BAND, opacity=0.18, description=f"forecast {band} interval band"
    ).encode(x=_x(), y=alt.Y("lower:Q", title=money), y2="upper:Q", tooltip=tooltip)
    actual = base.mark_line(color=ACTUAL, strokeWidth=1.6, description="actual spend").encode(
        x=_x(), y=alt.Y("actual:Q", title=money), tooltip=tooltip
    )
    predicted = base.mark_line(
        color=FORECAST, strokeDash=[6, 3], strokeWidth=2, description="forecast spend"
    ).encode(x=_x(), y="yhat:Q", tooltip=tooltip)
    layers: list[Any] = [area, actual, predicted]
    if changepoints is not None and not changepoints.empty:
        changed = changepoints.assign(
            description=[f"trend changed {d:%d %b %Y}" for d in pd.to_datetime(changepoints["ds"])]
        )
        layers.append(
            alt.Chart(changed)
            .mark_rule(color=MUTED, strokeDash=[2, 3])
            .encode(
                x=_x(),
                description="description:N",
                tooltip=[alt.Tooltip("ds:T", title="trend changed", format="%d %b %Y")],
            )
        )
    if budget is not None:
        layers += _budget_rule(budget, budget_label)
    if exhausted is not None:
        layers += _exhausted_rule(exhausted)
    if marks is not None and not marks.empty:
        layers.append(anomaly_layer(marks))
    chart = alt.layer(*layers).properties(height=HEIGHT, width="container", title=title)
    return style(chart)


def money_texts(values: pd.Series, symbol: str) -> list[str]:
    """'$1.01' for 1.005: each float read as its shortest decimal form (repr), to the cent,
    half up, the sign first ('' where there is no value)."""
    out = []
    for v in values:
        if v is None or pd.isna(v):
            out.append("")
            continue
        d = Decimal(repr(float(v))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out.append(f"{'-' if d < 0 else ''}{symbol}{abs(d):,}")
    return out


def _budget_rule(value: float, label: str) -> list[alt.Chart]:
    frame = pd.DataFrame({"y": [value], "label": [label]})
    said = f"budget line: {label}"  # not the float it is drawn at
    rule = (
        alt.Chart(frame)
        .mark_rule(color=BUDGET, strokeDash=[8, 4], strokeWidth=1.5, description=said)
        .encode(y="y:Q", tooltip=[alt.Tooltip("label:N", title="budget")])
    )
    text = (
        alt.Chart(frame)
        .mark_text(color=BUDGET, align="left", x=4, dy=-7, description=said)
        .encode(y="y:Q", text="label:N")
    )
    return [rule, text]


def _exhausted_rule(day: date) -> list[alt.Chart]:
    frame = pd.DataFrame({"ds": [pd.Timestamp(day)], "label": [f"runs out {day:%d %b}"]})
    said = f"budget runs out {day:%d %b %Y}"
    rule = (
        alt.Chart(frame)
        .mark_rule(color=EXHAUSTED, strokeWidth=2, description=said)
        .encode(x=_x(), tooltip=[alt.Tooltip("label:N", title="budget")])
    )
    text = (
        alt.Chart(frame)
        .mark_text(color=EXHAUSTED, align="left", dx=4, dy=8, baseline="top", y=0, description=said)
        .encode(x=_x(), text="label:N")
    )
    return [rule, text]


ANOMALY_MARK: dict[str, Any] = {
    "shape": "diamond",
    "size": 120,
    "filled": True,
    "color": ANOMALY,
    "stroke": "white",
    "strokeWidth": 1,
}
ANOMALY_TIPS = (  # field, title
    ("when", "anomaly"),
    ("what", "series"),
    ("ratio", "x baseline"),
    ("excess", "above expected"),
    ("culprits", "top contributors"),
)


def anomaly_layer(
    marks: pd.DataFrame,
    *,
    x: str = "ds",
    scale: alt.Scale | None = None,
) -> alt.Chart:
    """Red points with a tooltip: when, what, x baseline, amount above expected, culprits.
    ``marks`` columns: ds (or ``x``), amount, what, when, ratio, excess, culprits and
    description (the point's screen-reader label)."""
    axis = alt.X(f"{x}:T", title=None, scale=scale or alt.Undefined)
    return (
        alt.Chart(marks)
        .mark_point(**ANOMALY_MARK)
        .encode(
            x=axis,
            y=alt.Y("amount:Q"),
            description="description:N",
            tooltip=[alt.Tooltip(f"{f}:N", title=t) for f, t in ANOMALY_TIPS],
        )
    )


def mark_anomalies(spec: dict[str, Any], marks: pd.DataFrame) -> dict[str, Any]:
    """The Overview's ``spend_over_time`` spec with anomaly points on its time panel (x is
    the period, y the period's total). Returned unchanged when there is nothing to mark."""
    if marks.empty:
        return spec
    time, *rest = spec["vconcat"]
    size = {"height": time["height"], "width": time["width"]}  # on the layer, not its parts
    bars = {k: v for k, v in time.items() if k not in size}
    points = {
        "data": {"name": "marks"},
        "mark": {"type": "point", **ANOMALY_MARK},
        "encoding": {
            "x": {"field": "period", "type": "temporal", "title": None, "scale": {"type": "utc"}},
            "y": {"field": "amount", "type": "quantitative"},
            "description": {"field": "description", "type": "nominal"},
            "tooltip": [{"field": f, "type": "nominal", "title": t} for f, t in ANOMALY_TIPS],
        },
    }
    return {
        **spec,  # keeps the brush/legend params (on the top level) and the styling
        "datasets": {**spec["datasets"], "marks": marks},
        "vconcat": [{"layer": [bars, points], **size}, *rest],
        # a layer in a vconcat sizes its "container" width without the axis: fit the whole
        # chart to the column instead (the newest days were cut off by ~140 px)
        "autosize": {"type": "fit-x", "contains": "padding"},
    }
