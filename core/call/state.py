"""The per-call state every step reads and writes, and the candidate models it tries.

One ``Call`` per request, made by ``begin.start`` and passed through the eight steps
(docs/architecture.md, "The call path"). It records what the call has decided (route reason,
degrade, the budget reservation held) and what it has spent; ``Candidate`` is one model the
call may send the request to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from core import clock, tokens, vision
from core.budgets import Decision
from core.cache import UNSET, Unset
from core.control import ControlSnapshot
from core.errors import ContextWindowExceeded, CostlineError
from core.pricing import PriceRow
from core.sampling import Decision as GateDecision
from core.types import ChatRequest, Completion, Cost, Usage

__all__ = ["Call", "Candidate"]


@dataclass(slots=True)
class Candidate:
    """One model the router may call: display name, provider and the id sent upstream.

    ``prompt_tokens`` is counted exactly on first use, not before: ``estimate.fit`` often
    decides with an upper bound alone, and a provider that reports usage never needs it.
    """

    model: str
    provider: str
    provider_model: str
    row: PriceRow | None  # None: unpriced, allowed only with allow_unpriced=True
    tokens: int | None = None  # the exact prompt tokens, once known
    call: Call | None = field(
        default=None, repr=False, compare=False
    )  # whose prompt to count on first use (set by estimate.fit)

    @property
    def prompt_tokens(self) -> int:
        """The prompt's exact tokens for this model (0 for a candidate never fitted)."""
        n = self.tokens
        if n is None:
            n = self.tokens = 0 if self.call is None else self.call.count(self.model).tokens
        return n

    @prompt_tokens.setter
    def prompt_tokens(self, n: int) -> None:
        self.tokens = n


@dataclass(slots=True)
class Call:
    """What one call has decided and spent so far."""

    req: ChatRequest
    requested_model: str
    route_reason: str = ""
    embedding: bool = False  # an embeddings call: input tokens only, no window, no degrade
    pending: list[Candidate] = field(default_factory=list)  # route's candidates not tried yet
    snap: ControlSnapshot | None = None
    degrade_to: str | None = None
    decision: Decision | None = None  # the budget reservation held for the current candidate
    degraded: bool = False
    gate_key: str | None = None
    gate_scope: str = ""  # the tenant whose gate state (and answers) the call uses
    gate_call: GateDecision | None = None  # a tentative sampling call, until reported
    gate_at: float | None = None  # a call the gate never skips: when, until recorded
    provider_called: bool = False  # a candidate was admitted and sent to its provider
    cache_key: str | None | Unset = UNSET  # ResponseCache.key(req), computed once per call
    last: CostlineError | None = None  # the last error (failed attempt or refusal)
    too_big: ContextWindowExceeded | None = None  # the first candidate that did not fit
    notes: list[str] = field(default_factory=list)  # appended to the route reason
    first_model: str | None = None
    counts: dict[tuple[str, bool, object], tokens.TokenCount] = field(default_factory=dict)
    by_model: dict[str, tokens.TokenCount] = field(default_factory=dict)  # count's, by model
    extras: str | None = None  # tokens.billed_extras of the request, once known (billed_text)
    images: tuple[vision.Image, ...] | None = None  # its image parts, once known (image_parts)
    started: float = field(default_factory=time.perf_counter)
    start_ns: int = field(default_factory=lambda: int(clock.timestamp() * 1e9))

    def count(self, model: str) -> tokens.TokenCount:
        """Prompt tokens for ``model``, counted once per tokenizer (candidates share them)
        and, for a prompt with images, per image billing rule (``core.vision``)."""
        got = self.by_model.get(model)
        if got is not None:
            return got
        images = self.image_parts()
        rule = vision.rule_of(model) if images else None
        key = (tokens.encoding_name_for(model), tokens.is_openai_tokenizer(model), rule)
        got = self.counts.get(key)
        if got is None:
            req = self.req
            more = self.billed_text()
            got = tokens.count_request(model, req.messages, req.extra, more, images)
            self.counts[key] = got
        self.by_model[model] = got
        return got

    def image_parts(self) -> tuple[vision.Image, ...]:
        """The request's images (``vision.images_of``), found once per call."""
        found = self.images
        if found is None:
            found = self.images = vision.images_of(self.req.messages)
        return found

    def image_tokens(self, model: str) -> int:
        """Prompt tokens of the request's images for ``model`` (0 without images)."""
        images = self.image_parts()
        return vision.image_tokens(model, images)[0] if images else 0

    def billed_text(self) -> str:
        """What the request bills as prompt input beyond its messages' text (tools, schemas,
        tool calls; ``tokens.billed_extras``), worked out once per call."""
        text = self.extras
        if text is None:
            req = self.req
            text = self.extras = tokens.billed_extras(req.extra, req.messages)
        return text

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def completion(
        self,
        cand: Candidate,
        text: str,
        usage: Usage,
        cost: Cost,
        *,
        reason: str | None = None,
        **extra: Any,
    ) -> Completion:
        """The Completion of a call that ends now with ``cand`` (route reason: reason_for)."""
        return Completion(
            text=text,
            usage=usage,
            cost=cost,
            model=cand.model,
            provider=cand.provider,
            latency_ms=self.elapsed_ms(),
            request_id=self.req.request_id,
            route_reason=self.reason_for(cand) if reason is None else reason,
            requested_model=self.requested_model,
            **extra,
        )

    def reason_for(self, cand: Candidate) -> str:
        """route_reason: the routing/degrade reason, or a fallback note, plus any skips."""
        if self.first_model is None:
            self.first_model = cand.model
        if cand.model == self.first_model or self.degraded:
            reason = self.route_reason
        else:
            reason = f"{cand.model}: fallback from {self.first_model}"
            if self.last is not None:
                reason += f" after {self.last.error_type}"
        return "; ".join([reason, *self.notes]) if self.notes else reason

    def exhausted(self) -> CostlineError:
        """The error of a call whose candidates are all used up."""
        if self.last is not None:
            return self.last
        return ContextWindowExceeded(f"no candidate model fits the prompt of {self.req.model}")
