"""Rate limits as they are now: each limit's live buckets (per user, org, ...) and reset."""

from __future__ import annotations

from core.api._coerce import to_json
from core.api._http import ApiError, Call, Json, Op, Param, Reply
from core.api._schemas import list_of, obj
from core.state import rate_levels, reset_rates


def get_limits(call: Call) -> Json:
    state = call.ctx.state()
    data = []
    for rl in call.ctx.plane.rate_limits():
        buckets = rate_levels(state, rl)
        data.append(
            {
                **to_json(rl),
                "buckets": [
                    {
                        "value": b.value,
                        "used": round(b.used, 6),
                        "remaining": max(0.0, round(rl.limit - b.used, 6)),
                    }
                    for b in buckets
                ],
            }
        )
    return {"data": data, "backend": type(state).__name__}


def delete_limits(call: Call) -> Reply:
    """Reset the live buckets of one limit (``?id=``) or of all; audited."""
    wanted = call.arg("id")
    limits = [rl for rl in call.ctx.plane.rate_limits() if wanted in (None, rl.id)]
    if wanted is not None and not limits:
        raise ApiError(404, f"no rate limit {wanted!r}")
    call.ctx.plane.authorize(call.actor, "rate_limit")
    state = call.ctx.state()
    removed = {rl.id: reset_rates(state, rl) for rl in limits}
    call.ctx.plane.record_action(
        call.actor, "rate_limit", "rate_limit.reset", wanted or "*", {"buckets_removed": removed}
    )
    return Reply({"reset": removed}, status=200)


OPS = [
    Op(
        "GET",
        "/limits",
        get_limits,
        "Rate limits with the current level of each live bucket",
        "limits",
        response=list_of(obj(id="string", scope="string", buckets="array")),
    ),
    Op(
        "DELETE",
        "/limits",
        delete_limits,
        "Reset live rate-limit buckets (?id= one limit, else all); audited",
        "limits",
        params=(Param("id", {"type": "string"}, "the rate limit to reset"),),
        entity="rate_limit",
        response=obj(reset="object"),
    ),
]
