"""A deterministic provider simulator for demos, tests and the overhead benchmark.

Clearly labelled: every answer starts with ``[dryrun] `` and echoes the last user message. The
answer length (20..min(max_tokens or 400, 400) tokens) comes from a hash of the request, so the
same request always gets the same answer and usage. No network, no sleep unless asked for
(``COSTLINE_DRYRUN_LATENCY_MS`` before answering, ``COSTLINE_DRYRUN_MS_PER_TOKEN`` per token).
A ``stop`` field (the gateway's ``stop_sequences``) is honoured as a model does: the answer ends
before the earliest one found, which ``ProviderResult.stop_sequence`` names.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import httpx

from core.errors import ConfigError
from core.providers.base import EmbedInputs, EmbedResult, Provider, ProviderResult, StreamItem
from core.settings import ProviderConfig
from core.types import ChatRequest, Message, Usage

LABEL = "[dryrun]"
MAX_OUT = 400
MIN_OUT = 20
ECHO_WORDS = 12
EMBED_DIMS = 256
_FILLER = (
    "the cost of this answer is simulated so no provider was called and no money was spent "
    "while the router still counts tokens checks budgets picks a model and records usage "
    "like it would for a real call which makes demos tests and benchmarks cheap repeatable "
    "and safe to run anywhere without keys"
)
_VOCAB = _FILLER.split()
_WORDS = _VOCAB * (MAX_OUT // len(_VOCAB) + 2)
_FILLER_TEXT = " ".join(_WORDS) + " "
_STARTS = [0]  # _STARTS[i]: where word i begins in _FILLER_TEXT
for _w in _WORDS:
    _STARTS.append(_STARTS[-1] + len(_w) + 1)

_count: Callable[[str, Sequence[Message]], int] | None = None


def _fallback_count(model: str, messages: Sequence[Message]) -> int:
    return sum(len(m.content) // 4 + 4 for m in messages) + 3 if messages else 0


def count_input(model: str, messages: Sequence[Message]) -> int:
    """Prompt tokens via core.tokens when it exists, else a len//4 estimate."""
    global _count
    if _count is None:
        try:
            from core.tokens import count_messages

            def real(model: str, messages: Sequence[Message]) -> int:
                return int(count_messages(model, list(messages)).tokens)

            _count = real
        except ImportError:
            _count = _fallback_count
    return _count(model, messages)


def simulate(req: ChatRequest, model: str, choice: int | None = None) -> ProviderResult:
    """The answer: ``n`` space-separated words, ``n`` output tokens. With OpenAI's ``n`` > 1
    as a real upstream: that many choices (``_choices``); ``choice``: one of them (0 is the
    answer ``n`` = 1 gives)."""
    if choice is None and req.extra and "n" in req.extra:
        many = req.extra["n"]
        if isinstance(many, int) and not isinstance(many, bool) and many > 1:
            return _choices(req, model, many)
    crc = zlib.crc32(model.encode())
    if choice:
        crc = zlib.crc32(choice.to_bytes(4, "little"), crc)
    last = ""
    for m in req.messages:
        crc = zlib.crc32(m.content.encode("utf-8", "replace"), crc)
        if m.role == "user":
            last = m.content
    cap = min(req.max_tokens or MAX_OUT, MAX_OUT)
    n = MIN_OUT + crc % (cap - MIN_OUT + 1) if cap > MIN_OUT else max(cap, 1)
    echo = last[:200].split()[:ECHO_WORDS]
    head = ([LABEL, "Re:", *echo] if echo else [LABEL])[:n]
    start = crc % len(_VOCAB)
    end = start + n - len(head)  # filler words are slices of one precomputed string
    text = " ".join(head)
    if end > start:
        text += " " + _FILLER_TEXT[_STARTS[start] : _STARTS[end] - 1]
    finish = "length" if req.max_tokens is not None and n >= req.max_tokens else "stop"
    hit = _first_stop(text, req.extra.get("stop") if req.extra else None)
    if hit is not None:  # as a real model: the text ends before the stop sequence
        text = text[: hit[0]]
        n, finish = len(text.split()), "stop"
    usage = Usage(input_tokens=count_input(model, req.messages), output_tokens=n)
    return ProviderResult(text, usage, finish, model, stop_sequence=hit and hit[1])


def _choices(req: ChatRequest, model: str, many: int) -> ProviderResult:
    """``many`` choices, each its own answer (choice 0 the one ``n`` = 1 gives): the prompt
    counted once, every choice's words as output."""
    results = [simulate(req, model, i) for i in range(many)]
    first = results[0]
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": r.text, "refusal": None},
            "logprobs": None,
            "finish_reason": r.finish_reason,
        }
        for i, r in enumerate(results)
    ]
    out = sum(r.usage.output_tokens for r in results if r.usage)
    usage = Usage(input_tokens=first.usage.input_tokens if first.usage else 0, output_tokens=out)
    return ProviderResult(
        first.text, usage, first.finish_reason, model, choices, first.stop_sequence
    )


def _first_stop(text: str, stop: object) -> tuple[int, str] | None:
    """(where, which) of the earliest requested stop sequence in ``text``."""
    if not stop:
        return None
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    hits = [(text.find(s), s) for s in stops if isinstance(s, str) and s and s in text]
    return min(hits) if hits else None


def embed_text(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text`` (the same text, the same vector)."""
    rng = random.Random(zlib.crc32(text.encode("utf-8", "replace")))
    v = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


def _chunks(text: str) -> list[str]:
    """Word chunks that join back to ``text`` exactly."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


class DryRunProvider(Provider):
    wire = "dryrun"

    def __init__(
        self,
        config: ProviderConfig,
        *,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
        latency_ms: float = 0.0,
        ms_per_token: float = 0.0,
    ) -> None:
        super().__init__(config, client=client, aclient=aclient)
        self.latency_ms = latency_ms
        self.ms_per_token = ms_per_token

    @classmethod
    def from_config(
        cls,
        config: ProviderConfig,
        *,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
    ) -> Provider:
        return cls(
            config,
            client=client,
            aclient=aclient,
            latency_ms=_env_ms("COSTLINE_DRYRUN_LATENCY_MS"),
            ms_per_token=_env_ms("COSTLINE_DRYRUN_MS_PER_TOKEN"),  # a stream's pace
        )

    def _delay_s(self, tokens: int) -> float:
        return (self.latency_ms + self.ms_per_token * tokens) / 1000.0

    def complete(self, req: ChatRequest, model: str) -> ProviderResult:
        result = simulate(req, model)
        if self.latency_ms or self.ms_per_token:
            time.sleep(self._delay_s(result.usage.output_tokens if result.usage else 0))
        return result

    async def acomplete(self, req: ChatRequest, model: str) -> ProviderResult:
        result = simulate(req, model)
        if self.latency_ms or self.ms_per_token:
            await asyncio.sleep(self._delay_s(result.usage.output_tokens if result.usage else 0))
        return result

    def stream(self, req: ChatRequest, model: str) -> Iterator[StreamItem]:
        result = simulate(req, model)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        for chunk in _chunks(result.text):
            if self.ms_per_token:
                time.sleep(self.ms_per_token / 1000.0)
            yield chunk
        yield result

    async def astream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamItem]:
        result = simulate(req, model)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        for chunk in _chunks(result.text):
            if self.ms_per_token:
                await asyncio.sleep(self.ms_per_token / 1000.0)
            yield chunk
        yield result

    async def aembed(
        self, texts: EmbedInputs, model: str, dimensions: int | None, user: str | None = None
    ) -> EmbedResult:
        """Deterministic vectors (``EMBED_DIMS`` unless asked); tokens counted exactly (a
        token-ID array: its length, its vector that of its ids written out)."""
        from core.tokens import count_text

        dims = dimensions or EMBED_DIMS
        keys = [t if isinstance(t, str) else " ".join(map(str, t)) for t in texts]
        tokens = sum(count_text(model, t) if isinstance(t, str) else len(t) for t in texts)
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000.0)
        return EmbedResult([embed_text(t, dims) for t in keys], tokens, model)


def _env_ms(name: str) -> float:
    """Milliseconds >= 0 from ``$name`` (unset or empty: 0); else a ConfigError naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{name} must be a number of milliseconds >= 0, got {raw!r}", field=name)
    return value
