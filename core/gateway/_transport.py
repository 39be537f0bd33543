"""The upstream HTTP client: httpx's API over aiohttp's transport, timed per request.

Measured on this machine (tests/bench/bench_gateway.py, ``upstream_transport_cpu_ms_*``):
a thin pass-through costs a fraction of a millisecond of CPU a request over aiohttp against
~1 ms or more over httpx's default (httpcore) transport, so the gateway uses aiohttp when
it is installed. ``LeanAiohttpTransport`` calls aiohttp directly (no cookie jar, parsed
URLs and timeouts reused, the body read in whole chunks); ``GatewayClient`` is an
``httpx.AsyncClient`` that keeps no cookies (a shared gateway client must not carry one
tenant's upstream cookies into another's call) and parses each upstream URL once.
aiohttp's errors become the httpx classes the adapters expect, and time spent upstream is
added to the request's ``UPSTREAM`` holder for the overhead header and histogram.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from ._asgi import UPSTREAM

try:
    import aiohttp  # the gateway extra installs it (through httpx-aiohttp)
    import yarl
except ImportError:  # pragma: no cover
    aiohttp = None  # type: ignore[assignment]


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


def _map(exc: Exception) -> httpx.TransportError:
    """An aiohttp (or timeout) error as the httpx error the adapters handle."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(text)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(text)
    if isinstance(exc, TimeoutError):  # a read timeout (aiohttp's are TimeoutErrors too)
        return httpx.ReadTimeout(text)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(text)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(text)
    return httpx.RemoteProtocolError(text)  # disconnected, reset, bad response


class _AiohttpBody(httpx.AsyncByteStream):
    def __init__(self, resp: aiohttp.ClientResponse, holder: list[float] | None) -> None:
        self.resp = resp
        self.holder = holder

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        content = self.resp.content
        holder = self.holder
        while True:
            t0 = time.perf_counter()
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _map(exc) from exc
            finally:
                if holder is not None:
                    holder[0] += time.perf_counter() - t0
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        self.resp.release()


class LeanAiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent with aiohttp, doing per request only what a gateway needs."""

    def __init__(self, limits: httpx.Limits) -> None:
        self.limits = limits
        self.session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:  # made inside the running loop, as aiohttp wants
            connector = aiohttp.TCPConnector(
                limit=self.limits.max_connections or 0,
                keepalive_timeout=self.limits.keepalive_expiry or 5.0,
                ssl=httpx.create_ssl_context(),
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # httpx decodes content-encoding itself
                skip_auto_headers=("User-Agent", "Accept-Encoding"),  # httpx's are sent
            )
        return self.session

    def _timeout(self, t: dict[str, float | None]) -> aiohttp.ClientTimeout:
        k = (t.get("connect"), t.get("read"), t.get("pool"))
        got = self._timeouts.get(k)
        if got is None:
            got = self._timeouts[k] = aiohttp.ClientTimeout(
                sock_connect=k[0], sock_read=k[1], connect=k[2]
            )
        return got

    def _url(self, url: httpx.URL) -> yarl.URL:
        text = str(url)
        got = self._urls.get(text)
        if got is None:
            if len(self._urls) > 1024:
                self._urls.clear()
            got = self._urls[text] = yarl.URL(text, encoded=True)
        return got

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        holder = UPSTREAM.get()
        session = self._session()
        try:
            data: Any = request.content or None
        except httpx.RequestNotRead:
            data = request.stream
        t0 = time.perf_counter()
        try:
            resp = await session.request(
                request.method,
                self._url(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=self._timeout(request.extensions.get("timeout", {})),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _map(exc) from exc
        finally:
            if holder is not None:
                holder[0] += time.perf_counter() - t0
        return httpx.Response(
            status_code=resp.status,
            headers=resp.raw_headers,
            stream=_AiohttpBody(resp, holder),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


class _NoCookies(httpx.Cookies):
    """Cookies that are never stored nor sent."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None

    def __bool__(self) -> bool:
        return False


class GatewayClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` without cookies that parses each URL string once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies()
        self._merged: dict[str, httpx.URL] = {}

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if not isinstance(url, str):
            return super()._merge_url(url)
        got = self._merged.get(url)
        if got is None:
            if len(self._merged) > 1024:
                self._merged.clear()
            got = self._merged[url] = super()._merge_url(url)
        return got


def upstream_client(kind: str = "auto", timeout: float = 600.0) -> httpx.AsyncClient:
    """The shared async client; ``kind`` 'aiohttp', 'httpx' or 'auto' (aiohttp if present)."""
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    inner: httpx.AsyncBaseTransport
    if kind in ("auto", "aiohttp") and aiohttp is not None:
        return GatewayClient(transport=LeanAiohttpTransport(limits), timeout=timeout)
    if kind == "aiohttp":
        raise RuntimeError("aiohttp is not installed: pip install 'costline[gateway]'")
    inner = httpx.AsyncHTTPTransport(limits=limits)
    return GatewayClient(transport=GatewayTransport(inner), timeout=timeout)
