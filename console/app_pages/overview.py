"""Overview: what we spent, on what, and what Costline saved (finance KPIs and charts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from console import charts, data, forecast_charts, forecast_data, shape
from console.data import Totals
from console.sidebar import current_view
from console.view import Money, View, change

DIMENSIONS = ["model", "provider", "org", "project", "task", "user"]
GRAINS = ["day", "week", "month"]
SHORT_GRAINS = ["minute", "hour", "day"]  # a range of two days or less
SHORT_RANGE = timedelta(days=2)


def main() -> None:
    view = current_view()
    st.title("Overview")
    st.caption(view.describe())
    home, version = data.home(), data.version()
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    figures = st.container()  # the KPIs go on top; they come from the chart's query
    grain, dim = chart_controls(view)
    spend = data.spend(home, version, view.scope, dim, grain)
    with figures:
        spend_row(data.window_spend(home, version, view.scope, now), spend.totals, view.money)
        activity_row(spend.totals, view.money)
    spend_chart(spend.series, view, dim, grain)
    left, right = st.columns(2)
    with left:
        top_spenders(view)
    with right:
        cost_per_1k(spend.series, view.money, grain)


def spend_row(spend: dict[str, int], k: Totals, money: Money) -> None:
    cols = st.columns(4)
    cols[0].metric(
        "Spend today",
        money.fmt(spend["today"]),
        change(spend["today"], spend["yesterday"]),
        delta_color="inverse",
        help="Since local midnight, compared with yesterday up to the same time",
    )
    cols[1].metric(
        "Month to date",
        money.fmt(spend["mtd"]),
        change(spend["mtd"], spend["prev_mtd"]),
        delta_color="inverse",
        help="Compared with the same part of last month",
    )
    cols[2].metric(
        "Last 30 days",
        money.fmt(spend["last30"]),
        change(spend["last30"], spend["prev30"]),
        delta_color="inverse",
        help="Compared with the 30 days before",
    )
    cols[3].metric(
        "Spend in range",
        money.fmt(k.cost),
        help="Everything in the selected time range and filters",
    )


def activity_row(k: Totals, money: Money) -> None:
    cols = st.columns(6)
    cols[0].metric("Requests", f"{k.requests:,}")
    cols[1].metric("Tokens", _compact(k.tokens), help=f"{k.tokens:,} tokens")
    avg = "–" if k.avg_cost is None else money.fmt(k.avg_cost, places=4)
    cols[2].metric("Avg cost / request", avg)
    cols[3].metric("Cache hit rate", _pct(k.rate(k.cache_hits)))
    saved_help = (
        f"Cache {money.fmt(k.saved_cache)} · sampling {money.fmt(k.saved_sampling)}"
        f" · routing {money.fmt(k.saved - k.saved_cache - k.saved_sampling)}"
    )
    cols[4].metric("Saved", money.fmt(k.saved), help=saved_help)
    cols[5].metric("Error rate", _pct(k.rate(k.errors)))


def grains_for(view: View) -> tuple[list[str], str]:
    """The grains a range supports, and the default: minutes and hours for two days or less."""
    if view.scope.end - view.scope.start <= SHORT_RANGE:
        return SHORT_GRAINS, "hour"
    return GRAINS, "day"


def chart_controls(view: View) -> tuple[str, str]:
    left, right = st.columns([1, 1])
    grains, default = grains_for(view)
    key = "ov_grain_short" if grains is SHORT_GRAINS else "ov_grain"
    grain = left.segmented_control("Grain", grains, default=default, key=key) or default
    dim = right.selectbox("Stack by", DIMENSIONS, key="ov_dim")
    return grain, dim


def spend_chart(series: pd.DataFrame, view: View, dim: str, grain: str) -> None:
    st.subheader("Spend over time")
    if series.empty:
        st.info("No spend in this range.")
        return
    frame = shape.series_frame(series, view.money, grain)
    chart = charts.spend_over_time(frame, dim, grain, view.money.symbol)
    found = forecast_data.findings(
        data.home(), data.version(), view.scope.tz, view.scope.start, forecast_data.now_slot()
    )
    marks = forecast_data.overview_marks(frame, found, view.money, grain, view.scope)
    st.altair_chart(forecast_charts.mark_anomalies(chart, marks), width="stretch")
    st.caption(
        f"Chart total {view.money.fmt(shape.total_pico(series))} · drag across periods"
        " to filter the breakdown; click a legend entry to highlight it."
    )


def top_spenders(view: View) -> None:
    st.subheader("Top spenders")
    who = st.segmented_control("By", data.TOP_WHO, default="user", key="ov_top") or "user"
    top = data.top_spenders(data.home(), data.version(), view.scope, who)
    if top.empty:
        st.info("No spend in this range.")
        return
    frame = shape.top_frame(top, view.money)
    st.altair_chart(charts.top_bars(frame, f"Top {who}s", view.money.symbol), width="stretch")


def cost_per_1k(series: pd.DataFrame, money: Money, grain: str) -> None:
    st.subheader("Unit cost")
    frame = shape.per_1k_frame(series, money, grain)
    if frame.empty:
        st.info("No requests in this range.")
        return
    st.altair_chart(charts.cost_per_1k(frame, grain, money.symbol), width="stretch")


def _compact(n: int) -> str:
    for size, unit in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n / size:,.1f}{unit}"
    return f"{n:,}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


main()
