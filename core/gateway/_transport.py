"""The upstream HTTP client: httpx's API over aiohttp's transport, timed per request.

Measured on this machine (tests/bench/bench_gateway.py, ``transport_*`` figures): a thin
pass-through costs ~0.2 ms CPU a request over aiohttp against ~0.9-1.0 ms over httpx's
default (httpcore) transport, so the gateway uses aiohttp when ``httpx-aiohttp`` is
installed. Its errors are re-mapped to the httpx classes the adapters expect (the package
maps a refused connection to a timeout), and time spent upstream is added to the
request's ``UPSTREAM`` holder for the overhead header and histogram.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from ._asgi import UPSTREAM

try:
    import aiohttp
    from httpx_aiohttp import AiohttpTransport
except ImportError:  # pragma: no cover - the gateway extra installs both
    aiohttp = None  # type: ignore[assignment]
    AiohttpTransport = None  # type: ignore[assignment,misc]


def _remap(exc: httpx.TransportError) -> httpx.TransportError:
    cause = exc.__cause__
    if aiohttp is None or cause is None:
        return exc
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(cause))
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return httpx.ReadTimeout(str(cause))
    if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return httpx.RemoteProtocolError(str(cause) or type(cause).__name__)
    return exc


class _TimedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, holder: list[float] | None) -> None:
        self.inner = inner
        self.holder = holder

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        it = self.inner.__aiter__()
        while True:
            t0 = time.perf_counter()
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                return
            except httpx.TransportError as exc:
                raise _remap(exc) from exc.__cause__
            finally:
                if self.holder is not None:
                    self.holder[0] += time.perf_counter() - t0
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


class GatewayTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: upstream time per request, aiohttp errors as httpx's."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        holder = UPSTREAM.get()
        t0 = time.perf_counter()
        try:
            resp = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            raise _remap(exc) from exc.__cause__
        finally:
            if holder is not None:
                holder[0] += time.perf_counter() - t0
        stream = resp.stream
        if isinstance(stream, httpx.AsyncByteStream):
            resp.stream = _TimedStream(stream, holder)
        return resp

    async def aclose(self) -> None:
        await self.inner.aclose()


def upstream_client(kind: str = "auto", timeout: float = 600.0) -> httpx.AsyncClient:
    """The shared async client; ``kind`` 'aiohttp', 'httpx' or 'auto' (aiohttp if present)."""
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    inner: httpx.AsyncBaseTransport
    if kind in ("auto", "aiohttp") and AiohttpTransport is not None:
        inner = AiohttpTransport(limits=limits)
    elif kind == "aiohttp":
        raise RuntimeError("httpx-aiohttp is not installed: pip install 'costline[gateway]'")
    else:
        inner = httpx.AsyncHTTPTransport(limits=limits)
    return httpx.AsyncClient(transport=GatewayTransport(inner), timeout=timeout)
