"""The Starlette app: every declared operation as a route, token auth, one error shape,
the OpenAPI document at ``/api/v1/openapi.json`` and Swagger UI at ``/api/docs``.

    app = create_app()                  # routes under /api/v1, docs at /api/docs
    uvicorn.run(app, port=8600)         # or: costline api --port 8600
    Mount("/api", create_app(root=""))  # inside another app (the gateway)

Each request: read the bearer token, find its user and the role stored now
(``ControlPlane.token_actor``), check the operation's entity with ``authorize`` (writes
check again inside their transaction), run the handler in a worker thread, answer JSON.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.api import (
    _admin,
    _alerts,
    _budgets,
    _controls,
    _docs,
    _http,
    _insights,
    _keys,
    _limits,
    _prices,
    _settings,
    _usage,
)
from core.api._context import Context
from core.api._http import ApiError, Call, Op, Reply, dumps
from core.api._openapi import document
from core.errors import ConfigError, CostlineError, PermissionDenied
from core.usage import Reader

log = logging.getLogger("costline.api")

OPS: list[Op] = [
    *_usage.OPS,
    *_budgets.OPS,
    *_limits.OPS,
    *_controls.OPS,
    *_prices.OPS,
    *_insights.OPS,
    *_alerts.OPS,
    *_admin.OPS,
    *_keys.OPS,
    *_settings.OPS,
]
JSON = "application/json"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if status == 204:
        return Response(status_code=204, headers=headers)
    return Response(dumps(body), status_code=status, media_type=JSON, headers=headers)


def _error(exc: ApiError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json(exc.body(), exc.status, headers)


def translate(exc: Exception) -> ApiError:
    """Core errors as API errors."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PermissionDenied):
        return ApiError(403, str(exc))
    if isinstance(exc, ConfigError):
        field = exc.field
        return ApiError(422, str(exc), field)
    if isinstance(exc, CostlineError):
        return ApiError(400, str(exc))
    raise exc


async def _routing_error(request: Request, exc: Exception) -> Response:
    """No route, or not this method: the one error shape too (Starlette answered plain
    text), with the Allow header of a 405."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    path = request.url.path
    if status == 405:
        allowed = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        err = ApiError(405, f"{request.method} {path}: not allowed here (allowed: {allowed})")
    elif status == 404:
        err = ApiError(404, f"no such path {path!r}: see /api/v1/openapi.json")
    else:
        err = ApiError(status, str(getattr(exc, "detail", "")) or "error")
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return _json(err.body(), status, headers or None)


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "send Authorization: Bearer <API token>")
    return value.strip()


def _too_large(size: str) -> ApiError:
    limit = _http.MAX_BODY_BYTES
    return ApiError(
        413, f"the request body is {size}: at most {limit:,} bytes ({limit // 2**20} MiB)", "body"
    )


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) past ``MAX_BODY_BYTES``: by its Content-Length before reading
    any of it, else (chunked) as soon as what arrived passes the limit."""
    limit = _http.MAX_BODY_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"{int(declared):,} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _too_large(f"over {limit:,} bytes")
    return bytes(raw)


def _endpoint(ctx: Context, op: Op) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            secret = _token(request)
            body: Any = None
            if op.body is not None or op.method in ("POST", "PUT", "PATCH"):
                raw = await _read_body(request)
                if raw.strip():
                    try:
                        body = orjson.loads(raw)
                    except orjson.JSONDecodeError as exc:
                        raise ApiError(400, f"the body is not valid JSON: {exc}", "body") from None
                elif op.body is not None and op.body.get("required"):
                    raise ApiError(400, "a JSON body is required", "body")
            query: dict[str, list[str]] = {}
            for k, v in request.query_params.multi_items():
                query.setdefault(k, []).append(v)
            return await run_in_threadpool(_run, ctx, op, request, secret, query, body)
        except ApiError as exc:
            return _error(exc)

    return endpoint


def _run(
    ctx: Context,
    op: Op,
    request: Request,
    secret: str,
    query: dict[str, list[str]],
    body: Any,
) -> Response:
    try:
        try:
            actor = ctx.plane.token_actor(secret)
        except PermissionDenied as exc:
            raise ApiError(401, str(exc)) from None
        if op.entity is not None:
            ctx.plane.authorize(actor, op.entity)
        _check_query(op, query)
        call = Call(
            ctx=ctx,
            actor=actor,
            query=query,
            path={k: str(v) for k, v in request.path_params.items()},
            body=body,
            if_match=request.headers.get("if-match"),
            if_none_match=request.headers.get("if-none-match"),
        )
        result = op.handler(call)
        reply = result if isinstance(result, Reply) else Reply(result, status=op.status)
        headers = dict(reply.headers)
        if reply.etag:
            headers["ETag"] = reply.etag
            fresh = _http.none_match(call.if_none_match, reply.etag)
            if fresh and op.method == "GET" and reply.status == 200:
                return Response(status_code=304, headers=headers)  # no body
        return _json(reply.body, reply.status, headers)
    except Exception as exc:  # noqa: BLE001 - every core error becomes the one error shape
        try:
            return _error(translate(exc))
        except Exception:
            log.exception("API %s %s failed", op.method, op.path)
            return _json(
                {"error": {"type": "internal", "message": "internal error", "field": None}}, 500
            )


def _check_query(op: Op, query: dict[str, list[str]]) -> None:
    """A query parameter the operation does not take is a 400 naming it (``?grup_by=day``
    would otherwise answer the ungrouped totals as if asked for them)."""
    known = [p.name for p in op.params if p.where == "query"]
    for name in query:
        if name not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise ApiError(400, f"{name}: not a parameter of {op.method} {op.path} ({takes})", name)


def _route_path(op: Op) -> str:
    """The route of ``op``: a string path parameter matches a slash too (ids, tasks and key
    names may hold one: budget 'team/a' is /budgets/team/a or /budgets/team%2Fa, as Swagger
    UI sends it); the routes are tried longest template first."""
    path = op.path
    for p in op.params:
        if p.where == "path" and p.schema.get("type") == "string":
            path = path.replace(f"{{{p.name}}}", f"{{{p.name}:path}}")
    return path


def routes(ctx: Context, root: str = "/api") -> list[BaseRoute]:
    doc = document(OPS)
    base = f"{root}/v1"

    async def openapi(_: Request) -> Response:
        return _json(doc)

    out: list[BaseRoute] = [Route(f"{base}/openapi.json", openapi, methods=["GET"])]
    # the longest templates first: /budgets/{id}/status before /budgets/{id}, whose id may
    # hold a slash (see _route_path)
    for op in sorted(OPS, key=lambda o: -o.path.count("/")):
        out.append(Route(base + _route_path(op), _endpoint(ctx, op), methods=[op.method]))
    out += _docs.routes(root, f"{base}/openapi.json")
    return out


def create_app(
    home: Path | None = None,
    *,
    root: str = "/api",
    context: Context | None = None,
    reader: Reader | None = None,
) -> Starlette:
    """The API as an ASGI app. ``root`` is where it lives ("" when mounted under /api)."""
    ctx = context or Context(home, reader=reader)
    own = context is None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if own:
            ctx.close()

    app = Starlette(
        routes=routes(ctx, root),
        lifespan=lifespan,
        exception_handlers={HTTPException: _routing_error},
    )
    app.state.costline = ctx
    return app


def operations() -> Sequence[Op]:
    return OPS
