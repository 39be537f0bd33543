"""Audit log (admin) and API tokens (admin): who changed what, and who may call."""

from __future__ import annotations

from datetime import datetime

from core.api._coerce import to_json
from core.api._http import (
    ApiError,
    Call,
    Json,
    Op,
    Param,
    Reply,
    body_object,
    parse_id,
    parse_int,
)
from core.api._query import parse_time
from core.api._schemas import field, list_of, obj, page_of


def audit(call: Call) -> Json:
    call.ctx.plane.authorize(call.actor, "audit")
    limit = parse_int(call, "limit", 100, 1, 1000)
    cursor = call.arg("cursor")
    before_id = None if cursor is None else parse_id(cursor)
    if cursor is not None and before_id is None:
        raise ApiError(400, "cursor: not a cursor this API returned", "cursor")
    entries = call.ctx.plane.audit_page(
        limit=limit,
        before_id=before_id,
        entity=call.arg("entity"),
        entity_id=call.arg("entity_id"),
        actor=call.arg("actor"),
    )
    nxt = str(entries[-1].id) if len(entries) == limit else None
    return {"data": [to_json(e) for e in entries], "next_cursor": nxt, "note": None}


def list_tokens(call: Call) -> Json:
    call.ctx.plane.authorize(call.actor, "api_token")
    return {"data": [to_json(t) for t in call.ctx.plane.api_tokens(call.arg("user"))]}


def create_token(call: Call) -> Reply:
    data = body_object(call)
    for key in data:  # a typo ("expires") must not create a token that never expires
        if key not in TOKEN_FIELDS:
            raise ApiError(422, f"{key}: not a field you can set here", key)
    user, name = data.get("user"), data.get("name", "")
    if not isinstance(user, str):
        raise ApiError(422, "user: the console user the token acts for", "user")
    if not isinstance(name, str):
        raise ApiError(422, "name: must be a string", "name")
    expires: datetime | None = None
    if data.get("expires_at") is not None:
        expires = parse_time(str(data["expires_at"]), call.ctx.tz(), "expires_at", 422)
    secret, token = call.ctx.plane.create_api_token(user, call.actor, name=name, expires_at=expires)
    return Reply({**to_json(token), "token": secret}, status=201)


def revoke_token(call: Call) -> Reply:
    if not call.ctx.plane.revoke_api_token(call.path["id"], call.actor):
        raise ApiError(404, f"no active token {call.path['id']!r}")
    return Reply(None, status=204)


TOKEN_FIELDS = ("user", "name", "expires_at")
TOKEN = obj(id="string", username="string", name="string", prefix="string")
OPS = [
    Op(
        "GET",
        "/audit",
        audit,
        "The audit log, newest first (admin; cursor-paged)",
        "admin",
        params=(
            Param("entity", {"type": "string"}),
            Param("entity_id", {"type": "string"}),
            Param("actor", {"type": "string"}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            Param("cursor", {"type": "string"}),
        ),
        response=page_of(obj(id="integer", actor="string", action="string")),
    ),
    Op(
        "GET",
        "/tokens",
        list_tokens,
        "API tokens (admin); never their secrets",
        "admin",
        params=(Param("user", {"type": "string"}),),
        response=list_of(TOKEN),
    ),
    Op(
        "POST",
        "/tokens",
        create_token,
        "Create an API token for a user (admin); the secret is in this answer only",
        "admin",
        body=obj(("user",), user="string", name="string", expires_at="string"),
        response=obj(
            **TOKEN["properties"],
            token=field("string", description="the secret (clt_...): in this answer only"),
        ),
        entity="api_token",
        status=201,
    ),
    Op(
        "DELETE",
        "/tokens/{id}",
        revoke_token,
        "Revoke an API token (admin); 404 when it is revoked already",
        "admin",
        params=(Param("id", {"type": "string"}, where="path", required=True),),
        entity="api_token",
        status=204,
    ),
]
