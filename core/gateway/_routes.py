"""The Starlette routes: health, metrics, models, embeddings and count_tokens."""

from __future__ import annotations

import asyncio
import hmac
import time
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from core import tokens
from core.control import TOKEN_PREFIX
from core.errors import CostlineError, PermissionDenied
from core.types import new_request_id

from . import _anthropic as anth
from . import _openai as oai
from ._asgi import REQUEST_ID_HEADERS, UPSTREAM, ClientGone, parse_json
from ._errors import HTTPError, bad_request
from ._limits import refused_headers
from ._request import headers_of, meta_of

if TYPE_CHECKING:
    from ._app import Gateway


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status, headers, media_type="application/json")


def _error(err: HTTPError, rid: str, anthropic: bool = False) -> Response:
    body = err.anthropic_body() if anthropic else err.openai_body()
    headers = {k.decode(): v.decode() for k, v in err.headers()}
    headers |= {name.decode(): rid for name in REQUEST_ID_HEADERS}
    return _json(body, err.status_for(anthropic), headers)


async def _body(gw: Gateway, request: Request) -> Any:
    limit = gw.config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        from ._asgi import too_large

        raise too_large(int(declared), limit)
    try:
        body = await request.body()
    except ClientDisconnect:
        raise ClientGone from None
    if len(body) > limit:
        from ._asgi import too_large

        raise too_large(len(body), limit)
    return parse_json(body)


def routes(gw: Gateway) -> list[Route]:
    async def live(request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(request: Request) -> Response:
        """200 when the control plane (and Redis, when configured) answer; else 503."""
        checks: dict[str, str] = {}
        router = gw.router
        if router is None or router.controls is None:
            return _json({"status": "starting", "checks": checks}, 503)
        ctl = router.controls
        try:
            await asyncio.to_thread(ctl.plane.version)
            checks["control_plane"] = "ok"
        except Exception as exc:  # any driver error means not ready
            checks["control_plane"] = f"error: {type(exc).__name__}"
        state = ctl.state
        primary = getattr(state, "primary", None)
        if primary is not None:
            try:
                client = primary.client
                await asyncio.to_thread(client.ping)
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
        shipper = getattr(router.log, "_shipper", None)
        if shipper is not None:  # the bucket's outbox: reported, never a reason to be unready
            body["usage_outbox"] = await asyncio.to_thread(shipper.status)
        if gw.worker_status is not None:  # reported too: the gateway serves without alerts
            body["alert_worker"] = gw.worker_status.as_dict()
        return _json(body, 200 if ok else 503)

    async def metrics(request: Request) -> Response:
        """Prometheus text, for ``COSTLINE_GATEWAY_METRICS_TOKEN`` or an admin's API token
        (``Authorization: Bearer``): it names every key and what each one spent."""
        if not gw.config.metrics_public:
            refused = await asyncio.to_thread(_metrics_refusal, gw, request)
            if refused is not None:
                return refused
        body, content_type = await asyncio.to_thread(gw.metrics.render)
        return Response(body, 200, media_type=content_type)

    def model_row(name: str, anthropic: bool = False) -> dict[str, Any]:
        """OpenAI's model object; for the Anthropic SDK (anthropic-version sent) with its
        ModelInfo fields too, which it would read as None otherwise."""
        router = gw.router
        assert router is not None
        row = router.catalog.lookup(name)
        out: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": row.provider,
        }
        if anthropic:
            out |= {
                "type": "model",
                "display_name": name,
                "created_at": "1970-01-01T00:00:00Z",  # as "created": 0, not known
                "max_input_tokens": row.context_window,
                "max_tokens": row.max_output_tokens,
            }
        out["costline"] = {
            "input_usd_per_1m": str(_per_1m(row.input)),
            "cached_input_usd_per_1m": str(_per_1m(row.cached_input)),
            "output_usd_per_1m": str(_per_1m(row.output)),
            "context_window": row.context_window,
            "max_output_tokens": row.max_output_tokens,
        }
        return out

    async def models(request: Request) -> Response:
        rid = new_request_id()
        try:
            key = gw.key_for(headers_of(request.scope))
        except HTTPError as err:
            return _error(err, rid, _anthropic_client(request))
        router = gw.router
        assert router is not None
        anthropic = _anthropic_client(request)
        names = [name for name in router.catalog.models() if key.allows(name)]
        data = [model_row(name, anthropic) for name in names]
        if not anthropic:
            return _json({"object": "list", "data": data})
        first, last = (names[0], names[-1]) if names else (None, None)
        page = {"has_more": False, "first_id": first, "last_id": last}
        return _json({"object": "list", "data": data, **page})

    async def model(request: Request) -> Response:
        """One model of the list (``client.models.retrieve``): 404 when unknown or when the
        key may not use it."""
        rid = new_request_id()
        anthropic = _anthropic_client(request)
        try:
            key = gw.key_for(headers_of(request.scope))
        except HTTPError as err:
            return _error(err, rid, anthropic)
        router = gw.router
        assert router is not None
        name = request.path_params["model"]
        cat = router.catalog
        canonical = cat.canonical(name) if cat.has(name) else None
        if canonical is None or not key.allows(canonical):
            missing = HTTPError(
                404,
                f"model {name!r} is not one this key may use (GET /v1/models lists them)",
                code="model_not_found",
                param="model",
            )
            return _error(missing, rid, anthropic)
        return _json(model_row(canonical, anthropic))

    async def embeddings(request: Request) -> Response:
        t0 = time.perf_counter()
        rid = new_request_id()
        key_name = ""
        try:
            h = headers_of(request.scope)
            key = gw.key_for(h)
            key_name = key.name
            data = await _body(gw, request)
            user = data.get("user") if isinstance(data, dict) else None
            meta = meta_of(h, key, user if isinstance(user, str) else None)
            req, fmt = oai.embed_request(data, meta, rid)
            req.key = key.name
            gw.check_models(key, req.model, None)
        except HTTPError as err:
            gw.metrics.request("embeddings", err.status, key=key_name)
            return _error(err, rid)
        except ClientGone:  # left mid-upload: nobody reads this answer
            gw.metrics.request("embeddings", 499, key=key_name)
            return Response(status_code=499)
        router = gw.router
        assert router is not None
        holder = [0.0]
        token = UPSTREAM.set(holder)
        try:
            done = await router.aembed(req)
        except CostlineError as exc:
            failed = gw.error_for(exc)
            gw.metrics.request("embeddings", failed.status, req.model, exc.provider or "", key.name)
            out = _error(failed, rid)  # with the key's limits, as chat's refusals have them
            for k, v in refused_headers(gw.key_limits(key), failed):
                out.headers[k.decode()] = v.decode()
            return out
        finally:
            UPSTREAM.reset(token)
        overhead = time.perf_counter() - t0 - holder[0]
        u = done.usage
        gw.metrics.call(
            "embeddings",
            done.model,
            done.provider,
            key.name,
            float(done.cost.usd),
            u.input_tokens,
            0,
            False,
            overhead,
            holder[0],
            unpriced=done.cost.unpriced,
        )
        headers = {
            **{name.decode(): rid for name in REQUEST_ID_HEADERS},
            "x-costline-cost-usd": oai.usd_text(done.cost),
            "x-costline-model": done.model,
            "x-costline-provider": done.provider,
            "x-costline-overhead-ms": f"{overhead * 1000:.3f}",
        }
        if done.cost.unpriced:  # "0" alone would read as free: the model has no price
            headers["x-costline-unpriced"] = "true"
        if u.estimated:
            headers["x-costline-usage-estimated"] = "true"
        headers.update((k.decode(), v.decode()) for k, v in gw.limit_headers(key))
        return Response(oai.embed_response(done, fmt), 200, headers, media_type="application/json")

    async def count_tokens(request: Request) -> Response:
        """Anthropic's count_tokens: Costline's offline count (flagged when estimated), for
        the models the key may use (403 otherwise, as chat)."""
        rid = new_request_id()
        try:
            key = gw.key_for(headers_of(request.scope))
            data = await _body(gw, request)
            if not isinstance(data, dict) or not isinstance(data.get("model"), str):
                raise bad_request("model: required, a string", "model")
            gw.check_models(key, data["model"], None)
            req = anth.count_request(data)
        except HTTPError as err:
            return _error(err, rid, anthropic=True)
        except ClientGone:
            return Response(status_code=499)
        count = tokens.count_request(data["model"], req.messages, req.extra)
        return _json({"input_tokens": count.tokens, "costline": {"estimated": count.estimated}})

    return [
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model, methods=["GET"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]


async def not_served(request: Request, exc: Exception) -> Response:
    """404 / 405 for a path or method the gateway does not serve, in the error shape the
    SDKs parse (Starlette's default is a text/plain 'Not Found')."""
    status = getattr(exc, "status_code", 404)
    if status == 405:
        msg = f"{request.method} is not allowed on {request.url.path}"
    else:
        msg = f"the gateway serves no {request.method} {request.url.path}"
    err = HTTPError(status, msg, code="not_found" if status == 404 else "method_not_allowed")
    out = _error(err, new_request_id(), _anthropic_client(request))
    allow = getattr(exc, "headers", None) or {}
    if "allow" in {k.lower() for k in allow}:
        out.headers.update(allow)
    return out


def _metrics_refusal(gw: Gateway, request: Request) -> Response | None:
    """None when the request may read /metrics; else the 401 / 403 to send."""
    auth = request.headers.get("authorization", "")
    scheme, _, secret = auth.partition(" ")
    secret = secret.strip() if scheme.lower() == "bearer" else ""
    challenge = {"WWW-Authenticate": 'Bearer realm="costline-metrics"'}
    if not secret:
        return _metrics_error(
            401,
            "/metrics needs 'Authorization: Bearer <token>': COSTLINE_GATEWAY_METRICS_TOKEN, "
            "or an admin's API token",
            challenge,
        )
    token = gw.config.metrics_token
    if token and hmac.compare_digest(secret.encode(), token.encode()):
        return None
    router = gw.router
    plane = None if router is None or router.controls is None else router.controls.plane
    if plane is not None and secret.startswith(TOKEN_PREFIX):
        try:
            actor = plane.token_actor(secret)
        except PermissionDenied as exc:
            return _metrics_error(401, exc.message, challenge)
        if actor.role == "admin":
            return None
        return _metrics_error(403, f"user {actor.username!r} is not an admin", {})
    return _metrics_error(401, "invalid metrics token", challenge)


def _metrics_error(status: int, message: str, headers: dict[str, str]) -> Response:
    code = "unauthorized" if status == 401 else "forbidden"
    return _json({"error": {"message": message, "type": code, "code": code}}, status, headers)


def _anthropic_client(request: Request) -> bool:
    """The Anthropic SDK sends anthropic-version on every request: answer errors its way."""
    return "anthropic-version" in request.headers


def _per_1m(pico_per_token: int | Fraction) -> Decimal:
    """USD per 1M tokens from pUSD per token (an int, or an exact Fraction)."""
    rate = Fraction(pico_per_token)
    return (Decimal(rate.numerator) / Decimal(rate.denominator)).scaleb(-6).normalize()
