"""JSON over HTTP with SSE streaming, shared by every HTTP wire protocol.

A subclass implements three small hooks (``build_request``, ``parse_response``,
``parse_event``); transport, SSE decoding, timeouts and error mapping live here once and are
shared by the sync and async paths.
"""

from __future__ import annotations

import functools
import ssl
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import orjson

from core.errors import AuthError, CostlineError
from core.providers._errors import Where, for_status, for_transport, malformed
from core.providers._sse import SSEDecoder
from core.providers.base import Provider, ProviderResult, StreamItem, TextDelta, ToolDelta
from core.settings import DEFAULT_BASE_URLS, ENV_KEY_NAMES
from core.types import ChatRequest, Usage

_PARSE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every default client: building one costs ~50 ms."""
    return httpx.create_ssl_context()


@dataclass(slots=True)
class StreamState:
    """What a stream has told us so far; ``parse_event`` updates it."""

    model: str
    where: Where
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    done: bool = False  # the terminal event arrived
    chunks: int = 0  # text deltas handed to the caller
    status: int | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # streamed, by index
    stop_sequence: str | None = None
    usage_details: dict[str, Any] | None = None  # see ProviderResult
    system_fingerprint: str | None = None

    def result(self) -> ProviderResult:
        text = "".join(self.parts)
        choices = None
        if self.tool_calls:  # the streamed tool calls, assembled as one final message
            calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            message = {"role": "assistant", "content": text or None, "tool_calls": calls}
            choices = [{"index": 0, "message": message, "finish_reason": self.finish_reason}]
        return ProviderResult(
            text,
            self.usage,
            self.finish_reason,
            self.model,
            choices,
            self.stop_sequence,
            self.usage_details,
            self.system_fingerprint,
        )


def _whole(result: ProviderResult) -> str | TextDelta:
    """A stream the server answered as one JSON body: its text as one delta, with the first
    choice's logprobs when it sent any."""
    lp = (result.choices[0].get("logprobs") if result.choices else None) or None
    return result.text if lp is None else TextDelta(result.text, lp)


class HTTPProvider(Provider):
    """JSON over HTTP with SSE streaming. Subclasses implement the three hooks below."""

    terminal: ClassVar[str] = "the terminal event"

    @abstractmethod
    def build_request(
        self, req: ChatRequest, model: str, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(path under base_url, headers, JSON body)."""

    @abstractmethod
    def parse_response(self, data: dict[str, Any], model: str) -> ProviderResult:
        """A non-streamed JSON body to a result; KeyError/TypeError mean malformed."""

    def body_error(self, data: dict[str, Any]) -> int | None:
        """The HTTP status of an error a server answered with a 2xx status, else None."""
        return None

    @abstractmethod
    def parse_event(
        self, state: StreamState, event: str, data: str
    ) -> str | TextDelta | ToolDelta | None:
        """One SSE event: update ``state``, return a text delta or a tool-call piece (or
        None)."""

    # ---- clients ----------------------------------------------------------------------
    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.config.timeout_s, verify=_tls())
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        if self._aclient is None:
            with self._lock:
                if self._aclient is None:
                    self._aclient = httpx.AsyncClient(timeout=self.config.timeout_s, verify=_tls())
        return self._aclient

    # ---- shared logic -----------------------------------------------------------------
    def _prepare(
        self, req: ChatRequest, model: str, stream: bool
    ) -> tuple[str, dict[str, str], bytes, float, Where]:
        if not self.config.api_key:
            self._need_key(model)
        path, headers, body = self.build_request(req, model, stream)
        headers.setdefault("content-type", "application/json")
        url = self.config.base_url.rstrip("/") + path
        where = Where(self.config.name, model, self.config.api_key)
        return url, headers, orjson.dumps(body), self.timeout(req), where

    def _need_key(self, model: str) -> None:
        """No key for a provider's own public API (which refuses every call without one):
        an AuthError naming the variable to set, before anything is sent. A custom
        ``{NAME}_BASE_URL`` (Ollama, vLLM, a proxy) may need no key and is called as is."""
        name = self.config.name
        _wire, public = DEFAULT_BASE_URLS.get(name, ("openai", ""))
        if public and public.startswith("https://") and self.config.base_url == public:
            env = ENV_KEY_NAMES.get(name, name.upper()) + "_API_KEY"
            raise AuthError(
                f"{name} {model}: no API key: set {env} where Costline runs",
                provider=name,
                model=model,
            )

    def _result(self, resp: httpx.Response, model: str, where: Where) -> ProviderResult:
        status = resp.status_code
        if status >= 400:
            raise for_status(status, resp.content, resp.headers, where)
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise malformed(f"response is not JSON: {resp.content[:80]!r}", where, status) from exc
        if not isinstance(data, dict):
            raise malformed(f"response is not a JSON object: {resp.content[:80]!r}", where, status)
        failed = self.body_error(data)
        if failed is not None:  # an error answered with a 2xx status
            raise for_status(failed, resp.content, resp.headers, where)
        try:
            return self.parse_response(data, model)
        except _PARSE_ERRORS as exc:
            raise malformed(f"unexpected response shape ({exc!r})", where, status) from exc

    def _event(
        self, state: StreamState, ev: tuple[str, str], where: Where
    ) -> str | TextDelta | ToolDelta | None:
        try:
            delta = self.parse_event(state, ev[0], ev[1])
        except (orjson.JSONDecodeError, *_PARSE_ERRORS) as exc:
            msg = f"bad stream event after {state.chunks} chunks: {ev[1][:80]!r}"
            raise malformed(msg, where, state.status) from exc
        if delta:
            if isinstance(delta, str):
                state.parts.append(delta)
            elif isinstance(delta, TextDelta):
                state.parts.append(delta.text)
            state.chunks += 1  # a tool-call piece reached the caller too: no silent retry
        return delta

    def _cut(self, state: StreamState, exc: Exception, where: Where) -> CostlineError:
        if state.chunks == 0:  # nothing reached the caller: safe to retry
            return for_transport(exc, where, state.status)
        msg = f"stream ended after {state.chunks} chunks: {type(exc).__name__} ({exc})"
        return malformed(msg, where, state.status)

    def _end(self, state: StreamState, where: Where) -> ProviderResult:
        if not state.done and state.finish_reason is None:
            if state.chunks == 0:
                err = httpx.RemoteProtocolError("stream closed before any event")
                raise for_transport(err, where, state.status)
            msg = f"stream ended after {state.chunks} chunks without {self.terminal}"
            raise malformed(msg, where, state.status)
        return state.result()

    # ---- sync -------------------------------------------------------------------------
    def complete(self, req: ChatRequest, model: str) -> ProviderResult:
        url, headers, body, timeout, where = self._prepare(req, model, False)
        try:
            resp = self.client.post(url, content=body, headers=headers, timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise for_transport(exc, where) from exc
        return self._result(resp, model, where)

    def stream(self, req: ChatRequest, model: str) -> Iterator[StreamItem]:
        url, headers, body, timeout, where = self._prepare(req, model, True)
        state, decoder = StreamState(model, where), SSEDecoder()
        try:
            with self.client.stream(
                "POST", url, content=body, headers=headers, timeout=timeout
            ) as resp:
                state.status = resp.status_code
                if resp.status_code >= 400:
                    resp.read()
                    raise for_status(resp.status_code, resp.content, resp.headers, where)
                if "json" in resp.headers.get("content-type", ""):  # server ignored stream
                    resp.read()
                    result = self._result(resp, model, where)
                    if result.text:
                        yield _whole(result)
                    yield result
                    return
                for line in resp.iter_lines():
                    ev = decoder.feed(line)
                    if ev is not None and (delta := self._event(state, ev, where)):
                        yield delta
                    if state.done:
                        break
                else:
                    ev = decoder.flush()
                    if ev is not None and (delta := self._event(state, ev, where)):
                        yield delta
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._cut(state, exc, where) from exc
        yield self._end(state, where)

    # ---- async ------------------------------------------------------------------------
    async def acomplete(self, req: ChatRequest, model: str) -> ProviderResult:
        url, headers, body, timeout, where = self._prepare(req, model, False)
        try:
            resp = await self.aclient.post(url, content=body, headers=headers, timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise for_transport(exc, where) from exc
        return self._result(resp, model, where)

    async def astream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamItem]:
        url, headers, body, timeout, where = self._prepare(req, model, True)
        state, decoder = StreamState(model, where), SSEDecoder()
        try:
            async with self.aclient.stream(
                "POST", url, content=body, headers=headers, timeout=timeout
            ) as resp:
                state.status = resp.status_code
                if resp.status_code >= 400:
                    await resp.aread()
                    raise for_status(resp.status_code, resp.content, resp.headers, where)
                if "json" in resp.headers.get("content-type", ""):  # server ignored stream
                    await resp.aread()
                    result = self._result(resp, model, where)
                    if result.text:
                        yield _whole(result)
                    yield result
                    return
                async for line in resp.aiter_lines():
                    ev = decoder.feed(line)
                    if ev is not None and (delta := self._event(state, ev, where)):
                        yield delta
                    if state.done:
                        break
                else:
                    ev = decoder.flush()
                    if ev is not None and (delta := self._event(state, ev, where)):
                        yield delta
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._cut(state, exc, where) from exc
        yield self._end(state, where)
