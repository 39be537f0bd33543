"""Settings (admin): time zone, currency rates, notifications, alert thresholds, scan
interval, retention. Each one is its own resource with an ETag."""

from __future__ import annotations

from typing import Any

from core.api._http import (
    ApiError,
    Call,
    Json,
    Op,
    Param,
    Reply,
    body_object,
    check_if_match,
    etag_of,
)
from core.api._schemas import list_of, obj
from core.control import DEFAULT_SETTINGS
from core.worker import DEFAULT_INTERVAL_S, DEFAULT_THRESHOLDS

KNOWN = (
    "timezone",
    "currency",
    "currency_rates",
    "redis_fail_policy",
    "cache_scope",
    "notifications",
    "alert_thresholds",
    "alert_scan_interval_s",
    "retention_days",
)


# What the worker uses while nothing is stored (``core.worker.load_settings``): a script
# reading the settings sees the interval and thresholds in force, not null.
IN_FORCE: dict[str, Any] = {
    "alert_scan_interval_s": DEFAULT_INTERVAL_S,
    "alert_thresholds": dict(DEFAULT_THRESHOLDS),
}


def _default(key: str) -> Any:
    return IN_FORCE[key] if key in IN_FORCE else DEFAULT_SETTINGS.get(key)


def _one(call: Call, key: str) -> dict[str, Any] | None:
    stored = call.ctx.plane.settings()
    if key in stored:
        return {"key": key, "value": stored[key]}
    return None


def list_settings(call: Call) -> Json:
    call.ctx.plane.authorize(call.actor, "setting")
    stored = call.ctx.plane.settings()
    return {
        "data": [
            {"key": k, "value": stored[k] if k in stored else _default(k), "stored": k in stored}
            for k in sorted({*KNOWN, *stored})
        ]
    }


def get_setting(call: Call) -> Reply:
    call.ctx.plane.authorize(call.actor, "setting")
    key = call.path["key"]
    found = _one(call, key)
    if found is None:
        if key not in KNOWN:
            raise ApiError(404, f"no setting {key!r}")
        return Reply({"key": key, "value": _default(key), "stored": False})
    return Reply({**found, "stored": True}, etag=etag_of(found))


def put_setting(call: Call) -> Reply:
    key = call.path["key"]
    data = body_object(call)
    if set(data) - {"value", "key"}:
        raise ApiError(422, 'the body is {"value": ...}', "value")
    if "key" in data and data["key"] != key:
        raise ApiError(422, f"key: the body says {data['key']!r}, the path {key!r}", "key")
    if "value" not in data:
        raise ApiError(422, "value: required", "value")
    if key not in KNOWN and _one(call, key) is None:  # a typo would be stored and do nothing
        raise ApiError(404, f"no setting {key!r}; the settings are {', '.join(KNOWN)}")

    def check(before: Any) -> None:
        check_if_match(call, before, what=f"setting {key!r}")

    with call.ctx.plane.expect(check):
        value = call.ctx.plane.set_setting(key, data["value"], call.actor)
    body = {"key": key, "value": value}
    return Reply({**body, "stored": True}, etag=etag_of(body))  # as GET answers it


KEY = Param("key", {"type": "string"}, where="path", required=True)
SETTING = obj(key="string", value={"nullable": True}, stored="boolean")
OPS = [
    Op(
        "GET",
        "/settings",
        list_settings,
        "Every setting (admin)",
        "admin",
        response=list_of(SETTING),
    ),
    Op(
        "GET",
        "/settings/{key}",
        get_setting,
        "One setting (admin)",
        "admin",
        params=(KEY,),
        response=SETTING,
        etag=True,
    ),
    Op(
        "PUT",
        "/settings/{key}",
        put_setting,
        "Set a setting (admin; If-Match when it is stored)",
        "admin",
        params=(KEY,),
        body=obj(("value",), value={"nullable": True}),
        response=SETTING,
        entity="setting",
        etag=True,
    ),
]
