"""Gateway virtual keys (engineer/admin): list without secrets, create (the secret is in
that answer only), revoke. The same writes as ``costline keys`` and the console's Keys page
(``core.keys.issue_key``, ``ControlPlane.revoke_virtual_key``), audited as the token's user.

A key is never edited: its ETag (GET /keys/{name}) guards the one write to it, revocation
(``If-Match`` required, ``*`` for any version). Names are never reused (409).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from core import clock
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
from core.api._query import parse_time
from core.api._schemas import field, list_of, obj
from core.control import Budget, RateLimit, VirtualKey, max_limit_usd

FIELDS = frozenset(
    {"name", "org", "project", "user", "models", "budget_usd", "period", "rpm", "tpm"}
    | {"expires_at"}
)


def key_json(
    k: VirtualKey, budgets: dict[str, Budget], limits: dict[str, RateLimit], now: datetime
) -> dict[str, Any]:
    """A key as the API shows it: never its hash, never its secret."""
    budget = budgets.get(f"key:{k.name}")
    rpm, tpm = limits.get(f"key:{k.name}:rpm"), limits.get(f"key:{k.name}:tpm")
    return {
        "name": k.name,
        "prefix": k.prefix,
        "status": k.status(now),
        "org": k.org,
        "project": k.project,
        "user": k.user,
        "models": list(k.models),
        "budget_usd": None if budget is None else f"{budget.limit_usd:f}",
        "period": None if budget is None else budget.period,
        "rpm": None if rpm is None else rpm.limit,
        "tpm": None if tpm is None else tpm.limit,
        "created_at": k.created_at.isoformat() if k.created_at else None,
        "created_by": k.created_by,
        "expires_at": k.expires_at.isoformat() if k.expires_at else None,
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        "revoked_by": k.revoked_by,
    }


def _views(call: Call, keys: list[VirtualKey]) -> list[dict[str, Any]]:
    plane = call.ctx.plane
    budgets = {b.id: b for b in plane.budgets() if b.scope == "key"}
    limits = {r.id: r for r in plane.rate_limits() if r.scope == "key"}
    now = clock.now()
    return [key_json(k, budgets, limits, now) for k in keys]


def _one(call: Call, name: str) -> dict[str, Any]:
    found = call.ctx.plane.virtual_key(name)
    if found is None:
        raise ApiError(404, f"no key {name!r}")
    return _views(call, [found])[0]


def list_keys(call: Call) -> Json:
    wanted = call.args("status")
    rows = _views(call, call.ctx.plane.virtual_keys())
    if wanted:
        bad = [s for s in wanted if s not in ("active", "revoked", "expired")]
        if bad:
            raise ApiError(400, f"status: {bad[0]!r} is not active, revoked or expired", "status")
        rows = [r for r in rows if r["status"] in wanted]
    return {"data": rows}


def get_key(call: Call) -> Reply:
    body = _one(call, call.path["name"])
    return Reply(body, etag=etag_of(body))


MAX_USD = max_limit_usd()  # a key's budget blocks at its limit; counters are int64 picodollars


def _text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{name}: must be a string (got {value!r})", name)
    return value


def _count(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(422, f"{name}: must be a whole number >= 1 (got {value!r})", name)
    if value > 2**63 - 1:  # else the rate limit's check names its own field, limit
        raise ApiError(422, f"{name}: must be <= {2**63 - 1} (got {value!r})", name)
    return value


def _spec(call: Call, data: dict[str, Any]) -> Any:
    from core.keys import KeySpec

    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise ApiError(422, f"{unknown[0]}: not a field you can set here", unknown[0])
    name = _text(data, "name")
    if not name:
        raise ApiError(422, "name: required, a string", "name")
    models = data.get("models") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ApiError(422, f"models: must be a list of model names (got {models!r})", "models")
    budget: Decimal | None = None
    if data.get("budget_usd") is not None:
        raw = data["budget_usd"]
        try:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise InvalidOperation
            budget = Decimal(str(raw))
        except InvalidOperation:
            raise ApiError(
                422,
                f"budget_usd: must be a decimal amount such as '50' (got {raw!r})",
                "budget_usd",
            ) from None
        if not budget.is_finite() or budget <= 0:
            raise ApiError(
                422, f"budget_usd: must be a positive amount (got {raw!r})", "budget_usd"
            )
        if budget > MAX_USD:  # else the budget's check names its own field, limit_usd
            raise ApiError(
                422,
                f"budget_usd: must be <= {MAX_USD} USD (${MAX_USD:,}): budget counters hold"
                f" whole picodollars in 64 bits (got {raw!r})",
                "budget_usd",
            )
    period = _text(data, "period") or "month"
    if period not in ("day", "week", "month"):
        raise ApiError(422, f"period: must be day, week or month (got {period!r})", "period")
    expires: datetime | None = None
    if data.get("expires_at") is not None:
        text = _text(data, "expires_at") or ""
        try:
            expires = parse_time(text, call.ctx.tz(), "expires_at")
        except ApiError as exc:
            raise ApiError(422, exc.message, "expires_at") from None
        if expires <= clock.now():
            raise ApiError(422, f"expires_at: {text!r} is in the past", "expires_at")
    return KeySpec(
        name=name,
        org=_text(data, "org"),
        project=_text(data, "project"),
        user=_text(data, "user"),
        models=tuple(models),
        budget_usd=budget,
        period=period,
        rpm=_count(data, "rpm"),
        tpm=_count(data, "tpm"),
        expires_at=expires,
    )


def create_key(call: Call) -> Reply:
    """201 with the key and ``secret``, which is never shown again."""
    from core.keys import issue_key, load_pepper

    plane = call.ctx.plane
    spec = _spec(call, body_object(call))
    if plane.virtual_key(spec.name) is not None:
        raise ApiError(409, f"a key named {spec.name!r} exists (names are never reused)", "name")
    issued = issue_key(plane, spec, call.actor, pepper=load_pepper(call.ctx.home))
    body = _one(call, issued.key.name)
    return Reply({**body, "secret": issued.secret}, status=201, etag=etag_of(body))


def revoke_key(call: Call) -> Reply:
    """Revoke (If-Match: the key's ETag, or ``*``); running gateways refuse it within 5 s.
    A key revoked already is a 404, as a token revoked already is (and any DELETE of what is
    gone): there is no active key to revoke."""
    plane = call.ctx.plane
    name = call.path["name"]
    current = _one(call, name)
    if current["revoked_at"] is not None:
        raise ApiError(
            404,
            f"no active key {name!r}: revoked at {current['revoked_at']} "
            f"by {current['revoked_by']}",
        )
    check_if_match(call, current, what=f"key {name!r}")
    plane.revoke_virtual_key(name, call.actor)
    return Reply(None, status=204)


KEY = obj(
    name="string",
    prefix="string",
    status={"type": "string", "enum": ["active", "revoked", "expired"]},
    org=field("string", nullable=True),
    project=field("string", nullable=True),
    user=field("string", nullable=True),
    models="strings",
    budget_usd=field("money", nullable=True),
    period=field("string", nullable=True),
    rpm=field("integer", nullable=True),
    tpm=field("integer", nullable=True),
    created_at=field("datetime", nullable=True),
    created_by="string",
    expires_at=field("datetime", nullable=True),
    revoked_at=field("datetime", nullable=True),
    revoked_by=field("string", nullable=True),
)
CREATED = {**KEY, "properties": {**KEY["properties"], "secret": field("string")}}
NAME = Param("name", {"type": "string"}, where="path", required=True)
OPS = [
    Op(
        "GET",
        "/keys",
        list_keys,
        "Gateway virtual keys (engineer/admin); never their secrets",
        "keys",
        params=(
            Param(
                "status",
                {"type": "string"},
                "only keys in these states: active, revoked, expired (comma-separated)",
            ),
        ),
        response=list_of(KEY),
        entity="virtual_key",
    ),
    Op(
        "GET",
        "/keys/{name}",
        get_key,
        "One virtual key (with its ETag)",
        "keys",
        params=(NAME,),
        response=KEY,
        entity="virtual_key",
        etag=True,
    ),
    Op(
        "POST",
        "/keys",
        create_key,
        "Create a virtual key with its budget and rate limits; the secret is in this answer only",
        "keys",
        body=obj(
            ("name",),
            name="string",
            org="string",
            project="string",
            user="string",
            models="strings",
            budget_usd="money",
            period={"type": "string", "enum": ["day", "week", "month"]},
            rpm={"type": "integer", "minimum": 1},
            tpm={"type": "integer", "minimum": 1},
            expires_at="string",
        ),
        response=CREATED,
        entity="virtual_key",
        status=201,
        etag=True,
    ),
    Op(
        "DELETE",
        "/keys/{name}",
        revoke_key,
        "Revoke a virtual key (If-Match required; gateways refuse it within 5 s); "
        "404 when it is revoked already",
        "keys",
        params=(NAME,),
        entity="virtual_key",
        status=204,
        etag=True,
    ),
]
