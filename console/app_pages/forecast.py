"""Forecast: where spend is heading, when each budget runs out, what was unusual and who
caused it, and what could be saved."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import streamlit as st

from console import auth, chrome, editor
from console.charts.forecast import forecast_chart
from console.frames import forecast as frames
from console.inputs import routing as routing_inputs
from console.queries import budgets as budget_queries
from console.queries import forecast as queries
from console.queries import routing as routing_queries
from console.queries import usage
from console.selection import FILTER_DIMS, Selection
from console.sidebar import LABELS, current_selection
from core import reports
from core.errors import ConfigError
from core.insights import Advice, AdviceReport, BudgetOutlook, Finding, Forecast

DIMENSIONS = {
    "total": "Total",
    **{d: LABELS[d] for d in ("org", "project", "model", "provider", "task")},
}
PAGE_DIR = Path(__file__).parent
PAGES = {"routing": "app_pages/routing.py", "budgets": "app_pages/budgets.py"}
PAGE_TITLES = {"routing": "Routing & Sampling", "budgets": "Budgets"}
NO_HOLIDAYS = "(none)"


def main() -> None:
    selection = current_selection()
    st.title("Forecast")
    st.caption(
        f"{selection.describe()} · forecasts fit every complete day under the sidebar"
        " filters; anomalies and advice follow the time range"
    )
    home, version = usage.home(), usage.version()
    dimension, value, horizon, width, holidays = controls(selection)
    if dimension != "total" and value is None:
        st.info(f"No {DIMENSIONS[dimension].lower()} has any spend yet.")
        return
    try:
        fc = queries.forecast(
            home,
            version,
            selection.scope,
            dimension,
            value,
            horizon,
            holidays,
            queries.today(selection.scope),
        )
    except ConfigError as exc:
        st.error(str(exc))
        return
    now = queries.now_slot()
    plane_version = auth.plane().version()
    at = budget_queries.utilisation_now()  # one instant for the chart and the table
    outlooks = queries.outlook(home, version, plane_version, at, int(width) / 100, holidays)
    found = queries.findings(home, version, selection.scope.tz, selection.scope.start, now)
    forecast_section(fc, selection, dimension, value, width, outlooks, found)
    backtest_section(fc)
    exhaustion_section(outlooks, selection, width, at)
    anomalies_section(found, selection)
    advice_section(queries.advice(home, version, plane_version, selection.scope, now), selection)


def controls(selection: Selection) -> tuple[str, str | None, int, str, str | None]:
    cols = st.columns([1.1, 1.6, 1.6, 0.9, 1.1])
    dimension = cols[0].selectbox(
        "Forecast", list(DIMENSIONS), format_func=DIMENSIONS.get, key="fc_dim"
    )
    value = None
    if dimension != "total":
        options = queries.values(usage.home(), usage.version(), selection.scope, dimension)
        value = cols[1].selectbox(
            DIMENSIONS[dimension], options, key=f"fc_value_{dimension}", help="Largest spend first"
        )
    horizon = cols[2].slider("Horizon (days)", 7, 180, 30, key="fc_horizon")
    width = (
        cols[3].segmented_control(
            "Interval", ["80", "95"], default="80", format_func=lambda w: f"{w}%", key="fc_interval"
        )
        or "80"
    )
    return dimension, value, int(horizon), width, holidays_control(cols[4])


def holidays_control(col) -> str | None:  # type: ignore[no-untyped-def]
    try:
        import holidays  # Prophet's own dependency
    except ImportError:
        return None
    stored = auth.plane().get_setting("holidays_country", None)
    codes = sorted(holidays.list_supported_countries())
    options = [NO_HOLIDAYS, *codes]
    if "fc_holidays" not in st.session_state:
        st.session_state["fc_holidays"] = stored if stored in codes else NO_HOLIDAYS
    picked = col.selectbox(
        "Holidays",
        options,
        key="fc_holidays",
        help="Public holidays of a country as extra regressors (setting"
        " 'holidays_country' picks the default)",
    )
    return None if picked == NO_HOLIDAYS else str(picked)


# ---- forecast chart ------------------------------------------------------------------------


def _matching(
    outlooks: list[BudgetOutlook],
    dimension: str,
    value: str | None,
) -> list[BudgetOutlook]:
    scope = "global" if dimension == "total" else dimension
    return [
        o
        for o in outlooks
        if o.exhaustion is not None
        and o.budget.scope == scope
        and (scope == "global" or o.budget.scope_value == value)
    ]


def forecast_section(
    fc: Forecast,
    selection: Selection,
    dimension: str,
    value: str | None,
    width: str,
    outlooks: list[BudgetOutlook],
    found: list[Finding],
) -> None:
    money = selection.money
    future = fc.future
    if fc.method == "run_rate":
        rate = money.fmt(int(round(float(future["yhat"].iloc[0]) * 10**12)))
        st.warning(
            f"Not enough history for a forecast: {fc.message}.", icon=":material/hourglass_empty:"
        )
        st.metric(
            "Run-rate projection",
            f"{rate} / day",  # to the cent, half a cent up, as every other figure
            help="Mean daily spend of the last (up to) 7 complete days, carried flat",
        )
    elif fc.message:
        st.caption(fc.message)
    summary(fc, money, width)
    names = {o.budget.id: o for o in _matching(outlooks, dimension, value)}
    chosen, mode = None, "Daily"
    left, right = st.columns([2, 1])
    if names:
        picked = left.selectbox(
            "Budget line",
            [*names, ""],
            key=f"fc_budget_{dimension}_{value}",
            format_func=lambda i: names[i].budget.name if i else "None",
            help="Budgets whose scope is this series",
        )
        chosen = names.get(picked) if picked else None
    else:
        left.caption(
            "No budget covers exactly this series: pick an org, project, model or"
            " provider with a budget (or add a global one) to see its line."
        )
    if chosen is not None:
        mode = (
            right.segmented_control("Show", ["Daily", "Cumulative"], default="Daily", key="fc_mode")
            or "Daily"
        )
    st.altair_chart(
        chart(fc, selection, dimension, value, width, chosen, mode, found), width="stretch"
    )
    st.caption(
        "Dashed blue: forecast with its interval band · red diamonds: anomalies (hover"
        " for who caused them) · dotted grey: trend changes · red rule: budget runs out"
    )
    label = value or "total"
    st.download_button(
        "Download forecast (CSV)",
        frames.csv_bytes(fc, money),
        file_name=f"costline-forecast-{dimension}-{label}.csv",
        mime="text/csv",
        key="fc_download",
        icon=":material/download:",
    )


def chart(
    fc: Forecast,
    selection: Selection,
    dimension: str,
    value: str | None,
    width: str,
    chosen: BudgetOutlook | None,
    mode: str,
    found: list[Finding],
):  # type: ignore[no-untyped-def]
    money = selection.money
    series = frames.series_frame(fc, money, width)
    marks = frames.marks_frame(found, series, money, selection.scope, dimension, value)
    budget, label, exhausted, title, drawn = None, "", None, "", fc
    if chosen is not None and chosen.exhaustion is not None and chosen.limit_usd is not None:
        # the budget counts its whole scope: under sidebar filters (a user, a model...) its
        # line is drawn on the scope's own series, and the title says so
        narrowed = any(getattr(selection.scope, d) for d in FILTER_DIMS)
        if narrowed:
            title = (
                f"{chosen.budget.name}: its whole scope ({chosen.scope}), the sidebar filters"
                " not applied (the budget counts every call of its scope)"
            )
        ex = chosen.exhaustion
        exhausted = ex.date if not ex.already_exceeded else None
        limit = float(money.amount(int(chosen.limit_usd * 10**12)))
        if mode == "Cumulative":
            series = frames.cumulative_frame(chosen, money, width)
            marks = marks.iloc[0:0]
            label = f"{chosen.budget.name}: {money.fmt(int(chosen.limit_usd * 10**12))}"
            budget = limit
        else:
            pace = int(chosen.limit_usd * 10**12 / Decimal(str(frames.counted_days(chosen))))
            budget = float(money.amount(pace))
            label = f"budget pace {money.fmt(pace)}/day"
            if narrowed and chosen.forecast is not None:
                drawn = chosen.forecast
                series = frames.series_frame(drawn, money, width)
                marks = marks.iloc[0:0]  # the anomalies found follow the sidebar's series
    return forecast_chart(
        series,
        symbol=money.symbol,
        band=f"{width}%",
        budget=budget,
        budget_label=label,
        exhausted=exhausted,
        marks=marks,
        changepoints=frames.changepoint_frame(drawn),
        title=title,
    )


def summary(fc: Forecast, money, width: str) -> None:  # type: ignore[no-untyped-def]
    fut = fc.future
    hist = fc.frame[fc.frame["is_history"]]

    def fmt(usd: float) -> str:
        return money.fmt(int(round(usd * 10**12)))

    cols = st.columns(3)
    total = float(fut["yhat"].sum())
    low, high = float(fut[f"lower_{width}"].sum()), float(fut[f"upper_{width}"].sum())
    cols[0].metric(
        f"Forecast, next {len(fut)} days",
        fmt(total),
        help=f"Sum of the daily forecasts; sum of the daily {width}% bounds:"
        f" {fmt(low)} – {fmt(high)}",
    )
    cols[1].metric("Forecast per day", fmt(total / max(len(fut), 1)))
    last7 = float(hist["y"].tail(7).mean()) if len(hist) else 0.0
    cols[2].metric("Actual per day, last 7 days", fmt(last7))


# ---- tables --------------------------------------------------------------------------------


def backtest_section(fc: Forecast) -> None:
    st.subheader("How good is this forecast?")
    if fc.backtest is None:
        st.caption(frames.verdict(None).capitalize() + ".")
        return
    chrome.table(frames.backtest_frame(fc.backtest), width="stretch")
    text = frames.verdict(fc.backtest)
    good = fc.backtest.beats_naive
    (st.success if good else st.warning)(text[0].upper() + text[1:] + ".")
    st.caption(
        f"Refitted without the last {fc.backtest.holdout_days} days and scored on them;"
        " the naive forecast repeats the last week. Coverage: share of held-out days"
        " inside the interval."
    )


def exhaustion_section(
    outlooks: list[BudgetOutlook], selection: Selection, width: str, at: datetime
) -> None:
    st.subheader("Budgets: when do they run out?")
    if not outlooks:
        st.info("No budgets yet.")
        link("budgets")
        return
    plane = auth.plane()
    shared = budget_queries.utilisation(
        usage.home(),
        usage.version(),
        plane.version(),
        tuple(o.budget for o in outlooks),
        at,
    )
    st.dataframe(
        frames.outlook_frame(outlooks, selection.money, width, {u.budget.id: u for u in shared}),
        hide_index=True,
        width="stretch",
        key="fc_outlook",
    )
    st.caption(
        f"{reports.METHOD} The Budgets page and the Playground show the same figures."
        f" The forecast model's columns fit the budget's scope with Prophet (range from its"
        f" {width}% bounds), whatever the sidebar filters."
    )


def anomalies_section(found: list[Finding], selection: Selection) -> None:
    st.subheader("Anomalies")
    since = selection.scope.start
    if not found:
        st.info("No unusual spend or traffic in this time range.")
        return
    grain = (
        st.segmented_control("Grain", ["all", "day", "hour"], default="all", key="fc_an_grain")
        or "all"
    )
    shown = [
        f
        for f in found
        if (grain == "all" or f.grain == grain)
        and f.key in (getattr(selection.scope, f.dimension) or (f.key,))
    ]  # sidebar filters
    st.dataframe(frames.findings_frame(shown, selection.money), hide_index=True, width="stretch")
    first = since.astimezone(ZoneInfo(selection.scope.tz))
    st.caption(
        f"{len(found)} anomalies since {first:%d %b %Y}, per org and per model, daily and"
        " hourly, in spend and in calls; each is recorded once as an 'anomaly' alert."
    )


def advice_section(report: AdviceReport, selection: Selection) -> None:
    st.subheader("Savings advice")
    money = selection.money
    if not report.items:
        st.info("No savings found in the last 30 days.")
    else:
        total = money.fmt(int(report.total_monthly_saving_usd * 10**12))
        st.markdown(f"About **{total} a month** could be saved:")
    for i, item in enumerate(report.items):
        with st.container(border=True):
            left, right = st.columns([4, 1])
            left.markdown(f"**{item.title}**")
            left.caption(item.detail)
            right.metric(
                "Saving / month",
                money.fmt(int(item.monthly_saving_usd * 10**12)),
                help=f"Confidence: {item.confidence}",
            )
            with left:
                if item.link == "routing" and editor_ok():
                    apply_button(item, i)
                else:
                    link(item.link)
    for kind, why in report.skipped.items():
        st.caption(f"{kind.replace('_', ' ').capitalize()}: not analysed ({why}).")


def editor_ok() -> bool:
    actor = auth.current_actor()
    return actor is not None and auth.may(actor, "engineer")


def apply_button(item: Advice, i: int) -> None:
    """Opens Routing & Sampling with the policy or cache setting the advice proposes filled in
    (nothing is saved until the engineer presses Save there)."""
    if st.button(
        "Apply on Routing & Sampling", key=f"fc_apply_{i}", icon=":material/arrow_forward:"
    ):
        plane = auth.plane()
        proposed = routing_inputs.proposal(
            item, plane.policies(), plane.cache_settings(), routing_queries.provider_of
        )
        for key, value in proposed.state(editor.NEW).items():
            st.session_state[key] = value
        st.switch_page(PAGES["routing"])


def link(kind: str) -> None:
    """A link to the editor where advice is applied (once that page exists)."""
    path = PAGES.get(kind, PAGES["routing"])
    title = PAGE_TITLES.get(kind, "Routing & Sampling")
    if (PAGE_DIR / Path(path).name).exists():
        st.page_link(path, label=f"Apply on {title}", icon=":material/arrow_forward:")
    else:
        st.caption(f"Apply it on the {title} page.")


main()
