"""Spend charts (Overview, Requests): pure functions from a DataFrame to an Altair chart.

Amounts arrive as a float column ``amount`` in the display currency (exact sums converted
once, for drawing only); tooltips format them with the currency symbol.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from console.charts.style import (
    ACCENT,
    BAR_STEP,
    DATE_FORMAT,
    HEIGHT,
    LABELS,
    MUTED,
    SCHEME,
    SMALL_HEIGHT,
    colours,
    style,
)


def time_axis(grain: str) -> alt.Axis:
    """One tick per period at most (never "01 Dec 01 Dec" or "Sep 2026" four times), the
    labels that would overlap dropped, the year shown (DATE_FORMAT)."""
    return alt.Axis(
        format=DATE_FORMAT.get(grain, "%d %b"),
        tickCount={"interval": grain, "step": 1},
        labelOverlap="greedy",
    )


def spend_over_time(df: pd.DataFrame, dim: str, grain: str, symbol: str) -> alt.VConcatChart:
    """Stacked spend bars per period (x = period start to end), linked to a breakdown by
    ``dim``: brushing periods filters the breakdown; clicking a breakdown bar or a legend
    entry highlights that value in both.

    ``df`` columns: period, period_end, label, key, amount, requests."""
    brush = alt.selection_interval(encodings=["x"], name="periods")
    pick = alt.selection_point(fields=["key"], bind="legend", name="pick")
    base = alt.Chart(df).transform_joinaggregate(period_total="sum(amount)", groupby=["period"])
    domain, palette = colours(list(df["key"].unique()))
    color = alt.Color(
        "key:N",
        title=dim.replace("_", " "),
        scale=alt.Scale(domain=domain, range=palette),
        legend=alt.Legend(columns=5, symbolLimit=0, labelLimit=160),
    )
    tooltip = [
        alt.Tooltip("label:N", title="period"),
        alt.Tooltip("key:N", title=dim),
        alt.Tooltip("amount:Q", title=f"spend ({symbol.strip()})", format=",.2f"),
        alt.Tooltip("period_total:Q", title=f"period total ({symbol.strip()})", format=",.2f"),
        alt.Tooltip("requests:Q", title="requests", format=","),
    ]
    time = (
        base.mark_bar()
        .encode(
            x=alt.X(
                "period:T",
                title=None,
                scale=alt.Scale(type="utc"),
                axis=time_axis(grain),
            ),
            x2="period_end:T",
            y=alt.Y("sum(amount):Q", title=f"spend ({symbol.strip()})", stack="zero"),
            color=alt.condition(pick, color, alt.value(MUTED)),
            order=alt.Order("key:N"),
            tooltip=tooltip,
        )
        .add_params(brush)
        .properties(height=HEIGHT, width="container")
    )
    breakdown = (
        base.mark_bar()
        .encode(
            y=alt.Y("key:N", sort="-x", title=None, axis=LABELS),
            x=alt.X("sum(amount):Q", title=f"spend in selected periods ({symbol.strip()})"),
            color=alt.condition(pick, color, alt.value(MUTED)),
            tooltip=[
                alt.Tooltip("key:N", title=dim),
                alt.Tooltip("sum(amount):Q", title="spend", format=",.2f"),
                alt.Tooltip("sum(requests):Q", title="requests", format=","),
            ],
        )
        .add_params(pick)
        .transform_filter(brush)
        .properties(height=alt.Step(BAR_STEP), width="container")
    )
    both: alt.VConcatChart = alt.vconcat(time, breakdown).resolve_scale(color="shared")
    return style(both)


def top_bars(df: pd.DataFrame, title: str, symbol: str) -> alt.LayerChart:
    """Horizontal bars of the top spenders with each amount written beside its bar;
    ``df`` columns: name, amount, requests."""
    df = df.assign(shown=[f"{symbol}{a:,.2f}" for a in df["amount"]])
    base = alt.Chart(df, title=title).encode(
        y=alt.Y("name:N", sort="-x", title=None, axis=LABELS),
        x=alt.X(
            "amount:Q",
            title=f"spend ({symbol.strip()})",
            scale=alt.Scale(domainMax=float(df["amount"].max() or 0) * 1.25 or 1),
        ),
        tooltip=[
            alt.Tooltip("name:N", title=title.lower()),
            alt.Tooltip("amount:Q", title="spend", format=",.2f"),
            alt.Tooltip("requests:Q", format=","),
        ],
    )
    bars = base.mark_bar(color=ACCENT)
    text = base.mark_text(align="left", dx=4, fontSize=12).encode(text="shown:N")
    chart: alt.LayerChart = alt.layer(bars, text).properties(
        height=alt.Step(BAR_STEP), width="container"
    )
    return style(chart)


def cost_per_1k(df: pd.DataFrame, grain: str, symbol: str) -> alt.Chart:
    """Line of the cost per 1,000 requests; ``df`` columns: period, label, per_1k, requests."""
    chart: alt.Chart = (
        alt.Chart(df, title="Cost per 1K requests")
        .mark_line(point=True, color=ACCENT)
        .encode(
            x=alt.X(
                "period:T",
                title=None,
                scale=alt.Scale(type="utc"),
                axis=time_axis(grain),
            ),
            y=alt.Y("per_1k:Q", title=f"{symbol.strip()} per 1K requests"),
            tooltip=[
                alt.Tooltip("label:N", title="period"),
                alt.Tooltip("per_1k:Q", title="per 1K requests", format=",.4f"),
                alt.Tooltip("requests:Q", format=","),
            ],
        )
        .properties(height=SMALL_HEIGHT, width="container")
    )
    return style(chart)


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
