"""The Router's per-call working state, and request validation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from core import clock, tokens
from core.budgets import Decision, scope_text
from core.cache import UNSET, Unset
from core.control import Budget, ControlSnapshot
from core.errors import BadRequest, ContextWindowExceeded, CostlineError
from core.names import name_problem
from core.pricing import PriceRow
from core.sampling import Decision as GateDecision
from core.types import ChatRequest, Completion, Cost, Usage

ROLES = frozenset({"system", "user", "assistant", "tool"})
_TOKENIZER: dict[str, tuple[str, bool]] = {}  # model -> (encoding, exact?): Plan.count's key
PERIOD_WORD = {"day": "daily", "week": "weekly", "month": "monthly"}


@dataclass(slots=True)
class Candidate:
    """One model the router may call: display name, provider and the id sent upstream."""

    model: str
    provider: str
    provider_model: str
    row: PriceRow | None  # None: unpriced, allowed only with allow_unpriced=True
    prompt_tokens: int = 0
    prompt_estimated: bool = False


@dataclass(slots=True)
class Plan:
    """What one call has decided and spent so far."""

    req: ChatRequest
    requested_model: str
    route_reason: str = ""
    pending: list[Candidate] = field(default_factory=list)
    snap: ControlSnapshot | None = None
    degrade_to: str | None = None
    decision: Decision | None = None  # the budget reservation held for the current candidate
    degraded: bool = False
    gate_key: str | None = None
    gate_call: GateDecision | None = None  # a tentative sampling call, until reported
    provider_called: bool = False  # a candidate was admitted and sent to its provider
    cache_key: str | None | Unset = UNSET  # ResponseCache.key(req), computed once per call
    last: CostlineError | None = None
    too_big: ContextWindowExceeded | None = None
    notes: list[str] = field(default_factory=list)
    first_model: str | None = None
    ttft_ms: float | None = None
    counts: dict[tuple[str, bool], tokens.TokenCount] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    start_ns: int = field(default_factory=lambda: int(clock.timestamp() * 1e9))

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def now(self) -> datetime:
        return clock.now()

    def count(self, model: str) -> tokens.TokenCount:
        """Prompt tokens for ``model``, counted once per tokenizer (candidates share them)."""
        key = _TOKENIZER.get(model)
        if key is None:
            key = (tokens.encoding_name_for(model), tokens.is_openai_tokenizer(model))
            if len(_TOKENIZER) < 4096:
                _TOKENIZER[model] = key
        got = self.counts.get(key)
        if got is None:
            got = self.counts[key] = tokens.count_messages(model, self.req.messages)
        return got

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

    def first_token(self, t0: float) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000

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


def budget_text(budget: Budget | None, utilisation: float | None) -> str:
    """'org=acme at 93% of monthly budget 'acme monthly''."""
    if budget is None:
        return "over budget"
    pct = f"{utilisation:.0%}" if utilisation is not None else "over"
    word = PERIOD_WORD.get(budget.period, budget.period)
    return f"{scope_text(budget)} at {pct} of {word} budget '{budget.name}'"


def validate(req: ChatRequest) -> None:
    """Reject malformed requests before any HTTP call, naming what is wrong."""
    check_names(req)
    if not req.messages:
        raise BadRequest("messages is empty: a chat request needs at least one message")
    for i, m in enumerate(req.messages):
        if m.role not in ROLES:
            raise BadRequest(f"messages[{i}].role {m.role!r} is not one of {sorted(ROLES)}")
        if not isinstance(m.content, str):
            raise BadRequest(f"messages[{i}].content must be a str, got {type(m.content).__name__}")
        try:
            if not m.content.isascii():
                m.content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(
                f"messages[{i}].content is not valid UTF-8 (position {exc.start})"
            ) from None
    if req.max_tokens is not None and req.max_tokens < 1:
        raise BadRequest(f"max_tokens must be >= 1, got {req.max_tokens}")
    t = req.temperature
    if t is not None and not (0.0 <= t <= 2.0):
        raise BadRequest(f"temperature must be between 0 and 2, got {t}")


def check_names(req: ChatRequest) -> None:
    """org, project, user, task and app are names people read in the console: no control,
    bidi-override or zero-width characters (see core.names)."""
    for name in ("org", "project", "user", "task", "app"):
        value = getattr(req, name)
        if isinstance(value, str) and (problem := name_problem(value)):
            raise BadRequest(f"{name}: {problem}")


def prompt_text(req: ChatRequest) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in req.messages)


def apply_policy(req: ChatRequest, policy: object) -> ChatRequest:
    """A task policy's criticality, max_tokens and prompt caching apply where the request
    sets none."""
    crit = getattr(policy, "criticality", "normal")
    max_tokens = getattr(policy, "max_tokens", None)
    prompt_cache = getattr(policy, "prompt_cache", None)
    changes: dict[str, object] = {}
    if req.prompt_cache is None and prompt_cache:
        changes["prompt_cache"] = prompt_cache
    if req.criticality == "normal" and crit != "normal":
        changes["criticality"] = crit
    if req.max_tokens is None and max_tokens:
        changes["max_tokens"] = max_tokens
    return replace(req, **changes) if changes else req  # type: ignore[arg-type]
