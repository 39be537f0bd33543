"""Router: one call from request to priced, logged completion (DESIGN.md, "One call").

The sync and async paths share every step except the I/O: ``_plan`` validates and resolves
candidates, ``_fit`` counts tokens and checks the context window, ``_settle`` prices and logs a
success, ``_failed`` logs a failed attempt and decides whether to retry or fall back.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from core import tokens
from core.errors import (
    BadRequest,
    ContextWindowExceeded,
    CostlineError,
    MalformedResponse,
    RetryableError,
    UnpricedModel,
)
from core.otel import Tracer
from core.pricing import Catalog, PriceRow, load_catalog, price
from core.providers import Provider, ProviderResult, create
from core.retry import RetryPolicy
from core.settings import Settings
from core.types import ChatRequest, Completion, Cost, StreamChunk, Usage
from core.usage import UsageEvent, UsageLog
from core.usage._schema import Status

ROLES = frozenset({"system", "user", "assistant", "tool"})


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
    req: ChatRequest
    requested_model: str
    candidates: list[Candidate]
    route_reason: str
    started: float = field(default_factory=time.perf_counter)
    start_ns: int = field(default_factory=time.time_ns)


class Router:
    """Counts, prices, calls and logs. Thread-safe; one instance per process is typical."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalog: Catalog | None = None,
        log: UsageLog | None = None,
        providers: Mapping[str, Provider] | None = None,
        client: httpx.Client | None = None,
        aclient: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        allow_unpriced: bool = False,
        seed: int | None = None,
        tracer_provider: object = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.catalog = catalog or load_catalog()
        self.log = log if log is not None else UsageLog(self.settings.home)
        self.retry = retry or RetryPolicy()
        self.allow_unpriced = allow_unpriced
        self.tracer = Tracer(self.settings.otel, tracer_provider)
        self._providers: dict[str, Provider] = dict(providers or {})
        self._client = client
        self._aclient = aclient
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    # ---- public API -------------------------------------------------------------------
    def complete(self, req: ChatRequest) -> Completion:
        plan = self._plan(req)
        last: CostlineError | None = None
        for cand in plan.candidates:
            if not self._fit(plan, cand):
                continue
            provider = self._provider(cand.provider)
            for attempt in range(1, self.retry.max_attempts + 1):
                try:
                    result = provider.complete(req, cand.provider_model)
                except CostlineError as exc:
                    last = exc
                    delay = self._failed(plan, cand, attempt, exc)
                    if delay is None:
                        break
                    time.sleep(delay)
                    continue
                return self._settle(plan, cand, attempt, result, None)
            if last is not None and not isinstance(last, RetryableError):
                raise last
        raise self._exhausted(plan, last)

    async def acomplete(self, req: ChatRequest) -> Completion:
        plan = self._plan(req)
        last: CostlineError | None = None
        for cand in plan.candidates:
            if not self._fit(plan, cand):
                continue
            provider = self._provider(cand.provider)
            for attempt in range(1, self.retry.max_attempts + 1):
                try:
                    result = await provider.acomplete(req, cand.provider_model)
                except CostlineError as exc:
                    last = exc
                    delay = self._failed(plan, cand, attempt, exc)
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
                    continue
                return self._settle(plan, cand, attempt, result, None)
            if last is not None and not isinstance(last, RetryableError):
                raise last
        raise self._exhausted(plan, last)

    def stream(self, req: ChatRequest) -> Iterator[StreamChunk]:
        """Yield text chunks, then one final chunk carrying the Completion.

        Retries and fallbacks happen only before the first chunk reaches the caller.
        """
        plan = self._plan(req)
        last: CostlineError | None = None
        for cand in plan.candidates:
            if not self._fit(plan, cand):
                continue
            provider = self._provider(cand.provider)
            for attempt in range(1, self.retry.max_attempts + 1):
                parts: list[str] = []
                ttft: float | None = None
                try:
                    for item in provider.stream(req, cand.provider_model):
                        if isinstance(item, str):
                            if ttft is None:
                                ttft = (time.perf_counter() - plan.started) * 1000
                            parts.append(item)
                            yield StreamChunk(item)
                        else:
                            done = self._settle(plan, cand, attempt, item, ttft, "".join(parts))
                            yield StreamChunk("", done)
                            return
                    raise MalformedResponse(
                        "stream ended without a final result", provider=cand.provider
                    )
                except CostlineError as exc:
                    last = exc
                    delay = self._failed(plan, cand, attempt, exc, "".join(parts))
                    if parts:
                        raise  # the caller has text already: no silent retry
                    if delay is None:
                        break
                    time.sleep(delay)
            if last is not None and not isinstance(last, RetryableError):
                raise last
        raise self._exhausted(plan, last)

    async def astream(self, req: ChatRequest) -> AsyncIterator[StreamChunk]:
        plan = self._plan(req)
        last: CostlineError | None = None
        for cand in plan.candidates:
            if not self._fit(plan, cand):
                continue
            provider = self._provider(cand.provider)
            for attempt in range(1, self.retry.max_attempts + 1):
                parts: list[str] = []
                ttft: float | None = None
                try:
                    async for item in provider.astream(req, cand.provider_model):
                        if isinstance(item, str):
                            if ttft is None:
                                ttft = (time.perf_counter() - plan.started) * 1000
                            parts.append(item)
                            yield StreamChunk(item)
                        else:
                            done = self._settle(plan, cand, attempt, item, ttft, "".join(parts))
                            yield StreamChunk("", done)
                            return
                    raise MalformedResponse(
                        "stream ended without a final result", provider=cand.provider
                    )
                except CostlineError as exc:
                    last = exc
                    delay = self._failed(plan, cand, attempt, exc, "".join(parts))
                    if parts:
                        raise  # the caller has text already: no silent retry
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
            if last is not None and not isinstance(last, RetryableError):
                raise last
        raise self._exhausted(plan, last)

    def batch(
        self, requests: Iterable[ChatRequest], concurrency: int = 8
    ) -> list[Completion | CostlineError]:
        """Run requests on ``concurrency`` threads; results in input order, errors in place."""
        if concurrency < 1:
            raise BadRequest("concurrency must be >= 1")

        def one(r: ChatRequest) -> Completion | CostlineError:
            try:
                return self.complete(r)
            except CostlineError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, list(requests)))

    async def abatch(
        self, requests: Iterable[ChatRequest], concurrency: int = 8
    ) -> list[Completion | CostlineError]:
        if concurrency < 1:
            raise BadRequest("concurrency must be >= 1")
        sem = asyncio.Semaphore(concurrency)

        async def one(r: ChatRequest) -> Completion | CostlineError:
            async with sem:
                try:
                    return await self.acomplete(r)
                except CostlineError as exc:
                    return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def close(self) -> None:
        self.log.flush()
        for p in self._providers.values():
            close = getattr(p, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- steps ------------------------------------------------------------------------
    def _plan(self, req: ChatRequest) -> Plan:
        try:
            validate(req)
            if not req.model:
                raise BadRequest("request needs a model (task routing arrives with policies)")
            names = [req.model, *req.fallbacks]
            cands = [self._candidate(m) for m in names]
        except CostlineError as exc:
            self._record_error(req, req.model or "", None, exc, 0)
            raise
        reason = f"{req.model}: requested"
        return Plan(req, req.model, cands, reason)

    def _candidate(self, name: str) -> Candidate:
        provider, provider_model = self._resolve(name)
        if not self.catalog.has(name):
            if not self.allow_unpriced:
                raise UnpricedModel(
                    f"model {name!r} has no price in the catalog; add a price override or "
                    "pass allow_unpriced=True to log it as unpriced",
                    model=name,
                )
            return Candidate(name, provider, provider_model, None)
        row = self.catalog.lookup(name, prompt_tokens=0)
        return Candidate(self.catalog.canonical(name), provider, provider_model, row)

    def _resolve(self, name: str) -> tuple[str, str]:
        """(provider, id sent upstream). An explicit 'provider/' prefix names the provider,
        unless the whole name is itself a catalog model (e.g. Groq's 'openai/gpt-oss-120b')."""
        head, sep, rest = name.partition("/")
        exact = self.catalog.has(name) and self.catalog.canonical(name) == name.lower()
        if sep and head in self.settings.providers and not exact:
            return head, rest
        if self.catalog.has(name):
            provider = self.catalog.provider_of(name)
            prefix = provider + "/"
            return provider, name[len(prefix) :] if name.startswith(prefix) else name
        raise UnpricedModel(
            f"model {name!r} is not in the price catalog and names no configured provider "
            "(use 'provider/model')",
            model=name,
        )

    def _fit(self, plan: Plan, cand: Candidate) -> bool:
        """Count prompt tokens for this candidate; False (logged) if it can't fit."""
        count = tokens.count_messages(cand.model, plan.req.messages)
        cand.prompt_tokens, cand.prompt_estimated = count.tokens, count.estimated
        if cand.row is not None:
            cand.row = self.catalog.lookup(cand.model, prompt_tokens=count.tokens)
            window = cand.row.context_window
            need = count.tokens + (plan.req.max_tokens or 0)
            if window and need > window:
                exc = ContextWindowExceeded(
                    f"{cand.model}: prompt {count.tokens} + max_tokens "
                    f"{plan.req.max_tokens or 0} = {need} tokens exceeds its context window "
                    f"of {window}",
                    tokens=need,
                    window=window,
                    model=cand.model,
                    provider=cand.provider,
                )
                if cand is plan.candidates[-1]:
                    self._record_error(plan.req, cand.model, cand, exc, 0, plan)
                    raise exc
                return False  # skip to the next fallback
        return True

    def _settle(
        self,
        plan: Plan,
        cand: Candidate,
        attempt: int,
        result: ProviderResult,
        ttft_ms: float | None,
        streamed_text: str | None = None,
    ) -> Completion:
        text = result.text if result.text or streamed_text is None else streamed_text
        usage = result.usage
        if usage is None:  # provider reported none: estimate, never $0
            out = tokens.count_text(cand.model, text)
            usage = Usage(input_tokens=cand.prompt_tokens, output_tokens=out, estimated=True)
        cost = price(usage, cand.row, batch=plan.req.batch) if cand.row else Cost(unpriced=True)
        latency = (time.perf_counter() - plan.started) * 1000
        done = Completion(
            text=text,
            usage=usage,
            cost=cost,
            model=cand.model,
            provider=cand.provider,
            latency_ms=latency,
            request_id=plan.req.request_id,
            route_reason=self._reason(plan, cand),
            requested_model=plan.requested_model,
            ttft_ms=ttft_ms,
            finish_reason=result.finish_reason,
        )
        self._record(plan, cand, attempt, "ok", done, None)
        return done

    def _failed(
        self,
        plan: Plan,
        cand: Candidate,
        attempt: int,
        exc: CostlineError,
        partial: str = "",
    ) -> float | None:
        """Log the failed attempt; return the delay before retrying, or None to move on."""
        exc.provider = exc.provider or cand.provider
        exc.model = exc.model or cand.model
        self._record_error(plan.req, cand.model, cand, exc, attempt, plan, partial)
        with self._lock:
            return self.retry.delay(attempt, exc, self._rng)

    def _exhausted(self, plan: Plan, last: CostlineError | None) -> CostlineError:
        if last is not None:
            return last
        return ContextWindowExceeded(f"no candidate model fits the prompt of {plan.req.model}")

    def _reason(self, plan: Plan, cand: Candidate) -> str:
        if cand.model == plan.requested_model:
            return plan.route_reason
        return f"{cand.model}: fallback from {plan.requested_model}"

    def _provider(self, name: str) -> Provider:
        p = self._providers.get(name)
        if p is None:
            with self._lock:
                p = self._providers.get(name)
                if p is None:
                    config = self.settings.provider(name)
                    p = create(config, client=self._client, aclient=self._aclient)
                    self._providers[name] = p
        return p

    # ---- recording --------------------------------------------------------------------
    def _record(
        self,
        plan: Plan,
        cand: Candidate,
        attempt: int,
        status: Status,
        done: Completion,
        exc: CostlineError | None,
    ) -> None:
        req, u, c = plan.req, done.usage, done.cost
        bodies = req.project is not None and req.project in self.settings.log_bodies_projects
        event = UsageEvent(
            request_id=req.request_id,
            ts=datetime.now(UTC),
            org=req.org,
            project=req.project,
            user=req.user,
            task=req.task,
            app=req.app,
            tags=req.tags,
            provider=cand.provider,
            model=cand.model,
            requested_model=plan.requested_model,
            status=status,
            error_type=exc.error_type if exc else None,
            error_message=exc.message if exc else None,
            attempt=attempt,
            input_tokens=u.input_tokens,
            cached_input_tokens=u.cached_input_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
            reasoning_tokens=u.reasoning_tokens,
            usage_estimated=u.estimated,
            cost_picousd=c.total,
            cost_input_picousd=c.input,
            cost_cached_input_picousd=c.cached_input,
            cost_cache_write_picousd=c.cache_write,
            cost_output_picousd=c.output,
            cost_reasoning_picousd=c.reasoning,
            saved_picousd=done.saved.total,
            unpriced=c.unpriced,
            latency_ms=done.latency_ms,
            ttft_ms=done.ttft_ms,
            cache_hit=done.cache_hit,
            ai_called=done.ai_called,
            degraded=False,
            route_reason=done.route_reason,
            criticality=req.criticality,
            source=req.source,
            prompt=_prompt_text(req) if bodies else None,
            response=done.text if bodies else None,
            metadata=dict(req.metadata),
        )
        self.log.append(event)
        self.tracer.record(plan.start_ns, req, done, exc)

    def _record_error(
        self,
        req: ChatRequest,
        model: str,
        cand: Candidate | None,
        exc: CostlineError,
        attempt: int,
        plan: Plan | None = None,
        partial: str = "",
    ) -> None:
        plan = plan or Plan(req, req.model or "", [], "")
        cand = cand or Candidate(model, exc.provider or "", model, None)
        latency = (time.perf_counter() - plan.started) * 1000
        usage, cost = Usage(), Cost(unpriced=isinstance(exc, UnpricedModel))
        if partial:  # a stream cut mid-way was still generated (and billed): estimate it
            out = tokens.count_text(cand.model, partial)
            usage = Usage(input_tokens=cand.prompt_tokens, output_tokens=out, estimated=True)
            cost = price(usage, cand.row) if cand.row else Cost(unpriced=True)
        failed = Completion(
            text=partial,
            usage=usage,
            cost=cost,
            model=cand.model,
            provider=cand.provider,
            latency_ms=latency,
            request_id=req.request_id,
            route_reason=plan.route_reason,
            requested_model=plan.requested_model,
            ai_called=attempt > 0,
        )
        self._record(plan, cand, attempt, "error", failed, exc)


def validate(req: ChatRequest) -> None:
    """Reject malformed requests before any HTTP call, naming what is wrong."""
    if not req.messages:
        raise BadRequest("messages is empty: a chat request needs at least one message")
    for i, m in enumerate(req.messages):
        if m.role not in ROLES:
            raise BadRequest(f"messages[{i}].role {m.role!r} is not one of {sorted(ROLES)}")
        if not isinstance(m.content, str):
            raise BadRequest(f"messages[{i}].content must be a str, got {type(m.content).__name__}")
        try:
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


def _prompt_text(req: ChatRequest) -> str:
    return "\n".join(f"{m.role}: {m.content}" for m in req.messages)
