"""The Forecast page's frames (pure pandas, display currency): the forecast and cumulative
series, anomaly marks (also on the Overview's chart), and the backtest, anomaly and budget
exhaustion tables."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd

from console.frames import budgets as budget_frames
from console.frames.overview import next_period
from console.selection import Money, Scope
from core.export import escape_frame
from core.insights import Backtest, BudgetOutlook, Finding, Forecast, local_midnight
from core.reports import Utilisation, percent_text


def series_frame(fc: Forecast, money: Money, label: str) -> pd.DataFrame:
    """ds, actual, yhat, lower, upper in the display currency (``label``: '80' or '95')."""
    f = fc.frame
    rate = float(Decimal(money.rate))
    fut = ~f["is_history"]
    out = pd.DataFrame(
        {
            "ds": f["ds"],
            "actual": f["y"].where(f["is_history"]) * rate,
            "yhat": f["yhat"].where(fut) * rate,
            "lower": f[f"lower_{label}"].where(fut) * rate,
            "upper": f[f"upper_{label}"].where(fut) * rate,
        }
    )
    hist = f.index[f["is_history"]]
    if len(hist) and fut.any():  # the forecast line and band start at the last actual day
        out.loc[hist[-1], ["yhat", "lower", "upper"]] = out.loc[hist[-1], "actual"]
    return out


def counted_days(o: BudgetOutlook) -> float:
    """Days the budget's limit is spread over: its window, from the last reset when it was
    reset in it (the pace at which the run rate ends the window at the limit)."""
    end = local_midnight(o.end + timedelta(days=1), o.budget.timezone or "UTC")
    since = o.since or local_midnight(o.start, o.budget.timezone or "UTC")
    return max((end - since) / timedelta(days=1), 1 / 24)


def cumulative_frame(o: BudgetOutlook, money: Money, label: str) -> pd.DataFrame:
    """The budget window, cumulative: what it counted through yesterday (from its start or
    last reset), then spent-so-far plus the forecast (the same numbers as the exhaustion
    table and the Budgets page)."""
    assert o.forecast is not None
    f = o.forecast.frame
    day = f["ds"].dt.date
    inside = (day >= o.start) & (day <= o.end)
    fut = f[inside & ~f["is_history"]]
    hist = o.counted if o.counted is not None else f[inside & f["is_history"]]
    rate = float(Decimal(money.rate))
    spent = float(o.spent_usd)
    past = pd.DataFrame({"ds": hist["ds"], "actual": hist["y"].cumsum() * rate})
    ahead = pd.DataFrame(
        {
            "ds": fut["ds"],
            "yhat": (spent + fut["yhat"].cumsum()) * rate,
            "lower": (spent + fut[f"lower_{label}"].cumsum()) * rate,
            "upper": (spent + fut[f"upper_{label}"].cumsum()) * rate,
        }
    )
    if len(past):  # the forecast starts where the actual line ends
        for col in ("yhat", "lower", "upper"):
            past.loc[past.index[-1], col] = past["actual"].iloc[-1]
    return pd.concat([past, ahead], ignore_index=True)


def changepoint_frame(fc: Forecast) -> pd.DataFrame:
    return pd.DataFrame({"ds": pd.to_datetime(list(fc.changepoints))})


def _ratio(a: Any) -> str:
    return "new" if math.isinf(a.ratio) else f"{a.ratio:.1f}x"


def _excess(fd: Finding, money: Money) -> str:
    if fd.metric == "requests":
        return f"+{fd.anomaly.excess_usd:,.0f} calls"
    return "+" + money.fmt(int(round(fd.anomaly.excess_usd * 10**12)))


ANOMALY_COLUMNS = ["when", "what", "ratio", "excess", "culprits", "description"]


def _anomaly(fd: Finding, what: str, money: Money) -> dict[str, str]:
    """An anomaly point's tooltip texts and its screen-reader label (the point's ARIA
    description: Vega-Lite's own read the float it is drawn at)."""
    texts = {
        "when": fd.when,
        "what": what,
        "ratio": _ratio(fd.anomaly),
        "excess": _excess(fd, money),
        "culprits": fd.culprits() or "–",
    }
    texts["description"] = (
        f"anomaly {texts['when']} · {what} · {texts['ratio']} baseline"
        f" · {texts['excess']} above expected · top contributors: {texts['culprits']}"
    )
    return texts


def _matches(fd: Finding, scope: Scope, dimension: str, value: str | None) -> bool:
    """Does the finding belong to the charted series? Total: everything the sidebar keeps."""
    if dimension == fd.dimension:
        return value == fd.key
    chosen = getattr(scope, fd.dimension, ())
    return dimension == "total" and (not chosen or fd.key in chosen)


def marks_frame(
    found: list[Finding],
    series: pd.DataFrame,
    money: Money,
    scope: Scope,
    dimension: str,
    value: str | None,
) -> pd.DataFrame:
    """Daily spend anomalies of the charted series, on its actual line (one point a day)."""
    actual = series.set_index(series["ds"].dt.date)["actual"]
    rows = []
    for fd in found:
        day = fd.ts.date()
        if (
            fd.grain != "day"
            or fd.metric != "spend"
            or day not in actual.index
            or not _matches(fd, scope, dimension, value)
        ):
            continue
        rows.append(
            {
                "ds": pd.Timestamp(day),
                "amount": float(actual[day]),
                **_anomaly(fd, f"{fd.metric} of {fd.subject}", money),
            }
        )
    frame = pd.DataFrame(rows, columns=["ds", "amount", *ANOMALY_COLUMNS])
    return frame.drop_duplicates("ds")


def overview_marks(
    period_frame: pd.DataFrame,
    found: list[Finding],
    money: Money,
    grain: str,
    scope: Scope | None = None,
) -> pd.DataFrame:
    """For the Overview's spend chart: each daily spend anomaly as a point on top of the bar
    of the period holding it (only series the sidebar's org/model filters keep).
    ``period_frame`` is console.frames.overview.series_frame output."""
    cols = ["period", "amount", *ANOMALY_COLUMNS]
    if period_frame.empty or not found:
        return pd.DataFrame(columns=cols)
    bars = period_frame.groupby("period").agg(amount=("amount", "sum"), end=("period_end", "first"))
    starts = pd.to_datetime(bars.index.to_series()).reset_index(drop=True)
    naive = starts.dt.tz_localize(None) if starts.dt.tz is not None else starts
    nexts = next_period(naive, grain)
    rows = []
    for fd in found:
        chosen = getattr(scope, fd.dimension, ()) if scope is not None else ()
        if fd.grain != "day" or fd.metric != "spend" or (chosen and fd.key not in chosen):
            continue
        inside = ((naive <= fd.ts) & (fd.ts < nexts)).to_numpy().nonzero()[0]
        if not len(inside):
            continue
        start, row = bars.index[inside[0]], bars.iloc[inside[0]]
        rows.append(
            {
                "period": start + (row["end"] - start) / 2,
                "amount": float(row["amount"]),
                **_anomaly(fd, f"spend of {fd.subject}", money),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def findings_frame(found: list[Finding], money: Money) -> pd.DataFrame:
    """The anomalies list: one row per finding with its top contributors."""
    rows = []
    for fd in found:
        a = fd.anomaly
        spend = fd.metric == "spend"
        exact = fd.spent_picousd if fd.spent_picousd is not None else int(round(a.value * 10**12))
        amount = money.fmt(exact) if spend else f"{a.value:,.0f} calls"
        usual = money.fmt(int(round(a.expected * 10**12))) if spend else f"{a.expected:,.0f}"
        top = {d: fd.top(d) for d in ("user", "model", "task", "org")}
        rows.append(
            {
                "top user": "–",
                "top model": "–",
                "top task": "–",
                "top org": "–",
                "when": fd.when,
                "grain": fd.grain,
                "series": fd.subject,
                "metric": fd.metric,
                "actual": amount,
                "expected": usual,
                "x baseline": _ratio(a),
                "above expected": _excess(fd, money),
                **{
                    f"top {d}": f"{c.value} ({c.share:.0%})" if c is not None else "–"
                    for d, c in top.items()
                    if d != fd.dimension
                },
            }
        )
    cols = [
        "when",
        "grain",
        "series",
        "metric",
        "actual",
        "expected",
        "x baseline",
        "above expected",
        "top user",
        "top model",
        "top task",
        "top org",
    ]
    return pd.DataFrame(rows, columns=cols)


def backtest_frame(bt: Backtest) -> pd.DataFrame:
    metric = bt.metric.upper()
    row: dict[str, Any] = {
        "held-out days": bt.holdout_days,
        f"forecast {metric}": _pct(bt.mape),
        f"naive weekly repeat {metric}": _pct(bt.naive_mape),
    }
    for lab, cov in sorted(bt.coverage.items(), key=lambda kv: float(kv[0])):
        row[f"{lab}% interval coverage"] = _pct(cov)
    row["verdict"] = verdict(bt)
    return pd.DataFrame([row])


def verdict(bt: Backtest | None) -> str:
    if bt is None:
        return "not enough history to backtest: treat as indicative"
    if bt.mape is None or bt.naive_mape is None:
        return "no spend in the held-out days to score: treat as indicative"
    if bt.naive_mape > 0 and bt.mape < bt.naive_mape:
        better = (bt.naive_mape - bt.mape) / bt.naive_mape
        return f"the forecast beats a naive weekly repeat by {better:.0%}: trust it"
    return "it does not beat a naive repeat: treat as indicative"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _day(d: date | None) -> str:
    return "–" if d is None else f"{d:%d %b %Y}"


def outlook_frame(
    outlooks: list[BudgetOutlook], money: Money, width: str, shared: Mapping[str, Utilisation]
) -> pd.DataFrame:
    """The exhaustion table, one row per budget: spent, projected, share and run-out date
    from the one projection every page uses (``shared``, ``core.reports.utilisation`` by
    budget id), then the forecast model's view of the same window."""
    rows = []
    for o in outlooks:
        u = shared.get(o.budget.id)
        ex = o.exhaustion
        limit = money.fmt(int(o.limit_usd * 10**12)) if o.limit_usd is not None else "–"
        row: dict[str, object] = {
            "budget": o.budget.name,
            "scope": o.scope,
            "window": o.window,
            "spent": money.table(u.spent_picousd) if u else money.table(_pico(o.spent_usd)),
            "limit": limit,
            "projected at window end": money.table(u.projected_spend_picousd) if u else "–",
            "vs limit": percent_text(u.projected_percent) if u else "–",
            "outlook": budget_frames.severity_text(u) if u else "–",
            "runs out": budget_frames.runs_out(u) if u else "–",
        }
        if ex is None:
            row.update({"forecast model at window end": "–", f"forecast {width}% run-out": "–"})
        else:
            rng = f"{_day(ex.earliest)} – {_day(ex.latest) if ex.latest else 'not reached'}"
            low, high = _pico(ex.projected_low_usd), _pico(ex.projected_high_usd)
            row.update(
                {
                    "forecast model at window end": (
                        f"{money.fmt(_pico(ex.projected_total_usd))}"
                        f" ({money.fmt(low)}–{money.fmt(high)})"
                    ),
                    f"forecast {width}% run-out": rng if ex.earliest else "not this window",
                }
            )
        row["note"] = o.note
        rows.append(row)
    return pd.DataFrame(rows)


def _pico(usd: Decimal) -> int:
    return int(usd * 10**12)


def csv_bytes(fc: Forecast, money: Money) -> bytes:
    """The forecast as CSV: every day, actual or forecast with both intervals, in the
    display currency."""
    f = fc.frame
    rate = float(Decimal(money.rate))
    out = pd.DataFrame(
        {
            "date": f["ds"].dt.strftime("%Y-%m-%d"),
            "kind": f["is_history"].map({True: "actual", False: "forecast"}),
        }
    )
    out[f"actual_{money.currency}"] = (f["y"] * rate).round(4)
    for col in [c for c in f.columns if c == "yhat" or c.startswith(("lower_", "upper_"))]:
        name = "forecast" if col == "yhat" else col
        out[f"{name}_{money.currency}"] = (f[col] * rate).round(4)
    return escape_frame(out).to_csv(index=False).encode()
