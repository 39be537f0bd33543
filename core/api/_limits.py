"""Rate limits as they are now: each limit's live buckets (per user, org, ...) and reset.

Where the levels come from, said in every answer (``backend``, ``levels``, ``pid``, ``note``):

- ``shared``: Redis (``REDIS_URL``, keys under ``COSTLINE_REDIS_PREFIX``), which every gateway
  process admits against: the levels are the deployment's.
- ``process``: the buckets are in process memory (the embedded default, ``SharedState``, or
  ``memory://``, or Redis unreachable and the fallback answering) and this process is the
  gateway serving the API: the levels are this process's (``pid``); other gateway processes
  keep their own.
- ``unavailable``: the buckets are in the gateway processes' memory and this process
  (``costline api``) is not one of them: ``buckets`` is null, not empty, and a reset is a 409.
"""

from __future__ import annotations

import os
from typing import Any

from core.api._coerce import to_json
from core.api._http import ApiError, Call, Json, Op, Param, Reply
from core.api._schemas import field, obj
from core.state import RedisState, ResilientState, live_backend, rate_levels, reset_rates
from core.state.resilient import DOWN_ERRORS

_ELSEWHERE = (
    "rate-limit buckets live in the memory of each gateway process ({backend}, no Redis), "
    "not in this API process: their levels cannot be read or reset from here. Use "
    "the /api/v1/limits of the gateway itself, or set REDIS_URL (and COSTLINE_REDIS_PREFIX) "
    "on the gateways and the API to share them."
)
_REDIS_DOWN = (
    "Redis is unreachable: the gateway processes admit against their own in-memory fallback "
    "buckets, which cannot be read or reset from this API process."
)
_THIS_PROCESS = (
    "rate-limit buckets live in each gateway process's memory ({backend}, no Redis): these "
    "are this gateway process's (pid {pid}) buckets; other gateway processes "
    "keep their own. Set REDIS_URL to share them."
)
_FALLBACK = (
    "Redis is unreachable: these are this gateway process's (pid {pid}) in-memory fallback "
    "buckets, which admit its calls until Redis is back; other processes keep their own."
)


def provenance(call: Call) -> tuple[Any, dict[str, Any]]:
    """The live state and where its levels come from (``backend``, ``levels``, ``pid``,
    ``note``)."""
    state, here = call.ctx.live()
    if isinstance(state, ResilientState):
        state.reachable()  # a Redis that stopped answering is marked down first (not a 500)
    backend = type(state).__name__
    if isinstance(live_backend(state), RedisState):
        return state, {"backend": backend, "levels": "shared", "pid": None, "note": None}
    down = isinstance(state, ResilientState)
    if not here:
        note = _REDIS_DOWN if down else _ELSEWHERE.format(backend=backend)
        return state, {"backend": backend, "levels": "unavailable", "pid": None, "note": note}
    pid = os.getpid()
    note = (_FALLBACK if down else _THIS_PROCESS).format(backend=backend, pid=pid)
    return state, {"backend": backend, "levels": "process", "pid": pid, "note": note}


def _redis_down(exc: BaseException) -> ApiError:
    """Redis stopped answering between the check and the read (or a state without a
    fallback): a 503 naming it, never a bare 500."""
    return ApiError(
        503,
        f"Redis is unreachable ({type(exc).__name__}: {exc}): the rate-limit levels "
        "cannot be read or reset now; try again",
    )


def get_limits(call: Call) -> Json:
    state, where = provenance(call)
    data = []
    try:
        for rl in call.ctx.plane.rate_limits():
            buckets = None
            if where["levels"] != "unavailable":
                buckets = [
                    {
                        "value": b.value,
                        "used": round(b.used, 6),
                        "remaining": max(0.0, round(rl.limit - b.used, 6)),
                    }
                    for b in rate_levels(state, rl)
                ]
            data.append({**to_json(rl), "buckets": buckets})
    except DOWN_ERRORS as exc:
        raise _redis_down(exc) from None
    return {"data": data, **where}


def delete_limits(call: Call) -> Reply:
    """Reset the live buckets of one limit (``?id=``) or of all; audited."""
    wanted = call.arg("id")
    limits = [rl for rl in call.ctx.plane.rate_limits() if wanted in (None, rl.id)]
    if wanted is not None and not limits:
        raise ApiError(404, f"no rate limit {wanted!r}")
    call.ctx.plane.authorize(call.actor, "rate_limit")
    state, where = provenance(call)
    if where["levels"] == "unavailable":
        raise ApiError(409, f"nothing was reset: {where['note']}")
    try:
        removed = {rl.id: reset_rates(state, rl) for rl in limits}
    except DOWN_ERRORS as exc:
        raise _redis_down(exc) from None
    call.ctx.plane.record_action(
        call.actor,
        "rate_limit",
        "rate_limit.reset",
        wanted or "*",
        {"buckets_removed": removed, "levels": where["levels"], "pid": where["pid"]},
    )
    return Reply({"reset": removed, **where}, status=200)


_LEVELS = field("string", enum=["shared", "process", "unavailable"])
_PID = field("integer", nullable=True)
_NOTE = field("string", nullable=True)
_BUCKETS = {
    "type": "array",
    "items": obj(id="string", scope="string", buckets=field("array", nullable=True)),
}


OPS = [
    Op(
        "GET",
        "/limits",
        get_limits,
        "Rate limits with the current level of each live bucket",
        "limits",
        response=obj(data=_BUCKETS, backend="string", levels=_LEVELS, pid=_PID, note=_NOTE),
        description=(
            "`levels` says whose buckets these are: `shared` (Redis, every gateway's), "
            "`process` (this gateway process's memory, `pid`), or `unavailable` (they live in "
            "the gateway processes' memory; `buckets` is null and `note` says why; also "
            "while Redis is unreachable). 503 when Redis stops answering during the read."
        ),
        errors=(503,),
    ),
    Op(
        "DELETE",
        "/limits",
        delete_limits,
        "Reset live rate-limit buckets (?id= one limit, else all); audited",
        "limits",
        params=(Param("id", {"type": "string"}, "the rate limit to reset"),),
        entity="rate_limit",
        response=obj(reset="object", backend="string", levels=_LEVELS, pid=_PID, note=_NOTE),
        description=(
            "Resets the buckets `levels` names (see GET); 409 when they are `unavailable` "
            "here (the gateway processes' memory, or Redis unreachable): nothing is reset. "
            "503 when Redis stops answering during the reset."
        ),
        errors=(503,),
    ),
]
