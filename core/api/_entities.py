"""Editable control-plane entities as REST resources, one declaration each.

    GET    /things            list           (viewer)
    GET    /things/{key}      one, with ETag (viewer)
    PUT    /things/{key}      create or replace; replacing needs If-Match   (role by entity)
    PATCH  /things/{key}      change some fields; needs If-Match
    DELETE /things/{key}      needs If-Match
    POST   /things            create (409 when it exists), for entities with a generated id

The compare with If-Match happens inside the control plane's write transaction
(``ControlPlane.expect``), so two engineers cannot both win a race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.api._coerce import build, schema_of, to_json
from core.api._http import ApiError, Call, Json, Op, Param, Reply, body_object, check_if_match
from core.api._schemas import list_of
from core.control import Actor, ControlPlane


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

    def find(self, plane: ControlPlane, key: str) -> Any | None:
        return next((x for x in self.all(plane) if str(getattr(x, self.key)) == key), None)


def _current(ent: Entity, call: Call, key: str) -> Any | None:
    return ent.find(call.ctx.plane, key)


def _guarded(ent: Entity, call: Call, write: Callable[[], Any]) -> Any:
    """Run ``write`` with the If-Match check inside the plane's write transaction."""

    def check(before: Any) -> None:
        check_if_match(call, None if before is None else to_json(before), what=ent.label)

    with call.ctx.plane.expect(check):
        return write()


def _reply(value: Any, status: int = 200) -> Reply:
    from core.api._http import etag_of

    body = to_json(value)
    return Reply(body, status=status, etag=etag_of(body))


def entity_ops(ent: Entity) -> list[Op]:
    item = f"{ent.path}/{{{ent.key}}}"
    key_param = Param(ent.key, {"type": "string"}, where="path", required=True)
    schema = schema_of(ent.cls, money=ent.money)
    writable = {k: v for k, v in schema["properties"].items() if k not in ent.fixed}
    body_schema = {"type": "object", "properties": writable}

    def list_all(call: Call) -> Json:
        return {"data": [to_json(x) for x in ent.all(call.ctx.plane)]}

    def get_one(call: Call) -> Reply:
        key = call.path[ent.key]
        found = _current(ent, call, key)
        if found is None:
            raise ApiError(404, f"no {ent.label} {key!r}")
        return _reply(found)

    def put(call: Call) -> Reply:
        key = call.path[ent.key]
        data = body_object(call)
        if ent.key in data and str(data[ent.key]) != key:
            raise ApiError(422, f"{ent.key}: the body says {data[ent.key]!r}, the path {key!r}")
        value: Any = build(ent.cls, {**data, ent.key: key}, None, fixed=ent.fixed)
        existed = _current(ent, call, key) is not None
        stored = _guarded(ent, call, lambda: ent.upsert(call.ctx.plane, value, call.actor))
        return _reply(stored, 200 if existed else 201)

    def patch(call: Call) -> Reply:
        key = call.path[ent.key]
        data = body_object(call)
        base = _current(ent, call, key)
        if base is None:
            raise ApiError(404, f"no {ent.label} {key!r}")
        value: Any = build(ent.cls, data, base, fixed=(*ent.fixed, ent.key))
        return _reply(_guarded(ent, call, lambda: ent.upsert(call.ctx.plane, value, call.actor)))

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
        return _reply(stored, 201)

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
