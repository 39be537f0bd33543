"""Alerts inbox: list (filter by kind, severity, state; cursor-paged), acknowledge, mute."""

from __future__ import annotations

from typing import Any

from core.api._coerce import to_json
from core.api._http import ApiError, Call, Json, Op, Param, body_object, parse_int
from core.api._query import parse_time
from core.api._schemas import obj, page_of
from core.control import ALERT_KINDS, ALERT_STATES, SEVERITIES, Alert, ControlPlane


def alert_json(a: Alert) -> dict[str, Any]:
    out: dict[str, Any] = to_json(a)
    out["subject"] = a.subject
    out["spent_usd"] = None if a.spent_picousd is None else _usd(a.spent_picousd)
    out["limit_usd"] = None if a.limit_picousd is None else _usd(a.limit_picousd)
    for k in ("spent_picousd", "limit_picousd"):
        out.pop(k, None)
    out["state"] = "acked" if a.acked_at else "open"
    return out


def alerts_json(plane: ControlPlane, items: list[Alert]) -> list[dict[str, Any]]:
    """Alerts as the inbox shows them: money in USD, state open, acked or muted."""
    muted = {(m.kind, m.subject) for m in plane.mutes()}
    data = []
    for a in items:
        item = alert_json(a)
        if (a.kind, a.subject) in muted and not a.acked_at:
            item["state"] = "muted"
        data.append(item)
    return data


def _usd(pico: int) -> str | None:
    from core.api._http import money

    return money(pico)


def list_alerts(call: Call) -> Json:
    limit = parse_int(call, "limit", 100, 1, 1000)
    cursor = call.arg("cursor")
    if cursor is not None and not cursor.isdigit():
        raise ApiError(400, "cursor: not a cursor this API returned", "cursor")
    state = call.arg("state")
    items = call.ctx.plane.alert_page(
        kinds=call.args("kind") or (),
        severities=call.args("severity") or (),
        state=state,
        subject=call.arg("subject"),
        before_id=int(cursor) if cursor else None,
        limit=limit,
    )
    data = alerts_json(call.ctx.plane, items)
    nxt = str(items[-1].id) if len(items) == limit else None
    return {"data": data, "next_cursor": nxt, "note": None}


def ack(call: Call) -> Json:
    alert_id = _id(call)
    if not call.ctx.plane.ack_alert(alert_id, call.actor):
        raise ApiError(404, f"no alert {alert_id}")
    found = call.ctx.plane.alert(alert_id)
    return alert_json(found) if found else {}


def _id(call: Call) -> int:
    text = call.path["id"]
    if not text.isdigit():
        raise ApiError(404, f"no alert {text!r}")
    return int(text)


def mute(call: Call) -> Json:
    """Mute the series of this alert (its kind and subject) until ``until``."""
    alert_id = _id(call)
    found = call.ctx.plane.alert(alert_id)
    if found is None:
        raise ApiError(404, f"no alert {alert_id}")
    data = body_object(call)
    until_text = data.get("until")
    if not isinstance(until_text, str):
        raise ApiError(422, "until: an ISO datetime or date", "until")
    until = parse_time(until_text, call.ctx.tz(), "until")
    m = call.ctx.plane.mute_series(found.kind, found.subject, until, call.actor)
    return to_json(m)


ALERT = obj(id="integer", kind="string", severity="string", subject="string", message="string")
ID = Param("id", {"type": "integer"}, where="path", required=True)
OPS = [
    Op(
        "GET",
        "/alerts",
        list_alerts,
        "Alerts, newest first (cursor-paged)",
        "alerts",
        params=(
            Param("kind", {"type": "string"}, f"comma-separated: {', '.join(ALERT_KINDS)}"),
            Param("severity", {"type": "string"}, f"comma-separated: {', '.join(SEVERITIES)}"),
            Param("state", {"type": "string", "enum": list(ALERT_STATES)}),
            Param("subject", {"type": "string"}, "a budget id or a series such as org=acme"),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            Param("cursor", {"type": "string"}),
        ),
        response=page_of(ALERT),
    ),
    Op(
        "POST",
        "/alerts/{id}/ack",
        ack,
        "Acknowledge an alert (audited)",
        "alerts",
        params=(ID,),
        entity="alert",
        response=ALERT,
    ),
    Op(
        "POST",
        "/alerts/{id}/mute",
        mute,
        "Mute this alert's series until a time (audited)",
        "alerts",
        params=(ID,),
        body=obj(("until",), until="string"),
        entity="alert",
        response=obj(kind="string", subject="string", until="datetime"),
    ),
]
