"""GET /usage (the call log, cursor-paged), GET /usage/{request_id}, GET /spend (the
Overview's numbers: totals, KPI windows and breakdowns by period and dimension)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pandas as pd

from core import reports
from core.api._http import (
    ApiError,
    Call,
    Json,
    Op,
    Param,
    money,
    not_found,
    parse_bool,
    parse_int,
)
from core.api._paging import decode_cursor, encode_cursor, page
from core.api._query import FILTER_PARAMS, RANGE_PARAMS, filters, group_by, nonempty
from core.api._schemas import obj, page_of
from core.export import is_cost
from core.usage import COLUMNS, STATUSES

MONEY_COLUMNS = [c for c in COLUMNS if c.endswith("_picousd")]
INT_COLUMNS = ("requests", "input_tokens", "output_tokens", "errors", "cache_hits")
MAX_SPEND_ROWS = 50_000  # rows one GET /spend answer may build (more: a 400 saying how to narrow)


def event_json(rec: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """One event for the API: money as exact dollar strings; a call logged unpriced has its
    cost fields null (unknown, as the export and the console show it), never "0"."""
    out: dict[str, Any] = {}
    unknown = bool(rec.get("unpriced"))
    for k, v in rec.items():
        if hasattr(v, "tolist"):  # numpy arrays and scalars from the frame
            v = v.tolist()
        if k == "ts":
            out[k] = v.astimezone(tz).isoformat()
        elif k in MONEY_COLUMNS:
            out[k.replace("_picousd", "_usd")] = None if unknown and is_cost(k) else money(v)
        elif k == "metadata":
            out[k] = orjson.loads(v) if v else {}
        elif k == "tags":
            out[k] = list(v) if v is not None else []
        else:
            out[k] = None if isinstance(v, float) and v != v else v
    return out


def list_usage(call: Call) -> Json:
    tz = call.ctx.tz()
    status = call.args("status")
    if status is not None:
        nonempty(status, "status")
    for s in status or []:
        if s not in STATUSES:
            raise ApiError(400, f"status: must be one of {', '.join(STATUSES)}", "status")
    f = filters(call, tz, status=status)
    limit = parse_int(call, "limit", 100, 1, 1000)
    cursor_text = call.arg("cursor")
    cursor = decode_cursor(cursor_text) if cursor_text else None
    rows, nxt = page(call.ctx.reader, f, cursor, limit)
    zone = ZoneInfo(tz)
    data = []
    for rec in rows:
        rec.pop("_us")
        data.append(event_json(rec, zone))
    next_cursor = encode_cursor(*nxt) if nxt is not None else None
    cov = reports.coverage(call.ctx.reader, f.start, f.end, tagged=f.tag is not None, tz=tz)
    return {"data": data, "next_cursor": next_cursor, "note": cov.note(), "tz": tz}


def get_usage(call: Call) -> Json:
    rid = call.path["request_id"]
    found = call.ctx.reader.table(  # a retried call logs each attempt: its last one tells
        "SELECT * FROM events WHERE request_id = ? ORDER BY attempt DESC, ts DESC LIMIT 1", [rid]
    ).to_pylist()  # Arrow, as the list reads it: a missing value is None (pandas made NaN)
    if not found:
        raise not_found("request", rid)
    return event_json(found[0], ZoneInfo(call.ctx.tz()))


def _period(value: Any, grain: str | None, offset_min: Any = None) -> str | None:
    """A period's start, local time; by minute or hour with its UTC offset ('-04:00'), so
    the wall-clock hour a DST fall-back repeats is two distinct periods."""
    if grain is None or value is None:
        return None
    ts = pd.Timestamp(value)
    if grain in ("minute", "hour"):
        text = ts.strftime("%Y-%m-%dT%H:%M")
        if offset_min is None or offset_min != offset_min:  # NaN: no offset known
            return text
        sign, minutes = ("-" if offset_min < 0 else "+"), abs(int(offset_min))
        return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return ts.strftime("%Y-%m-%d")


def totals_json(t: reports.Totals) -> dict[str, Any]:
    return {
        "requests": t.requests,
        "tokens": t.tokens,
        "cost_usd": money(t.cost),
        "saved_usd": money(t.saved),
        "saved_cache_usd": money(t.saved_cache),
        "saved_sampling_usd": money(t.saved_sampling),
        "avg_cost_usd": money(t.avg_cost),
        "cache_hits": t.cache_hits,
        "errors": t.errors,
        "unpriced": t.unpriced,
    }


def get_spend(call: Call) -> Json:
    tz = call.ctx.tz()
    f = filters(call, tz)
    dims, grain = group_by(call)
    reader = call.ctx.reader
    cap = MAX_SPEND_ROWS
    df = reader.spend_by(dims, grain, f, tz=tz, limit=cap + 1)  # never builds more
    if len(df) > cap:
        raise ApiError(
            400,
            f"group_by={','.join([*([grain] if grain else []), *dims])} over this range makes"
            f" more than {cap:,} rows: narrow it - a shorter range (start/end or range=), a"
            " filter (org=, project=, user=, key=, model=, provider=, task=), fewer group_by"
            " dimensions or a coarser period (hour, day, week, month) - or page through it"
            " with consecutive start/end ranges",
            "group_by",
        )
    df = df[df["requests"].fillna(0) > 0].reset_index(drop=True)  # no events: no rows
    cost = [int(v) for v in df["cost_picousd"]]
    saved = [int(v) for v in df["saved_picousd"]]
    ints = {c: [int(v) for v in df[c]] for c in INT_COLUMNS}
    unpriced = [int(v) for v in df["unpriced_calls"].fillna(0)]
    rows = []
    for i in range(len(df)):
        offset = df["utc_offset"].iat[i] if "utc_offset" in df.columns else None
        row: dict[str, Any] = (
            {"period": _period(df["period"].iat[i], grain, offset)} if grain else {}
        )
        for d in dims:
            v = df[d].iat[i]
            row[d] = None if v is None or (isinstance(v, float) and v != v) else v
        row.update({c: ints[c][i] for c in INT_COLUMNS})
        # unpriced: calls of the row whose cost is unknown (in no cost figure; a row of
        # only those reads cost_usd "0" and unpriced > 0, never a silent $0)
        row.update(cost_usd=money(cost[i]), saved_usd=money(saved[i]), unpriced=unpriced[i])
        rows.append(row)
    totals = reports.Totals.of(df)  # group_by takes no "tag": the rows do not overlap
    out: dict[str, Any] = {
        "range": {"start": f.start, "end": f.end, "tz": tz},
        "group_by": [*([grain] if grain else []), *dims],
        "totals": totals_json(totals),
        "rows": rows,
        "note": reports.coverage(reader, f.start, f.end, tagged=f.tag is not None, tz=tz).note(),
    }
    if parse_bool(call, "kpis", False):
        from core import clock

        now = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
        windows = reports.window_spend(reader, f, tz, now)
        out["kpis"] = {k: money(v) for k, v in windows.items()}
    return out


def top(call: Call) -> Json:
    tz = call.ctx.tz()
    who = call.arg("who") or "user"
    if who not in reports.TOP_WHO:
        raise ApiError(400, f"who: must be one of {', '.join(reports.TOP_WHO)}", "who")
    n = parse_int(call, "n", 10, 1, 1000)
    df = reports.top_spenders(call.ctx.reader, filters(call, tz), who, n)
    return {
        "who": who,
        "data": [
            {"name": name, "cost_usd": money(int(c)), "requests": int(r)}
            for name, c, r in zip(df["name"], df["cost_picousd"], df["requests"], strict=True)
        ],
    }


EVENT = obj(request_id="string", ts="string", model="string", cost_usd="money")
OPS = [
    Op(
        "GET",
        "/usage",
        list_usage,
        "List usage events, newest first (cursor-paged)",
        "usage",
        params=(
            *RANGE_PARAMS,
            *FILTER_PARAMS,
            Param("status", {"type": "string"}, "only these statuses (comma-separated)"),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
            Param("cursor", {"type": "string"}, "next_cursor of the previous page"),
        ),
        response=page_of(EVENT),
    ),
    Op(
        "GET",
        "/usage/{request_id}",
        get_usage,
        "One usage event with every field (prompt and response when logged)",
        "usage",
        params=(Param("request_id", {"type": "string"}, where="path", required=True),),
        response=EVENT,
    ),
    Op(
        "GET",
        "/spend",
        get_spend,
        "Spend totals and breakdowns (the Overview's numbers)",
        "usage",
        params=(
            *RANGE_PARAMS,
            *FILTER_PARAMS,
            Param("group_by", {"type": "string"}, "minute|hour|day|week|month and/or dimensions"),
            Param("kpis", {"type": "boolean"}, "add today / month-to-date / last-30-days"),
        ),
        response=obj(totals="object", rows="array", group_by="array"),
    ),
    Op(
        "GET",
        "/spend/top",
        top,
        "Top spenders by user, project or org",
        "usage",
        params=(
            *RANGE_PARAMS,
            *FILTER_PARAMS,
            Param("who", {"type": "string", "enum": list(reports.TOP_WHO)}),
            Param("n", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        response=obj(who="string", data="array"),
    ),
]
