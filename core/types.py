"""The values that travel through one call: request in, completion out.

Money is kept in integer picodollars (1 USD = 10**12 pUSD): a price in USD per million
tokens with up to six decimals is an exact integer number of pUSD per token, a finer one an
exact fraction (``core.pricing.rows``), and each call's cost is integer pUSD, so sums over
millions of calls are exact. ``Decimal`` is used only at the edges (display, export).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

PICO = 10**12
Role = Literal["system", "user", "assistant", "tool"]
Criticality = Literal["critical", "high", "normal", "low", "background"]
CRITICALITIES: tuple[str, ...] = ("critical", "high", "normal", "low", "background")


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


def pico_to_usd(pico: int) -> Decimal:
    """Exact conversion of picodollars to a Decimal number of dollars."""
    return Decimal(pico).scaleb(-12)


def usd_places(usd: Decimal, places: int = 2, symbol: str = "$") -> str:
    """'-$1,234.57': dollars to ``places`` decimals, half up (away from zero, as every money
    figure rounds), with thousands separators and a negative amount's sign first. The one
    money formatter: the console writes other display currencies through it (``symbol``:
    '€', 'CHF ')."""
    d = usd.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{'-' if d < 0 else ''}{symbol}{abs(d):,.{places}f}"


@dataclass(frozen=True, slots=True)
class Message:
    """``extra``: wire fields sent verbatim to OpenAI-compatible upstreams (``tool_calls``,
    ``tool_call_id``, ``content`` as a list of parts); ``content`` stays the text counted."""

    role: Role
    content: str
    name: str | None = None
    extra: Mapping[str, Any] | None = None


@dataclass(slots=True)
class ChatRequest:
    """One chat call. Give ``model`` or ``task`` (a task policy picks the model)."""

    messages: list[Message]
    model: str | None = None
    task: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    org: str | None = None
    project: str | None = None
    user: str | None = None
    app: str | None = None  # API key / application, for rate limits
    criticality: Criticality = "normal"
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    cache: bool = True  # False: neither read nor write the response cache
    ttl: float | None = None  # cache TTL override, seconds
    personal: bool = False  # personal requests are never cached across users
    optimize_cost: bool = False
    batch: bool = False  # priced at the provider's batch rates
    prompt_cache: str | None = None  # "5m" | "1h" (else BadRequest): provider prompt caching
    timeout: float | None = None  # seconds, per attempt
    signal: float | None = None  # sampling: the numeric signal CHANGE_BASED/ADAPTIVE watch
    score: float | None = None  # sampling: the score THRESHOLD compares
    source: str = "app"
    request_id: str = field(default_factory=new_request_id)
    key: str | None = None  # the virtual key's name (the gateway sets it; a budget scope)
    extra: dict[str, Any] = field(default_factory=dict)  # body fields passed to the upstream


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts in disjoint classes: each token is counted in exactly one field.

    ``input_tokens`` excludes cached and cache-write tokens; ``output_tokens`` excludes
    reasoning tokens. Adapters normalise each provider's reporting to this shape, which is
    what lets pricing charge every token exactly once. ``cache_write_1h_tokens`` is not a
    class of its own: it is the part of ``cache_write_tokens`` written with a 1-hour TTL
    (Anthropic), which is charged at the 1-hour cache-write rate.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    cache_write_1h_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

    @property
    def completion_tokens(self) -> int:
        return self.output_tokens + self.reasoning_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Cost:
    """Cost of one call per token class, in integer picodollars. ``flags`` name what a
    reader must know about the price (see core.pricing.rules: batch_unavailable,
    over_context_window)."""

    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    unpriced: bool = False
    flags: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.input + self.cached_input + self.cache_write + self.output + self.reasoning

    @property
    def usd(self) -> Decimal:
        return pico_to_usd(self.total)


ZERO_COST = Cost()


@dataclass(slots=True)
class Completion:
    text: str
    usage: Usage
    cost: Cost
    model: str
    provider: str
    latency_ms: float
    request_id: str
    cache_hit: bool = False
    route_reason: str = ""
    requested_model: str | None = None
    ttft_ms: float | None = None
    finish_reason: str | None = None
    saved: Cost = ZERO_COST  # what a cache hit or skipped call would have cost
    ai_called: bool = True  # False when a sampling strategy reused the last answer
    # the OpenAI-wire choices as the upstream sent them (tool calls, n > 1); not compared
    choices: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    stop_sequence: str | None = None  # the request's stop sequence that ended it, when known
    # OpenAI wire: the upstream's usage detail objects and system_fingerprint, as it sent them
    usage_details: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    system_fingerprint: str | None = None

    @property
    def cost_usd(self) -> Decimal:
        return self.cost.usd


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of a streamed answer; the last chunk carries the final Completion.
    ``logprobs``: the upstream's log probabilities of this chunk's tokens (OpenAI wire, when
    the request asked for them), as it sent them. ``kind``: 'content', or 'refusal' (the
    model declined: OpenAI's ``delta.refusal``). ``model``: the model answering (on text
    chunks; the Completion names it on the last); ``provider``: its provider. ``tool``: a
    piece of a streamed tool call (``core.providers.ToolDelta``; ``text`` is then "")."""

    text: str
    completion: Completion | None = None
    logprobs: Any = None
    kind: str = "content"
    model: str | None = None
    provider: str | None = None
    tool: Any = None
