"""Overview: what we spent, on what, and what Costline saved (finance KPIs and charts)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from console import chrome
from console.charts import spend as charts
from console.charts.forecast import mark_anomalies
from console.frames import overview as frames
from console.frames.forecast import overview_marks
from console.queries import overview as queries
from console.queries import usage
from console.queries.forecast import now_slot, spend_day_findings
from console.queries.overview import Spend, Totals
from console.selection import Money, Selection, change
from console.sidebar import current_selection
from core import clock

DIMENSIONS = ["model", "provider", "org", "project", "task", "user", "key", "tag"]
GRAINS = ["day", "week", "month"]
SHORT_GRAINS = ["minute", "hour", "day"]  # a range of two days or less
SHORT_RANGE = timedelta(days=2)


def main() -> None:
    selection = current_selection()
    st.title("Overview")
    st.caption(selection.describe())
    home, version = usage.home(), usage.version()
    note = queries.coverage(home, version, selection.scope).note()
    if note:
        st.info(note.capitalize() + ".", icon=":material/history:")
    now = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    figures = st.container()  # the KPIs go on top; they come from the chart's query
    grain, dim = chart_controls(selection)
    spend = queries.spend(home, version, selection.scope, dim, grain)
    # Each part goes out as soon as its data is there, so the browser draws it while the
    # next query runs: the KPIs and the unit cost first, then the spend chart (the heaviest
    # to draw; it waits for the anomaly scan), the top spenders last (one short query).
    with figures:
        chrome.unpriced_notice(spend.totals.unpriced)  # counted by the spend query
        spend_row(
            queries.window_spend(home, version, selection.scope, now), spend.totals, selection.money
        )
        activity_row(spend.totals, selection.money)
    chart = st.container()
    left, right = st.columns(2)
    with right:
        cost_per_1k(spend.periods, selection.money, grain)
    with chart:
        spend_chart(spend, selection, dim, grain)
    with left:
        top_spenders(selection)


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
        help="The last 30 days in the time zone, today included (the 'Last 30 days' range),"
        " under the filters; compared with the 30 days before, to the same time of day",
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


def grains_for(selection: Selection) -> tuple[list[str], str]:
    """The grains a range supports, and the default: minutes and hours for two days or less."""
    if selection.scope.end - selection.scope.start <= SHORT_RANGE:
        return SHORT_GRAINS, "hour"
    return GRAINS, "day"


def chart_controls(selection: Selection) -> tuple[str, str]:
    left, right = st.columns([1, 1])
    grains, default = grains_for(selection)
    key = "ov_grain_short" if grains is SHORT_GRAINS else "ov_grain"
    grain = left.segmented_control("Grain", grains, default=default, key=key) or default
    dim = right.selectbox("Stack by", DIMENSIONS, key="ov_dim")
    return grain, dim


@st.fragment
def spend_chart(spend: Spend, selection: Selection, dim: str, grain: str) -> None:
    """A fragment: brushing periods reruns only this part, which sends the breakdown of the
    brushed periods, summed exactly from the picodollars (the browser sums nothing)."""
    st.subheader("Spend over time")
    series = spend.series
    if series.empty:
        st.info("No spend in this range.")
        return
    key = frames.chart_key(selection.scope, dim, grain)
    window = charts.brushed(st.session_state.get(key))
    frame = frames.series_frame(series, selection.money, grain, spend.periods)
    breakdown = frames.breakdown_frame(frame, selection.money, window)
    chart = charts.spend_over_time(frame, breakdown, dim, grain, selection.money.symbol)
    found = spend_day_findings(
        usage.home(), usage.version(), selection.scope.tz, selection.scope.start, now_slot()
    )
    marks = overview_marks(frame, found, selection.money, grain, selection.scope)
    st.vega_lite_chart(
        mark_anomalies(chart, marks),
        width="stretch",
        on_select="rerun",
        selection_mode=[charts.BRUSH],
        key=key,
    )
    st.caption(
        f"Chart total {selection.money.fmt(frames.total_pico(spend.periods))} · drag across periods"
        " to filter the breakdown; click a legend entry to highlight it."
    )


def top_spenders(selection: Selection) -> None:
    st.subheader("Top spenders")
    who = st.segmented_control("By", queries.TOP_WHO, default="user", key="ov_top") or "user"
    top = queries.top_spenders(usage.home(), usage.version(), selection.scope, who)
    if top.empty:
        st.info("No spend in this range.")
        return
    frame = frames.top_frame(top, selection.money)
    st.vega_lite_chart(
        charts.top_bars(frame, f"Top {who}s", selection.money.symbol), width="stretch"
    )


def cost_per_1k(series: pd.DataFrame, money: Money, grain: str) -> None:
    st.subheader("Unit cost")
    frame = frames.per_1k_frame(series, money, grain)
    if frame.empty:
        st.info("No requests in this range.")
        return
    st.vega_lite_chart(charts.cost_per_1k(frame, grain, money.symbol), width="stretch")


def _compact(n: int) -> str:
    for size, unit in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n / size:,.1f}{unit}"
    return f"{n:,}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


main()
