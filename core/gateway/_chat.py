"""POST /v1/chat/completions and POST /v1/messages, streamed (SSE) and not.

Per request: key (401), body (413, 400), bindings and models (403), then the Router's
``acomplete`` / ``astream``. Router errors map through ``_errors.py``; the Router has
already logged them. A stream's headers go out with its first chunk, so an error before
any output still gets its own status; a client that disconnects mid-stream cancels the
Router's stream, which cancels the upstream call and logs the partial usage (estimated,
flagged ``ClientDisconnected``, never $0).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from core import clock
from core.control import RateLimit, VirtualKey
from core.errors import BadRequest, CostlineError
from core.providers import ToolDelta
from core.types import ChatRequest, Completion, StreamChunk, new_request_id
from core.validate import check_request

from . import _anthropic as anth
from . import _openai as oai
from ._app import Gateway
from ._asgi import (
    JSON,
    SSE,
    UPSTREAM,
    ClientGone,
    HeaderList,
    Receive,
    Scope,
    Send,
    header_value,
    parse_json,
    read_body,
    request_ids,
    send_bytes,
    watch_disconnect,
)
from ._errors import HTTPError, bad_request
from ._limits import refused_headers
from ._request import Headers, headers_of, meta_of


class Shape:
    """One wire format's request parsing and response rendering."""

    endpoint = "chat"
    anthropic = False

    def parse(self, data: Any, h: Headers, key: Any, rid: str) -> tuple[ChatRequest, bool]:
        user = data.get("user") if isinstance(data, dict) else None
        meta = meta_of(h, key, user if isinstance(user, str) else None)
        return oai.chat_request(data, meta, rid)

    def ignored(self, data: Any) -> tuple[str, ...]:
        """Request fields read by nobody (every OpenAI one is sent on)."""
        return ()

    def body(self, done: Completion) -> bytes:
        return oai.chat_response(done, int(clock.timestamp()))

    def stream_open(self, req: ChatRequest, model: str) -> tuple[bytes, Any]:
        w = oai.ChunkWriter(req.request_id, model, int(clock.timestamp()))
        return w.delta({"role": "assistant", "content": ""}), w

    def stream_text(self, w: Any, text: str, logprobs: Any = None, kind: str = "content") -> bytes:
        return w.delta({kind: text}, logprobs=logprobs)  # type: ignore[no-any-return]

    def stream_tool(self, w: Any, piece: ToolDelta) -> bytes:
        return w.tool(piece)  # type: ignore[no-any-return]

    def stream_close(self, w: Any, done: Completion, include_usage: bool) -> bytes:
        return w.end(done, include_usage)  # type: ignore[no-any-return]

    def stream_error(self, err: HTTPError) -> bytes:
        return oai.ChunkWriter.error(err.openai_body())


class AnthropicShape(Shape):
    endpoint = "messages"
    anthropic = True

    def parse(self, data: Any, h: Headers, key: Any, rid: str) -> tuple[ChatRequest, bool]:
        return anth.messages_request(data, meta_of(h, key), rid), True

    def ignored(self, data: Any) -> tuple[str, ...]:
        return anth.ignored_fields(data)

    def body(self, done: Completion) -> bytes:
        return anth.message_response(done)

    def stream_open(self, req: ChatRequest, model: str) -> tuple[bytes, Any]:
        opening = anth.stream_start(req.request_id, model, anth.input_estimate(req))
        return opening, anth.Writer()

    def stream_text(self, w: Any, text: str, logprobs: Any = None, kind: str = "content") -> bytes:
        return w.delta(text)  # type: ignore[no-any-return]  # a refusal too: no other place

    def stream_close(self, w: Any, done: Completion, include_usage: bool) -> bytes:
        return w.end(done)  # type: ignore[no-any-return]

    def stream_error(self, err: HTTPError) -> bytes:
        return anth.event("error", {"error": err.anthropic_body()["error"]})


OPENAI, ANTHROPIC = Shape(), AnthropicShape()
SHUTDOWN = (
    "the gateway is shutting down: this stream ran past the drain time "
    "(COSTLINE_GATEWAY_DRAIN_S) and was cut; the partial answer is logged and priced"
)


async def chat_completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    gw.metrics.in_flight.inc()
    me = gw.begin()
    try:
        await serve(gw, scope, receive, send, OPENAI)
    finally:
        gw.end(me)
        gw.metrics.in_flight.dec()


async def messages(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    gw.metrics.in_flight.inc()
    me = gw.begin()
    try:
        await serve(gw, scope, receive, send, ANTHROPIC)
    finally:
        gw.end(me)
        gw.metrics.in_flight.dec()


def result_headers(done: Completion, overhead_s: float | None) -> HeaderList:
    cost = oai.usd_text(done.cost).encode()
    out = [
        *request_ids(done.request_id),
        (b"x-costline-cost-usd", cost),
        (b"x-costline-model", header_value(done.model)),
        (b"x-costline-provider", header_value(done.provider)),
        (b"x-costline-route-reason", header_value(done.route_reason)),
        (b"x-costline-cache", b"hit" if done.cache_hit else b"miss"),
    ]
    if done.cost.unpriced:
        out.append((b"x-costline-unpriced", b"true"))
    if done.usage.estimated:
        out.append((b"x-costline-usage-estimated", b"true"))
    if overhead_s is not None:
        out.append((b"x-costline-overhead-ms", f"{overhead_s * 1000:.3f}".encode()))
    return out


async def serve(gw: Gateway, scope: Scope, receive: Receive, send: Send, shape: Shape) -> None:
    t0 = time.perf_counter()
    rid = new_request_id()
    key_name = ""
    try:
        h = headers_of(scope)
        key = gw.key_for(h)
        key_name = key.name
        body = await read_body(receive, gw.config.max_body_bytes, h.get(b"content-length"))
        data = parse_json(body)
        req, include_usage = shape.parse(data, h, key, rid)
        ignored = shape.ignored(data)
        req.key = key.name
        try:
            check_request(req)  # the router's own checks, as a 400 naming the field
        except BadRequest as exc:
            raise bad_request(exc.message, exc.field) from None
        gw.check_models(key, req.model, req.task)
    except HTTPError as err:
        gw.metrics.request(shape.endpoint, err.status, key=key_name)
        await gw.send_error(send, err, rid, anthropic=shape.anthropic)
        return
    except ClientGone:  # left mid-upload: no one to answer, nothing called, nothing to log
        gw.metrics.request(shape.endpoint, 499, key=key_name)
        return
    router = gw.router
    assert router is not None, "gateway not started"
    limits = gw.key_limits(key)
    holder = [0.0]
    token = UPSTREAM.set(holder)
    try:
        if req.stream:
            await stream(gw, receive, send, shape, req, include_usage, key, limits, holder, ignored)
            return
        try:
            done = await router.acomplete(req)
        except CostlineError as exc:
            await _failed(gw, send, shape, req, exc, limits)
            return
    finally:
        UPSTREAM.reset(token)
    headers = [JSON, *result_headers(done, None)]
    headers += gw.unsent_headers(req, done.provider, ignored)
    if limits:
        headers += gw.limit_headers(key, limits)
    payload = shape.body(done)
    overhead = time.perf_counter() - t0 - holder[0]
    headers.append((b"x-costline-overhead-ms", f"{overhead * 1000:.3f}".encode()))
    await send_bytes(send, 200, payload, headers)
    _observe(gw, shape, req, done, overhead, holder[0])


def _observe(
    gw: Gateway,
    shape: Shape,
    req: ChatRequest,
    done: Completion,
    overhead: float | None,
    upstream: float,
) -> None:
    u = done.usage
    gw.metrics.call(
        shape.endpoint,
        done.model,
        done.provider,
        req.key or "",
        float(done.cost.usd),
        u.prompt_tokens,
        u.completion_tokens,
        done.cache_hit,
        overhead,
        upstream,
        unpriced=done.cost.unpriced,
    )


async def _failed(
    gw: Gateway,
    send: Send,
    shape: Shape,
    req: ChatRequest,
    exc: CostlineError,
    key_limits: list[RateLimit],
) -> None:
    err = gw.error_for(exc)
    limits = refused_headers(key_limits, err)
    gw.metrics.request(
        shape.endpoint, err.status, exc.model or req.model or "", exc.provider or "", req.key or ""
    )
    await gw.send_error(send, err, req.request_id, anthropic=shape.anthropic, extra=limits)


async def stream(
    gw: Gateway,
    receive: Receive,
    send: Send,
    shape: Shape,
    req: ChatRequest,
    include_usage: bool,
    key: VirtualKey,
    limits: list[RateLimit],
    holder: list[float],
    ignored: tuple[str, ...],
) -> None:
    router = gw.router
    assert router is not None
    agen: AsyncIterator[StreamChunk] = router.astream(req)
    try:
        chunk = await agen.__anext__()  # errors before any output get their own status
    except CostlineError as exc:
        await _failed(gw, send, shape, req, exc, limits)
        return
    me = asyncio.current_task()
    assert me is not None
    flags = {"done": False, "gone": False}

    def gone() -> None:
        if not flags["done"]:
            flags["gone"] = True
            me.cancel()

    watcher = asyncio.create_task(watch_disconnect(receive, gone))
    answering = chunk.provider or (chunk.completion.provider if chunk.completion else None)
    headers = [*SSE, *request_ids(req.request_id), *gw.unsent_headers(req, answering, ignored)]
    if limits:
        headers += gw.limit_headers(key, limits)
    done: Completion | None = None
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # the model answering (known with the first chunk), not a task's name
        first = chunk.model or (chunk.completion.model if chunk.completion else None)
        opening, writer = shape.stream_open(req, first or req.model or f"task:{req.task}")
        out = opening
        while True:
            if chunk.text:
                out += shape.stream_text(writer, chunk.text, chunk.logprobs, chunk.kind)
            elif chunk.tool is not None:  # a piece of a tool call (an Anthropic upstream's)
                out += shape.stream_tool(writer, chunk.tool)
            if chunk.completion is not None:
                done = chunk.completion
                flags["done"] = True
                out += shape.stream_close(writer, done, include_usage)
                await send({"type": "http.response.body", "body": out})
                break
            await send({"type": "http.response.body", "body": out, "more_body": True})
            out = b""
            chunk = await agen.__anext__()
    except StopAsyncIteration:
        flags["done"] = True
        err = HTTPError(502, "the stream ended without a result", "upstream_error")
        await send({"type": "http.response.body", "body": shape.stream_error(err)})
    except CostlineError as exc:  # after output began: an error event ends the stream
        flags["done"] = True
        err = gw.error_for(exc)
        gw.metrics.request(
            shape.endpoint, err.status, req.model or "", exc.provider or "", req.key or ""
        )
        await send({"type": "http.response.body", "body": shape.stream_error(err)})
    except asyncio.CancelledError:
        if flags["gone"]:  # our own cancel: the client left; the Router logs the partial call
            me.uncancel()
            gw.metrics.request(shape.endpoint, 499, req.model or "", "", req.key or "")
        else:  # uvicorn cancelled it (SIGTERM's drain ran out): end with an error SDKs raise
            flags["done"] = True
            err = HTTPError(503, SHUTDOWN, "server_error", "shutting_down")
            gw.metrics.request(shape.endpoint, 503, req.model or "", "", req.key or "")
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": shape.stream_error(err)})
            raise
    finally:
        watcher.cancel()
        await agen.aclose()  # type: ignore[attr-defined]
    if done is not None:
        _observe(gw, shape, req, done, None, holder[0])
