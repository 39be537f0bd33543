"""The provider contract: one class per wire protocol, sync and async, streamed or not.

Adapters never retry (the router does). HTTP adapters build on ``HTTPProvider`` (_http.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from core.errors import BadRequest
from core.settings import ProviderConfig
from core.types import ChatRequest, Message, Usage


def rich_message(m: Message) -> bool:
    """Does the message carry more than its text (tool calls or results, non-text content
    parts such as images)? The OpenAI wire sends that upstream as is (``Message.extra``),
    the Anthropic wire translated; the local adapter refuses it (``text_only``)."""
    extra = m.extra
    if not extra:
        return False
    if "tool_calls" in extra or "tool_call_id" in extra or m.role == "tool":
        return True
    parts = extra.get("content")
    return isinstance(parts, list) and any(
        isinstance(p, dict) and p.get("type") != "text" for p in parts
    )


def text_only(req: ChatRequest, provider: str, model: str) -> None:
    """BadRequest naming the first message that carries more than text, for an adapter that
    sends text only: an image or a tool call is refused, never silently dropped."""
    for i, m in enumerate(req.messages):
        if m.extra and rich_message(m):
            raise BadRequest(
                f"messages[{i}]: {provider} {model} is called with text only through Costline: "
                "images, tool calls and tool results reach OpenAI-compatible upstreams "
                "(gpt-*, llama.cpp, vLLM, ...) only",
                field=f"messages[{i}]",
                provider=provider,
                model=model,
            )


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """What the provider said: ``usage`` is None when it reported none."""

    text: str
    usage: Usage | None
    finish_reason: str | None
    model: str
    # OpenAI wire: the choices as the upstream sent them (tool calls, n > 1); not compared
    choices: list[dict[str, Any]] | None = field(default=None, compare=False)
    stop_sequence: str | None = None  # the stop sequence that ended the answer, when known
    # OpenAI wire: the upstream's ``prompt_tokens_details`` / ``completion_tokens_details``
    # (audio, prediction tokens, ...) and ``system_fingerprint``, passed on to the caller
    usage_details: dict[str, Any] | None = field(default=None, compare=False)
    system_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A streamed text delta with what the upstream sent beside it for the caller: the OpenAI
    wire's per-token ``logprobs`` of that delta (a plain ``str`` delta has none), and its
    ``kind``: 'content', or 'refusal' (a model declining, OpenAI's ``delta.refusal``)."""

    text: str
    logprobs: Any = None
    kind: str = "content"


@dataclass(frozen=True, slots=True)
class ToolDelta:
    """A streamed piece of a tool call, as OpenAI streams one: ``index`` is the call's place
    among the answer's tool calls; its first piece names the call (``id``, ``name``), the
    next ones carry ``arguments``, fragments of its JSON arguments in order."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None

    def openai(self) -> dict[str, Any]:
        """This piece as an OpenAI stream's ``delta.tool_calls[]`` entry."""
        if self.id is None:
            return {"index": self.index, "function": {"arguments": self.arguments}}
        fn = {"name": self.name, "arguments": self.arguments}
        return {"index": self.index, "id": self.id, "type": "function", "function": fn}


StreamItem = str | TextDelta | ToolDelta | ProviderResult
# embeddings inputs: texts, or token-ID arrays (OpenAI's other ``input`` form)
EmbedInputs = list[str] | list[list[int]]


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """Vectors in input order; ``input_tokens`` None when the provider reported none."""

    vectors: list[list[float]]
    input_tokens: int | None
    model: str


class Provider(ABC):
    """Base of every adapter. ``model`` arguments are the provider's own model id."""

    wire: ClassVar[str] = ""
    # the API refuses a request without max_tokens: the Router sends the reservation's
    needs_max_tokens: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        *,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self._client = client
        self._aclient = aclient
        self._owns_client = client is None
        self._owns_aclient = aclient is None
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        config: ProviderConfig,
        *,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
    ) -> Provider:
        """How ``create()`` builds one; override to read extra settings (e.g. env vars)."""
        return cls(config, client=client, aclient=aclient)

    @property
    def name(self) -> str:
        return self.config.name

    def timeout(self, req: ChatRequest) -> float:
        return req.timeout or self.config.timeout_s

    @classmethod
    def unsent(cls, config: ProviderConfig, req: ChatRequest) -> tuple[str, ...]:
        """The request's fields (``req.extra`` names, and ``cache_control`` for content
        breakpoints) this adapter does not send to ``config``'s API, which has no equivalent:
        the gateway names them in ``x-costline-unsent-params``. Sorted; () by default."""
        return ()

    @abstractmethod
    def complete(self, req: ChatRequest, model: str) -> ProviderResult: ...

    @abstractmethod
    def stream(self, req: ChatRequest, model: str) -> Iterator[StreamItem]:
        """Text deltas as str (or TextDelta) and tool-call pieces (ToolDelta), then exactly
        one final ProviderResult."""

    async def aembed(
        self, texts: EmbedInputs, model: str, dimensions: int | None, user: str | None = None
    ) -> EmbedResult:
        """Embeddings of ``texts`` (strings, or token-ID arrays, which an adapter whose API
        takes text only refuses naming ``input``); ``user``: OpenAI's end-user id as the
        caller sent it (sent where the API takes one). Adapters without an embeddings API
        refuse by name."""
        from core.errors import BadRequest

        raise BadRequest(
            f"provider {self.name!r} ({self.wire} wire) has no embeddings endpoint",
            provider=self.name,
            model=model,
        )

    async def acomplete(self, req: ChatRequest, model: str) -> ProviderResult:
        return await asyncio.to_thread(self.complete, req, model)

    async def astream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamItem]:
        """Default: drive the sync stream one item at a time on a worker thread."""
        it = self.stream(req, model)
        end = object()
        try:
            while True:
                item = await asyncio.to_thread(next, it, end)
                if item is end:
                    return
                yield item  # type: ignore[misc]
        finally:
            with contextlib.suppress(ValueError):  # still running on a worker: ends by itself
                it.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        self.close()
        if self._owns_aclient and self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return f"<{type(self).__name__} name={c.name!r} base_url={c.base_url!r}>"
