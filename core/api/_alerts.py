"""Alerts inbox: list (filter by kind, severity, state; cursor-paged), acknowledge, mute and
unmute a series (an alert's kind and subject), list the mutes in force."""

from __future__ import annotations

from typing import Any

from core.api._coerce import to_json
from core.api._http import ApiError, Call, Json, Op, Param, body_object, parse_id, parse_int
from core.api._query import parse_time
from core.api._schemas import field, obj, page_of
from core.control import ALERT_KINDS, ALERT_STATES, SEVERITIES, Alert, ControlPlane


def alert_json(a: Alert) -> dict[str, Any]:
    """An alert as the API shows it. Two paths deliver an alert: the worker, to every
    configured channel (``notify_state``, ``notify`` per channel, ``notify_attempts``,
    ``notify_error``, ``notified_at``), and, for a budget with its own ``webhook_url``, the
    router on the call path (``budget_webhook_delivered``, ``budget_webhook_error``).
    ``delivered`` is true when either path delivered it in full (it stayed false for the
    worker's deliveries: it was the router's outcome alone); ``delivery_error`` says why not
    (None once delivered)."""
    out: dict[str, Any] = to_json(a)
    out["budget_webhook_delivered"] = a.delivered
    out["budget_webhook_error"] = a.delivery_error
    out["delivered"] = a.notify_state == "sent" or a.delivered
    out["delivery_error"] = None if out["delivered"] else (a.notify_error or a.delivery_error)
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
    before_id = None if cursor is None else parse_id(cursor)
    if cursor is not None and before_id is None:
        raise ApiError(400, "cursor: not a cursor this API returned", "cursor")
    state = call.arg("state")
    kinds, severities = call.args("kind") or [], call.args("severity") or []
    for name, values, choices in (
        ("kind", kinds, ALERT_KINDS),
        ("severity", severities, SEVERITIES),
        ("state", [state] if state is not None else [], ALERT_STATES),
    ):  # a bad parameter: 400, as every other query parameter (the plane's check says 422)
        for value in values:
            if value not in choices:
                raise ApiError(
                    400, f"{name}: must be one of {', '.join(choices)} (got {value!r})", name
                )
    items = call.ctx.plane.alert_page(
        kinds=kinds,
        severities=severities,
        state=state,
        subject=call.arg("subject"),
        before_id=before_id,
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
    alert_id = parse_id(text)
    if alert_id is None:
        raise ApiError(404, f"no alert {text!r}")
    return alert_id


def mute(call: Call) -> Json:
    """Mute the series of this alert (its kind and subject) until ``until``."""
    alert_id = _id(call)
    found = call.ctx.plane.alert(alert_id)
    if found is None:
        raise ApiError(404, f"no alert {alert_id}")
    data = body_object(call)
    for key in data:  # a typo must not be ignored
        if key != "until":
            raise ApiError(422, f"{key}: not a field you can set here (only until)", key)
    until_text = data.get("until")
    if not isinstance(until_text, str):
        raise ApiError(422, "until: an ISO datetime or date", "until")
    until = parse_time(until_text, call.ctx.tz(), "until", 422)
    m = call.ctx.plane.mute_series(found.kind, found.subject, until, call.actor)
    return to_json(m)


def unmute(call: Call) -> Json:
    """Notify this alert's series again now (the mute is removed; audited as alert.unmute)."""
    alert_id = _id(call)
    found = call.ctx.plane.alert(alert_id)
    if found is None:
        raise ApiError(404, f"no alert {alert_id}")
    series = (found.kind, found.subject)
    mute = next((m for m in call.ctx.plane.mutes() if (m.kind, m.subject) == series), None)
    if mute is None or not call.ctx.plane.unmute_series(found.kind, found.subject, call.actor):
        raise ApiError(
            404, f"the series of alert {alert_id} ({found.kind} {found.subject!r}) is not muted"
        )
    return to_json(mute)


def list_mutes(call: Call) -> Json:
    return {"data": [to_json(m) for m in call.ctx.plane.mutes()]}


MUTE = obj(
    kind="string", subject="string", until="datetime", created_by="string", created_at="datetime"
)
ALERT = obj(
    id="integer",
    kind="string",
    severity="string",
    subject="string",
    message="string",
    state="string",
    delivered="boolean",
    delivery_error=field("string", nullable=True),
    notify_state="string",
    notify_attempts="integer",
    notify_error=field("string", nullable=True),
    notified_at=field("datetime", nullable=True),
    notify="object",
    budget_webhook_delivered="boolean",
    budget_webhook_error=field("string", nullable=True),
)
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
        response=MUTE,
    ),
    Op(
        "POST",
        "/alerts/{id}/unmute",
        unmute,
        "Unmute this alert's series now (audited); 404 when it is not muted",
        "alerts",
        params=(ID,),
        entity="alert",
        response=MUTE,
    ),
    Op(
        "GET",
        "/alerts/mutes",
        list_mutes,
        "The series muted now (kind, subject, until, who muted them)",
        "alerts",
        response=obj(data={"type": "array", "items": MUTE}),
    ),
]
