"""Forecast (Prophet or run rate, with intervals and backtest), anomalies, savings advice."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

from core import clock
from core import insights as ins
from core.api._http import ApiError, Call, Json, Op, Param, money, parse_bool, parse_int
from core.api._query import FILTER_PARAMS, filters
from core.api._schemas import field, list_of, obj
from core.periods import local_midnight, today_in

DIMENSIONS = ("total", "org", "project", "user", "model", "provider", "task")


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _usd(v: float) -> str | None:
    """Dollars (a float of summed picodollars) as an exact decimal string, to the picodollar:
    the float's shortest form, without its binary noise (1.9288753500000002 -> '1.92887535')."""
    if v is None or not math.isfinite(v):
        return None
    d = Decimal(repr(float(v))).quantize(Decimal("1e-12")).normalize()
    return f"{d.quantize(Decimal(1)) if d == d.to_integral_value() else d:f}"


def get_forecast(call: Call) -> Json:
    tz = call.ctx.tz()
    dim = call.arg("dimension") or "total"
    if dim not in DIMENSIONS:
        raise ApiError(400, f"dimension: must be one of {', '.join(DIMENSIONS)}", "dimension")
    value = call.arg("value")
    if dim != "total" and not value:
        raise ApiError(400, f"value: name the {dim} to forecast", "value")
    horizon = parse_int(call, "horizon", 30, 7, 180)
    texts = call.args("intervals") or ["0.8", "0.95"]
    try:  # every item: one that is not a fraction is an error, not silently left out
        intervals = tuple(float(x) for x in texts)
    except ValueError:
        intervals = ()
    if not intervals or not all(0 < x < 1 for x in intervals):
        raise ApiError(
            400,
            f"intervals: fractions between 0 and 1, e.g. 0.8,0.95 (got {','.join(texts)!r})",
            "intervals",
        )
    backtest = parse_bool(call, "backtest", True)
    fc = ins.forecast(
        call.ctx.reader,
        dim,
        value if dim != "total" else None,
        horizon_days=horizon,
        intervals=intervals,
        tz=tz,
        backtest=backtest,
    )
    points = []
    for rec in fc.frame.to_dict("records"):
        point: dict[str, Any] = {
            "day": rec["ds"].strftime("%Y-%m-%d"),
            "history": bool(rec["is_history"]),
        }
        for k, v in rec.items():
            if k not in ("ds", "is_history"):
                point[str(k)] = _num(v)
        points.append(point)
    bt = fc.backtest
    return {
        "dimension": dim,
        "value": value,
        "method": fc.method,
        "message": fc.message,
        "horizon_days": horizon,
        "intervals": list(fc.intervals),
        "changepoints": fc.changepoints,
        "points": points,
        "backtest": None
        if bt is None
        else {
            "holdout_days": bt.holdout_days,
            "metric": bt.metric,
            "error": bt.mape,
            "naive_error": bt.naive_mape,
            "coverage": bt.coverage,
        },
        "note": "values are USD per day, as numbers (a forecast is not money spent)",
    }


def finding_json(fd: ins.Finding) -> dict[str, Any]:
    a = fd.anomaly
    return {
        "subject": fd.subject,
        "dimension": fd.dimension,
        "key": fd.key,
        "metric": fd.metric,
        "grain": fd.grain,
        "when": fd.when,
        "value": _num(a.value),
        "expected": _num(a.expected),
        "ratio": None if math.isinf(a.ratio) else _num(a.ratio),
        "excess": _num(a.excess_usd),  # in the metric's units: dollars or calls
        "excess_usd": _usd(a.excess_usd) if fd.metric == "spend" else None,
        # the period's exact spend, summed from the log (null for calls or unattributed)
        "spent_usd": None if fd.spent_picousd is None else money(fd.spent_picousd),
        "description": fd.describe(),
        "contributors": [
            {"dim": c.dim, "value": c.value, "share": _num(c.share)} for c in a.contributors
        ],
    }


def get_anomalies(call: Call) -> Json:
    tz = call.ctx.tz()
    days = parse_int(call, "days", 14, 1, 90)
    now = clock.now()
    since = local_midnight(today_in(tz, now) - timedelta(days=days - 1), tz)
    found = ins.scan_usage(call.ctx.reader, tz=tz, since=since, now=now)
    return {"since": since, "data": [finding_json(f) for f in found]}


def get_advice(call: Call) -> Json:
    plane = call.ctx.plane
    days = parse_int(call, "days", 30, 1, 180)
    f = filters(call, call.ctx.tz())
    report = ins.savings_advice(
        call.ctx.reader,
        call.ctx.catalog(),
        policies=plane.policies(),
        scores=plane.model_scores(),
        filters=f.__class__(**{**vars(f), "start": None, "end": None}),
        days=days,
        now=clock.now(),
    )
    return {
        "data": [
            {
                "kind": a.kind,
                "task": a.task,
                "title": a.title,
                "detail": a.detail,
                "monthly_saving_usd": a.monthly_saving_usd,
                "confidence": a.confidence,
                "link": a.link,
                "model": a.model,
                "alternative": a.alternative,
            }
            for a in report.items
        ],
        "skipped": dict(report.skipped),
    }


OPS = [
    Op(
        "GET",
        "/forecast",
        get_forecast,
        "Daily spend forecast with intervals and its backtest",
        "insights",
        params=(
            Param("dimension", {"type": "string", "enum": list(DIMENSIONS)}),
            Param("value", {"type": "string"}, "the dimension's value (not for total)"),
            Param("horizon", {"type": "integer", "minimum": 7, "maximum": 180}, "days ahead"),
            Param("intervals", {"type": "string"}, "e.g. 0.8,0.95"),
            Param("backtest", {"type": "boolean"}),
        ),
        response=obj(method="string", points="array", backtest=field("object", nullable=True)),
    ),
    Op(
        "GET",
        "/anomalies",
        get_anomalies,
        "Unusual spend and calls per org and model, daily and hourly, attributed",
        "insights",
        params=(Param("days", {"type": "integer", "minimum": 1, "maximum": 90}),),
        response=list_of(obj(subject="string", when="string", description="string")),
    ),
    Op(
        "GET",
        "/advice",
        get_advice,
        "Savings advice with the monthly saving of each",
        "insights",
        params=(
            *FILTER_PARAMS,
            Param("days", {"type": "integer", "minimum": 1, "maximum": 180}),
        ),
        response=list_of(obj(kind="string", title="string", monthly_saving_usd="money")),
    ),
]
