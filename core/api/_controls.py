"""Routing policies, sampling strategies and their event thresholds, cache settings,
rate-limit definitions, and the sampling savings."""

from __future__ import annotations

from typing import Any

from core.api._coerce import build
from core.api._entities import Entity, entity_ops
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
    money,
)
from core.api._query import RANGE_PARAMS, time_range
from core.api._schemas import list_of, obj
from core.control import CacheSetting, RateLimit, RoutingPolicy, SamplingStrategy
from core.reports import sampling_savings

POLICIES = Entity(
    "routing_policy",
    "routing policy",
    "/routing-policies",
    "task",
    RoutingPolicy,
    lambda p: p.policies(),
    lambda p, v, a: p.upsert_policy(v, a),
    lambda p, k, a: p.delete_policy(k, a),
    "routing",
)
SAMPLING = Entity(
    "sampling_strategy",
    "sampling strategy",
    "/sampling-strategies",
    "key",
    SamplingStrategy,
    lambda p: p.sampling(),
    lambda p, v, a: p.upsert_sampling(v, a),
    lambda p, k, a: p.delete_sampling(k, a),
    "routing",
)
CACHE = Entity(
    "cache_setting",
    "cache setting",
    "/cache-settings",
    "task",
    CacheSetting,
    lambda p: p.cache_settings(),
    lambda p, v, a: p.upsert_cache_setting(v, a),
    lambda p, k, a: p.delete_cache_setting(k, a),
    "routing",
)
RATE_LIMITS = Entity(
    "rate_limit",
    "rate limit",
    "/rate-limits",
    "id",
    RateLimit,
    lambda p: p.rate_limits(),
    lambda p, v, a: p.upsert_rate_limit(v, a),
    lambda p, k, a: p.delete_rate_limit(k, a),
    "limits",
)

# -- event thresholds: the trading seed's per-agent intervals and LOW-event batching ------

THRESHOLD_FIELDS = ("min_interval_s", "batch_size", "batch_timeout_s")


def _thresholds(s: SamplingStrategy) -> dict[str, Any]:
    return {"key": s.key, **{f: getattr(s, f) for f in THRESHOLD_FIELDS}}


def list_thresholds(call: Call) -> Json:
    return {"data": [_thresholds(s) for s in call.ctx.plane.sampling()]}


def put_thresholds(call: Call) -> Reply:
    """Set a key's event thresholds; a key without a strategy gets 'always' with them."""
    key = call.path["key"]
    data = body_object(call)
    extra = set(data) - set(THRESHOLD_FIELDS) - {"key"}
    if extra:
        name = sorted(extra)[0]
        raise ApiError(422, f"{name}: not an event threshold", name)
    plane = call.ctx.plane
    base = next((s for s in plane.sampling() if s.key == key), None)
    values = {k: v for k, v in data.items() if k != "key"}
    if base is None:
        new = build(SamplingStrategy, {**values, "key": key}, None)
    else:
        new = build(SamplingStrategy, values, base)

    def check(before: Any) -> None:
        current = None if before is None else _thresholds(before)
        check_if_match(call, current, what=f"event thresholds of {key!r}")

    with plane.expect(check):
        stored = plane.upsert_sampling(new, call.actor)
    body = _thresholds(stored)
    return Reply(body, status=200 if base else 201, etag=etag_of(body))


def get_thresholds(call: Call) -> Reply:
    key = call.path["key"]
    found = next((s for s in call.ctx.plane.sampling() if s.key == key), None)
    if found is None:
        raise ApiError(
            404,
            f"no event thresholds for {key!r} (no sampling strategy {key!r}; "
            f"PUT /event-thresholds/{key} sets them)",
        )
    body = _thresholds(found)
    return Reply(body, etag=etag_of(body))


def stats(call: Call) -> Json:
    start, end = time_range(call, call.ctx.tz())
    df = sampling_savings(call.ctx.reader, start, end)
    return {
        "range": {"start": start, "end": end},
        "data": [
            {
                "key": r["key"],
                "events": int(r["events"]),
                "calls": int(r["calls"]),
                "skipped": int(r["skipped"]),
                "saved_usd": money(int(r["saved_picousd"])),
            }
            for r in df.to_dict("records")
        ],
    }


KEY = Param("key", {"type": "string"}, where="path", required=True)
THRESHOLDS = obj(
    key="string", min_interval_s="number", batch_size="integer", batch_timeout_s="number"
)
OPS = [
    *entity_ops(POLICIES),
    *entity_ops(SAMPLING),
    Op(
        "GET",
        "/event-thresholds",
        list_thresholds,
        "Event thresholds per agent/task",
        "routing",
        response=list_of(THRESHOLDS),
    ),
    Op(
        "GET",
        "/event-thresholds/{key}",
        get_thresholds,
        "One key's event thresholds",
        "routing",
        params=(KEY,),
        response=THRESHOLDS,
        etag=True,
    ),
    Op(
        "PUT",
        "/event-thresholds/{key}",
        put_thresholds,
        "Set a key's event thresholds (If-Match when it exists)",
        "routing",
        params=(KEY,),
        body=THRESHOLDS,
        response=THRESHOLDS,
        entity="sampling_strategy",
        etag=True,
        also=(201,),
    ),
    Op(
        "GET",
        "/sampling/stats",
        stats,
        "Per task: events, real calls, skipped calls and dollars saved by sampling",
        "routing",
        params=RANGE_PARAMS,
        response=list_of(obj(key="string", calls="integer", skipped="integer", saved_usd="money")),
    ),
    *entity_ops(CACHE),
    *entity_ops(RATE_LIMITS),
]
