"""Small pure-ASGI helpers for the inference path: read a bounded body, send JSON or SSE."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson

from ._errors import HTTPError, bad_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HeaderList = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

# seconds this request spent waiting for upstream HTTP (the transport adds to it)
UPSTREAM: ContextVar[list[float] | None] = ContextVar("costline_upstream", default=None)


class ClientGone(Exception):
    """The client disconnected before its request body was complete (nothing to answer)."""


async def read_body(receive: Receive, limit: int, declared: bytes | None) -> bytes:
    """The whole request body; 413 past ``limit`` bytes (checked against Content-Length
    first, then while reading a chunked body); ``ClientGone`` when the client left first."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise bad_request("Content-Length is not a number") from None
        if size > limit:
            raise too_large(size, limit)
    first = await receive()
    if first["type"] == "http.disconnect":
        raise ClientGone
    body = first.get("body", b"")
    if not first.get("more_body"):
        return body  # type: ignore[no-any-return]
    parts = [body]
    total = len(body)
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise too_large(total, limit)
        parts.append(chunk)
        if not msg.get("more_body"):
            return b"".join(parts)


def too_large(size: int, limit: int) -> HTTPError:
    return HTTPError(
        413,
        f"request body of {size:,} bytes is over the gateway's limit of {limit:,} bytes "
        "(COSTLINE_GATEWAY_MAX_BODY_MB)",
        code="request_too_large",
    )


def parse_json(body: bytes) -> Any:
    if not body:
        raise bad_request("the request body is empty: send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}") from None


async def send_bytes(send: Send, status: int, body: bytes, headers: HeaderList) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# where each SDK reads an answer's request id (``_request_id``, ``APIStatusError.request_id``):
# Costline's own header, the openai SDK's and the anthropic SDK's, all the same id
REQUEST_ID_HEADERS = (b"x-costline-request-id", b"x-request-id", b"request-id")


def request_ids(request_id: str) -> list[tuple[bytes, bytes]]:
    """The request id under each name the SDKs read it by."""
    rid = request_id.encode()
    return [(name, rid) for name in REQUEST_ID_HEADERS]


def header_value(text: str) -> bytes:
    """A safe header value: ASCII, no line breaks, at most 512 characters."""
    clean = text.replace("\r", " ").replace("\n", " ")[:512]
    return clean.encode("ascii", "replace")


async def watch_disconnect(receive: Receive, on_disconnect: Callable[[], None]) -> None:
    """Wait for the client to go away (the request body was read already)."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            on_disconnect()
            return
