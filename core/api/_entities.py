"""Editable control-plane entities as REST resources, one declaration each.

    GET    /things            list           (viewer)
    GET    /things/{key}      one, with ETag (viewer)
    PUT    /things/{key}      create or replace; replacing needs If-Match   (role by entity)
    PATCH  /things/{key}      change some fields; needs If-Match
    DELETE /things/{key}      needs If-Match
    POST   /things            create (409 when it exists), for entities with a generated id

The compare with If-Match happens inside the control plane's write transaction
(``ControlPlane.expect``), so two engineers cannot both win a race.

Fields named in ``secrets`` (a budget's ``webhook_url``: a token in its path or query) are
shown in full only to roles that may change the entity; the others read them redacted
(``scheme://host/[redacted]#<8 hex>``, as the audit log). The ETag is computed over the
redacted form for every role, so it is the same for the same stored row whoever reads it (and
still changes with the URL: the digest does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.api._coerce import build, schema_of, to_json
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
from core.api._schemas import list_of
from core.control import Actor, ControlPlane, can, redact_url


@dataclass(frozen=True)
class Entity:
    name: str  # control-plane entity (also the role check), e.g. "budget"
    label: str  # for messages, e.g. "budget"
    path: str  # e.g. "/budgets"
    key: str  # the key field, e.g. "id"
    cls: type
    all: Callable[[ControlPlane], Sequence[Any]]
    upsert: Callable[[ControlPlane, Any, Actor], Any]
    delete: Callable[[ControlPlane, str, Actor], bool]
    tag: str
    money: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()  # fields the server owns
    post: bool = False  # create with POST /things (else PUT /things/{key})
    patch: bool = True
    secrets: tuple[str, ...] = ()  # shown redacted to roles that may not change the entity

    def find(self, plane: ControlPlane, key: str) -> Any | None:
        return next((x for x in self.all(plane) if str(getattr(x, self.key)) == key), None)

    def public(self, value: Any) -> Json:
        """The JSON form with the secret fields redacted: what viewers read, and what the
        ETag is computed over (for every role)."""
        body = to_json(value)
        for name in self.secrets:
            if isinstance(body.get(name), str):
                body[name] = redact_url(body[name])
        return body

    def shown(self, call: Call, value: Any) -> Json:
        """The JSON form for this caller: in full to a role that may change it."""
        return to_json(value) if can(call.actor.role, self.name) else self.public(value)

    def etag(self, value: Any) -> str:
        return etag_of(self.public(value))

    def check(self, call: Call, before: Any) -> None:
        """The If-Match rule against the stored value (None: it does not exist)."""
        check_if_match(call, None if before is None else self.public(before), what=self.label)

    def reply(self, call: Call, value: Any, status: int = 200) -> Reply:
        return Reply(self.shown(call, value), status=status, etag=self.etag(value))


def _current(ent: Entity, call: Call, key: str) -> Any | None:
    return ent.find(call.ctx.plane, key)


def _guarded(ent: Entity, call: Call, write: Callable[[], Any]) -> Any:
    """Run ``write`` with the If-Match check inside the plane's write transaction."""
    with call.ctx.plane.expect(lambda before: ent.check(call, before)):
        return write()


def entity_ops(ent: Entity) -> list[Op]:
    item = f"{ent.path}/{{{ent.key}}}"
    key_param = Param(ent.key, {"type": "string"}, where="path", required=True)
    schema = schema_of(ent.cls, money=ent.money)
    for name in ent.secrets:
        schema["properties"][name]["description"] = (
            "holds a secret: roles that may not change it read "
            "`scheme://host/[redacted]#<8 hex of its SHA-256>`; sending that back keeps the "
            "stored value (another redacted value is a 422)"
        )
    writable = {k: v for k, v in schema["properties"].items() if k not in ent.fixed}
    body_schema = {"type": "object", "properties": writable}

    def list_all(call: Call) -> Json:
        return {"data": [ent.shown(call, x) for x in ent.all(call.ctx.plane)]}

    def get_one(call: Call) -> Reply:
        key = call.path[ent.key]
        found = _current(ent, call, key)
        if found is None:
            raise ApiError(404, f"no {ent.label} {key!r}")
        return ent.reply(call, found)

    def put(call: Call) -> Reply:
        key = call.path[ent.key]
        data = body_object(call)
        if ent.key in data and str(data[ent.key]) != key:
            raise ApiError(
                422, f"{ent.key}: the body says {data[ent.key]!r}, the path {key!r}", ent.key
            )
        value: Any = build(ent.cls, {**data, ent.key: key}, None, fixed=ent.fixed)
        existed = _current(ent, call, key) is not None
        stored = _guarded(ent, call, lambda: ent.upsert(call.ctx.plane, value, call.actor))
        return ent.reply(call, stored, 200 if existed else 201)

    def patch(call: Call) -> Reply:
        key = call.path[ent.key]
        data = body_object(call)
        base = _current(ent, call, key)
        if base is None:
            raise ApiError(404, f"no {ent.label} {key!r}")
        value: Any = build(ent.cls, data, base, fixed=(*ent.fixed, ent.key))
        stored = _guarded(ent, call, lambda: ent.upsert(call.ctx.plane, value, call.actor))
        return ent.reply(call, stored)

    def post(call: Call) -> Reply:
        data = body_object(call)
        if ent.key not in data:
            raise ApiError(422, f"{ent.key}: required", ent.key)
        value: Any = build(ent.cls, data, None, fixed=ent.fixed)
        key = str(getattr(value, ent.key))
        if _current(ent, call, key) is not None:
            raise ApiError(409, f"{ent.label} {key!r} already exists: PATCH it instead")

        def create(before: Any) -> None:
            if before is not None:
                raise ApiError(409, f"{ent.label} {key!r} already exists: PATCH it instead")

        with call.ctx.plane.expect(create):
            stored = ent.upsert(call.ctx.plane, value, call.actor)
        return ent.reply(call, stored, 201)

    def delete(call: Call) -> Reply:
        key = call.path[ent.key]
        if _current(ent, call, key) is None:
            raise ApiError(404, f"no {ent.label} {key!r}")
        if not call.if_match:
            raise ApiError(428, f"send If-Match with the {ent.label}'s ETag to delete it")
        _guarded(ent, call, lambda: ent.delete(call.ctx.plane, key, call.actor))
        return Reply(None, status=204)

    ops = [
        Op("GET", ent.path, list_all, f"List {ent.label}s", ent.tag, response=list_of(schema)),
        Op(
            "GET",
            item,
            get_one,
            f"One {ent.label} (with its ETag)",
            ent.tag,
            params=(key_param,),
            response=schema,
            etag=True,
        ),
    ]
    if ent.post:
        ops.append(
            Op(
                "POST",
                ent.path,
                post,
                f"Create a {ent.label}",
                ent.tag,
                body=body_schema,
                response=schema,
                entity=ent.name,
                status=201,
                etag=True,
            )
        )
    else:
        ops.append(
            Op(
                "PUT",
                item,
                put,
                f"Create or replace a {ent.label} (If-Match to replace)",
                ent.tag,
                params=(key_param,),
                body=body_schema,
                response=schema,
                entity=ent.name,
                etag=True,
                also=(201,),
            )
        )
    if ent.patch:
        ops.append(
            Op(
                "PATCH",
                item,
                patch,
                f"Change some fields of a {ent.label} (If-Match required)",
                ent.tag,
                params=(key_param,),
                body=body_schema,
                response=schema,
                entity=ent.name,
                etag=True,
            )
        )
    ops.append(
        Op(
            "DELETE",
            item,
            delete,
            f"Delete a {ent.label} (If-Match required)",
            ent.tag,
            params=(key_param,),
            entity=ent.name,
            status=204,
            etag=True,
        )
    )
    return ops
