"""The OpenAPI 3.0 document, built from the declared operations (never by hand)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.api._http import ERROR_TYPES, Op, Schema

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "enum": sorted(set(ERROR_TYPES.values()))},
                "message": {"type": "string"},
                "field": {"type": "string", "nullable": True},
            },
        }
    },
}
DESCRIPTION = (
    "Costline's management API: everything the console does, scriptable. Authenticate "
    "with `Authorization: Bearer <API token>` (tokens belong to console users and act with "
    "the user's current role). Money is an exact decimal string of USD. Editable resources "
    "carry an `ETag`; a write to an existing one needs `If-Match` (412 when stale); a GET "
    "with `If-None-Match` naming the current ETag is a 304 with no body. Errors "
    'are always `{"error": {"type", "message", "field"}}`.'
)


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": ERROR_TYPES[status].replace("_", " "),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}_{_slug(op.path)}",
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    params = [
        {
            "name": p.name,
            "in": p.where,
            "required": p.required or p.where == "path",
            "schema": p.schema,
            **({"description": p.description} if p.description else {}),
        }
        for p in op.params
    ]
    if op.etag and op.method in ("PUT", "PATCH", "DELETE", "POST"):
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "the ETag of the resource (required to change an existing one)",
            }
        )
    if op.etag and op.method == "GET":
        params.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "an ETag you hold (or several, comma-separated, or *): a 304 "
                "with no body when the resource still has it",
            }
        )
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    ok: dict[str, Any] = {"description": "OK" if op.status != 204 else "No Content"}
    if op.status != 204:
        ok["content"] = {"application/json": {"schema": op.response or {"type": "object"}}}
    if op.etag and op.status != 204:
        ok["headers"] = {"ETag": {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): ok}
    for code in op.also:
        responses[str(code)] = {**ok, "description": "Created" if code == 201 else "OK"}
    if op.etag and op.method == "GET":
        responses["304"] = {
            "description": "Not Modified: If-None-Match named the current ETag (no body)",
            "headers": {"ETag": {"schema": {"type": "string"}}},
        }
    codes = [400, 401, 403]
    if "{" in op.path:
        codes.append(404)
    if op.method != "GET":
        codes += [409, 413, 422]
    if op.etag and op.method != "GET":
        codes += [412, 428]
    codes += [c for c in op.errors if c not in codes]
    for code in codes:
        responses[str(code)] = _error_response(code)
    out["responses"] = responses
    return out


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace("-", "_")


def document(ops: Sequence[Op], *, version: str = "1") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    tags = sorted({op.tag for op in ops})
    return {
        "openapi": "3.0.3",
        "info": {"title": "Costline API", "version": version, "description": DESCRIPTION},
        "servers": [{"url": "/api/v1"}],
        "tags": [{"name": t} for t in tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
    }
