"""Router: one call from request to priced, logged completion (DESIGN.md, "One call").

    _begin   validate; 1 sampling gate; 2 cache; 3 estimate + 4 route -> Plan (or an early answer)
    _next    fit the context window; 5 budget + rate-limit admission (degrade, skip, block)
    (I/O)    6 provider call with retries; the only part that differs between the four styles
    _settle  7 usage (estimated only when the provider gives none) and price; 8 record
             (router_events.py builds the event; router_plan.py holds the per-call Plan)

Every outcome (success, failed attempt, cache hit, skip, block) is logged as one usage event.
A sampling call counts as a call only once a provider is called (cache hits and blocks do not);
the cache key is computed once per call; a degraded answer (a cheaper model than the task's
choice) is never cached; ``optimize_cost`` orders an explicit model and its fallbacks by cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import httpx

from core.budgets import Decision, Estimate, admit_first
from core.controls import Controls
from core.errors import (
    BadRequest,
    BudgetExceeded,
    ClientDisconnected,
    ContextWindowExceeded,
    CostlineError,
    MalformedResponse,
    RateLimited,
    RetryableError,
    UnpricedModel,
)
from core.otel import Tracer
from core.pricing import Catalog, load_catalog, max_cost, price, prompt_cache_saving
from core.providers import Provider, ProviderResult, StreamItem, create
from core.retry import RetryPolicy
from core.router_embed import Embeddings, EmbedRequest, aembed
from core.router_events import estimated_usage, failed_call, usage_event
from core.router_plan import Candidate, Plan, apply_policy, budget_text, validate
from core.routing import by_cost, cost_order_reason
from core.sampling import Event, Priority
from core.settings import Settings
from core.types import ZERO_COST, ChatRequest, Completion, Cost, StreamChunk, Usage
from core.usage import UsageLog
from core.usage._schema import Status

__all__ = ["Router", "validate"]

Gen = Generator[StreamItem, None, None]
AGen = AsyncGenerator[StreamItem, None]


class Router:
    """Counts, prices, controls, calls and logs. Thread-safe; one per process is typical.

    ``controls=True`` (default) reads budgets, policies, sampling and cache settings from the
    control plane ($COSTLINE_HOME/control.db or COSTLINE_CONTROL_URL) and live counters from
    memory or Redis (REDIS_URL); ``controls=False`` is the bare path: explicit model and
    fallbacks only.
    """

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
        controls: Controls | bool = True,
        allow_unpriced: bool = False,
        seed: int | None = None,
        tracer_provider: object = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        base = catalog or load_catalog()
        if controls is True:
            controls = Controls(base)
        self.controls: Controls | None = controls or None
        if self.controls is not None:
            self.controls.snapshot()  # overrides and policies in force from the first call
        self._catalog = base
        self.log = log if log is not None else UsageLog(self.settings.home)
        self.retry = retry or RetryPolicy()
        self.allow_unpriced = allow_unpriced
        self.tracer = Tracer(self.settings.otel, tracer_provider)
        self._providers: dict[str, Provider] = dict(providers or {})
        self._client = client
        self._aclient = aclient
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._names: dict[str, tuple[Catalog, str, str, str, bool]] = {}  # see _candidate

    @property
    def catalog(self) -> Catalog:
        """The price catalog in force (with the control plane's overrides, when on)."""
        return self.controls.catalog if self.controls is not None else self._catalog

    # ---- public API -------------------------------------------------------------------
    def complete(self, req: ChatRequest) -> Completion:
        plan = self._begin(req)
        if isinstance(plan, Completion):
            return plan
        try:
            while (cand := self._next(plan)) is not None:
                provider = self._provider(cand.provider)
                for attempt in range(1, self.retry.max_attempts + 1):
                    t0 = time.perf_counter()
                    try:
                        result = provider.complete(plan.req, cand.provider_model)
                    except CostlineError as exc:
                        delay = self._failed(plan, cand, attempt, exc, t0)
                        if delay is None:
                            break
                        time.sleep(delay)
                        continue
                    return self._settle(plan, cand, attempt, result, t0, None)
            raise self._exhausted(plan)
        finally:
            self._done(plan)

    async def acomplete(self, req: ChatRequest) -> Completion:
        plan = self._begin(req)
        if isinstance(plan, Completion):
            return plan
        try:
            while (cand := self._next(plan)) is not None:
                provider = self._provider(cand.provider)
                for attempt in range(1, self.retry.max_attempts + 1):
                    t0 = time.perf_counter()
                    try:
                        result = await provider.acomplete(plan.req, cand.provider_model)
                    except CostlineError as exc:
                        delay = self._failed(plan, cand, attempt, exc, t0)
                        if delay is None:
                            break
                        await asyncio.sleep(delay)
                        continue
                    return self._settle(plan, cand, attempt, result, t0, None)
            raise self._exhausted(plan)
        finally:
            self._done(plan)

    def stream(self, req: ChatRequest) -> Iterator[StreamChunk]:
        """Yield text chunks, then one final chunk carrying the Completion.

        Retries and fallbacks happen only before the first chunk reaches the caller.
        """
        plan = self._begin(req)
        if isinstance(plan, Completion):
            yield StreamChunk(plan.text, plan)
            return
        try:
            while (cand := self._next(plan)) is not None:
                provider = self._provider(cand.provider)
                for attempt in range(1, self.retry.max_attempts + 1):
                    parts: list[str] = []
                    t0 = time.perf_counter()
                    done: Completion | None = None
                    try:
                        gen = cast(Gen, provider.stream(plan.req, cand.provider_model))
                        with contextlib.closing(gen) as it:
                            for item in it:
                                if isinstance(item, str):
                                    plan.first_token(t0)
                                    parts.append(item)
                                    yield StreamChunk(item)
                                    continue
                                done = self._settle(plan, cand, attempt, item, t0, "".join(parts))
                                yield StreamChunk("", done)
                                return
                        raise MalformedResponse("stream ended without a final result")
                    except GeneratorExit:  # the consumer stopped: closing() ended the upstream
                        if done is None:
                            self._abandoned(plan, cand, attempt, "".join(parts))
                        raise
                    except CostlineError as exc:
                        delay = self._failed(plan, cand, attempt, exc, t0, "".join(parts))
                        if parts:
                            raise  # the caller has text already: no silent retry
                        if delay is None:
                            break
                        time.sleep(delay)
            raise self._exhausted(plan)
        finally:
            self._done(plan)

    async def astream(self, req: ChatRequest) -> AsyncIterator[StreamChunk]:
        plan = self._begin(req)
        if isinstance(plan, Completion):
            yield StreamChunk(plan.text, plan)
            return
        try:
            while (cand := self._next(plan)) is not None:
                provider = self._provider(cand.provider)
                for attempt in range(1, self.retry.max_attempts + 1):
                    parts: list[str] = []
                    t0 = time.perf_counter()
                    done: Completion | None = None
                    try:
                        agen = cast(AGen, provider.astream(plan.req, cand.provider_model))
                        async with contextlib.aclosing(agen) as it:
                            async for item in it:
                                if isinstance(item, str):
                                    plan.first_token(t0)
                                    parts.append(item)
                                    yield StreamChunk(item)
                                    continue
                                done = self._settle(plan, cand, attempt, item, t0, "".join(parts))
                                yield StreamChunk("", done)
                                return
                        raise MalformedResponse("stream ended without a final result")
                    except (GeneratorExit, asyncio.CancelledError):  # the consumer went away
                        if done is None:  # aclosing() has closed the upstream request
                            self._abandoned(plan, cand, attempt, "".join(parts))
                        raise
                    except CostlineError as exc:
                        delay = self._failed(plan, cand, attempt, exc, t0, "".join(parts))
                        if parts:
                            raise
                        if delay is None:
                            break
                        await asyncio.sleep(delay)
            raise self._exhausted(plan)
        finally:
            self._done(plan)

    async def aembed(self, req: EmbedRequest) -> Embeddings:
        """Embeddings priced by input tokens, under budgets and rate limits (router_embed.py)."""
        return await aembed(self, req)

    def batch(
        self, requests: Iterable[ChatRequest], concurrency: int = 8
    ) -> list[Completion | CostlineError]:
        """Run requests on ``concurrency`` threads; results in input order, errors in place."""
        if concurrency < 1:
            raise BadRequest(f"concurrency must be >= 1, got {concurrency}")

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
            raise BadRequest(f"concurrency must be >= 1, got {concurrency}")
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
        if self.controls is not None:
            self.controls.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- steps 1-4: gate, cache, route --------------------------------------------------
    def _begin(self, req: ChatRequest) -> Plan | Completion:
        self.log.check()  # UsageLogUnavailable (disk full) before any provider is paid
        plan = Plan(req, req.model or f"task:{req.task}")
        try:
            validate(req)
            ctl = self.controls
            if ctl is None:
                if not req.model:
                    raise BadRequest("request needs a model (task routing needs controls on)")
                names = [req.model, *req.fallbacks]
                plan.route_reason = f"{req.model}: requested"
                if req.optimize_cost and req.fallbacks:
                    names, plan.route_reason = self._cheapest_first(plan, names)
            else:
                snap = ctl.snapshot()
                plan.snap = snap
                policy = ctl.policy(snap, req.task) if req.task else None
                if policy is not None:
                    req = plan.req = apply_policy(req, policy)
                    plan.degrade_to = policy.degrade_to
                    plan.requested_model = req.model or policy.primary_model
                early = self._gate(plan) or self._cached(plan)
                if early is not None:
                    self._gate_report(plan)  # answered from the cache: no provider call
                    return early
                first = req.model or (policy.primary_model if policy else "")
                prompt = plan.count(first).tokens if first else 0
                choice = ctl.routing.route(req, policy, prompt_tokens=prompt, scores=ctl.scores)
                names = list(choice.models)
                plan.route_reason = choice.reason
                plan.requested_model = req.model or (policy.primary_model if policy else "")
            plan.pending = [self._candidate(m) for m in names]
        except CostlineError as exc:
            self._gate_report(plan)
            self._record_error(plan, None, exc, 0)
            raise
        return plan

    def _cheapest_first(self, plan: Plan, names: list[str]) -> tuple[list[str], str]:
        """optimize_cost on the bare path: [model, *fallbacks] by this request's estimated
        cost (as the routing engine orders them), and the route reason saying so."""
        req = plan.req
        ranked, est = by_cost(
            self.catalog, req, tuple(dict.fromkeys(names)), plan.count(names[0]).tokens
        )
        if est is None:  # nothing priced: as requested
            return names, plan.route_reason
        return list(ranked), cost_order_reason(ranked[0], names[0], len(ranked), est)

    def _gate(self, plan: Plan) -> Completion | None:
        """Step 1: a sampling strategy may answer with the last answer instead of a call.
        A call it allows is tentative until the provider is really called (``_next``)."""
        ctl, req = self.controls, plan.req
        if ctl is None or not req.task or req.task not in ctl.gate_keys:
            return None
        event = Event.of(req.task, Priority.parse(req.criticality), req.signal, req.score)
        decision = ctl.gate.decide(event, tentative=True)
        last = decision.last_answer if isinstance(decision.last_answer, Completion) else None
        if decision.call or last is None:  # nothing to reuse yet (a LOW event): call anyway
            plan.gate_key = req.task
            if decision.tentative is not None:
                plan.gate_call = decision
            return None
        done = Completion(
            text=last.text,
            usage=Usage(),
            cost=ZERO_COST,
            model=last.model,
            provider=last.provider,
            latency_ms=plan.elapsed_ms(),
            request_id=req.request_id,
            route_reason=f"sampling {decision.reason}: reused the last answer, no call",
            requested_model=plan.requested_model,
            saved=last.cost,
            ai_called=False,
        )
        self._record(
            plan, Candidate(done.model, done.provider, done.model, None), 0, "skipped", done, None
        )
        return done

    def _cached(self, plan: Plan) -> Completion | None:
        """Step 2: an exact (or semantic) cache hit costs 0 and records what it saved."""
        assert self.controls is not None
        cache = self.controls.cache
        plan.cache_key = key = cache.key(plan.req)  # once per call: for get and put
        hit = cache.get(plan.req, key=key)
        if hit is None:
            return None
        done = hit.completion(plan.req, plan.elapsed_ms())
        self._record(
            plan, Candidate(done.model, done.provider, done.model, None), 0, "ok", done, None
        )
        return done

    def _candidate(self, name: str) -> Candidate:
        cat = self.catalog
        hit = self._names.get(name)
        if hit is None or hit[0] is not cat:  # resolved once per name and catalog
            provider, provider_model = self._resolve(name)
            priced = cat.has(name)
            hit = (cat, provider, provider_model, cat.canonical(name) if priced else name, priced)
            if len(self._names) < 4096:
                self._names[name] = hit
        _, provider, provider_model, model, priced = hit
        if not priced:
            if not self.allow_unpriced:
                raise UnpricedModel(
                    f"model {name!r} has no price in the catalog; add a price override or "
                    "pass allow_unpriced=True to log it as unpriced",
                    model=name,
                )
            return Candidate(name, provider, provider_model, None)
        return Candidate(model, provider, provider_model, cat.lookup(name, None, 0))

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

    # ---- step 5: fit and admit ----------------------------------------------------------
    def _next(self, plan: Plan) -> Candidate | None:
        """The next candidate to call, admitted by budgets and rate limits; None when done."""
        self._release(plan)
        if plan.last is not None and not isinstance(plan.last, RetryableError):
            raise plan.last
        rest = iter(plan.pending)  # fitted lazily: later candidates only when needed
        plan.pending = []
        first = next((c for c in rest if self._fit(plan, c)), None)
        if first is None:
            if plan.last is None and plan.too_big is not None:
                self._record_error(plan, None, plan.too_big, 0)
                raise plan.too_big
            return None
        ctl = self.controls
        if ctl is None or plan.snap is None:
            plan.pending = list(rest)
            return first
        snap = plan.snap
        fitting = [first]  # the candidates fitted so far, in order

        def estimates() -> Iterator[Estimate]:
            yield self._estimate(plan, first)
            for c in rest:
                if self._fit(plan, c):
                    fitting.append(c)
                    yield self._estimate(plan, c)

        extra: dict[str, Candidate] = {}
        asked: list[Decision] = []  # the decisions that asked to degrade (name the budget)

        def degrade(d: Decision) -> Estimate | None:
            asked.append(d)
            target = d.degrade_to or plan.degrade_to
            if not target or target == d.model:
                return None
            cand = extra.get(target) or self._candidate(target)
            if not self._fit(plan, cand):
                return None
            extra[target] = cand
            return self._estimate(plan, cand)

        try:
            choice = admit_first(
                ctl.guard,
                plan.req,
                estimates(),
                ctl.active_budgets(snap),
                snap.rate_limits,
                degrade=degrade,
            )
        except (BudgetExceeded, RateLimited) as exc:
            plan.last = exc
            self._record_error(plan, first, exc, 0)
            raise
        plan.decision = choice.decision
        plan.pending = fitting[choice.index + 1 :] + list(rest)
        plan.provider_called = True  # from here on the sampling gate counts a real call
        if choice.skipped:
            plan.notes.append("skipped " + "; ".join(f"{m} ({w})" for m, w in choice.skipped))
        cand = fitting[choice.index]
        if choice.degraded_from is not None:
            d = asked[-1] if asked else choice.decision
            if choice.estimate.model != cand.model:
                cand = extra[choice.estimate.model]
            why = budget_text(d.budget, d.utilisation)
            if cand.model == choice.degraded_from:  # nothing cheaper: same model, to the cap
                plan.route_reason = f"{cand.model}: {why}, over the soft limit, no degrade target"
            else:
                plan.degraded = True
                plan.route_reason = ctl.routing.explain_degrade(
                    cand.model, choice.degraded_from, why
                )
        return cand

    def _fit(self, plan: Plan, cand: Candidate) -> bool:
        """Count prompt tokens for this candidate; False if it can't fit its context window."""
        count = plan.count(cand.model)
        cand.prompt_tokens, cand.prompt_estimated = count.tokens, count.estimated
        if cand.row is None:
            return True
        cand.row = self.catalog.lookup(cand.model, prompt_tokens=count.tokens)
        window = cand.row.context_window
        need = count.tokens + (plan.req.max_tokens or 0)
        if window and need > window:
            plan.too_big = plan.too_big or ContextWindowExceeded(
                f"{cand.model}: prompt {count.tokens} + max_tokens {plan.req.max_tokens or 0}"
                f" = {need} tokens exceeds its context window of {window}",
                tokens=need,
                window=window,
                model=cand.model,
                provider=cand.provider,
            )
            return False
        return True

    def _estimate(self, plan: Plan, cand: Candidate) -> Estimate:
        """The reservation: an upper bound of this call's cost and tokens."""
        out = plan.req.max_tokens or (cand.row.max_output_tokens if cand.row else 0) or 4096
        cost = max_cost(cand.row, cand.prompt_tokens, out) if cand.row else 0
        return Estimate(cand.model, cand.provider, cost, cand.prompt_tokens + out)

    def _release(self, plan: Plan) -> None:
        if plan.decision is not None and self.controls is not None:
            self.controls.guard.release(plan.decision)
        plan.decision = None

    def _done(self, plan: Plan) -> None:
        """End of a call, however it ended: give back any reservation, and tell the sampling
        gate when its call never reached a provider (blocked, nothing fitted)."""
        self._release(plan)
        self._gate_report(plan)

    def _gate_report(self, plan: Plan) -> None:
        """Report a tentative sampling call that ``_settle`` did not (see ``_next``)."""
        if plan.gate_call is not None and self.controls is not None:
            if plan.provider_called:  # a real call that failed: still a call
                self.controls.gate.called(plan.gate_call)
            else:  # answered from the cache, or blocked: no provider call
                self.controls.gate.not_called(plan.gate_call)
        plan.gate_call = None

    # ---- steps 7-8: settle and record ---------------------------------------------------
    def _settle(
        self,
        plan: Plan,
        cand: Candidate,
        attempt: int,
        result: ProviderResult,
        t0: float,
        streamed_text: str | None,
    ) -> Completion:
        text = result.text if result.text or streamed_text is None else streamed_text
        usage = result.usage
        if usage is None:  # provider reported none: estimate, never $0
            usage = estimated_usage(cand, text)
        cost = price(usage, cand.row, batch=plan.req.batch) if cand.row else Cost(unpriced=True)
        done = plan.completion(
            cand,
            text,
            usage,
            cost,
            ttft_ms=plan.ttft_ms,
            finish_reason=result.finish_reason,
            choices=result.choices,
        )
        if cand.row is not None and (usage.cached_input_tokens or usage.cache_write_tokens):
            done.saved = prompt_cache_saving(usage, cand.row)  # provider prompt caching
        ctl = self.controls
        if ctl is not None:
            total = cost.total
            if plan.decision is not None:
                ctl.guard.settle(plan.decision, total, usage.total_tokens)
                plan.decision = None
            ctl.routing.observe(cand.model, (time.perf_counter() - t0) * 1000, True)
            if not plan.degraded:  # a cheaper model's answer never stands for the task's
                ctl.cache.put(plan.req, done, key=plan.cache_key)
            if plan.gate_key is not None:  # the answer to reuse; counts the tentative call
                ctl.gate.record_answer(plan.gate_key, done, total, call=plan.gate_call)
                plan.gate_call = None
        self._record(plan, cand, attempt, "ok", done, None)
        return done

    def _failed(
        self,
        plan: Plan,
        cand: Candidate,
        attempt: int,
        exc: CostlineError,
        t0: float,
        partial: str = "",
    ) -> float | None:
        """Log the failed attempt; return the delay before retrying, or None to move on."""
        exc.provider = exc.provider or cand.provider
        exc.model = exc.model or cand.model
        plan.last = exc
        ctl = self.controls
        if ctl is not None:
            retryable = isinstance(exc, RetryableError | MalformedResponse)
            ctl.routing.observe(cand.model, (time.perf_counter() - t0) * 1000, False, retryable)
        cost = self._record_error(plan, cand, exc, attempt, partial)
        if partial and ctl is not None and plan.decision is not None:
            ctl.guard.settle(plan.decision, cost.total, cand.prompt_tokens)  # it was billed
            plan.decision = None
        with self._lock:
            return self.retry.delay(attempt, exc, self._rng)

    def _abandoned(self, plan: Plan, cand: Candidate, attempt: int, partial: str) -> None:
        """A stream whose consumer left mid-call: the prompt and the partial answer were
        billed upstream, so they are estimated (flagged), priced, settled and logged."""
        n = len(partial)
        exc = ClientDisconnected(
            f"client disconnected after {n} characters; the upstream call was cancelled",
            provider=cand.provider,
            model=cand.model,
        )
        plan.last = exc
        usage = estimated_usage(cand, partial)
        cost = price(usage, cand.row, batch=plan.req.batch) if cand.row else Cost(unpriced=True)
        done = plan.completion(cand, partial, usage, cost, ttft_ms=plan.ttft_ms)
        ctl = self.controls
        if ctl is not None and plan.decision is not None:
            ctl.guard.settle(plan.decision, cost.total, usage.total_tokens)
            plan.decision = None
        self._record(plan, cand, attempt, "error", done, exc)

    def _exhausted(self, plan: Plan) -> CostlineError:
        if plan.last is not None:
            return plan.last
        return ContextWindowExceeded(f"no candidate model fits the prompt of {plan.req.model}")

    def _provider(self, name: str) -> Provider:
        p = self._providers.get(name)
        if p is None:
            with self._lock:
                p = self._providers.get(name)
                if p is None:
                    p = create(
                        self.settings.provider(name), client=self._client, aclient=self._aclient
                    )
                    self._providers[name] = p
        return p

    def _record(
        self,
        plan: Plan,
        cand: Candidate,
        attempt: int,
        status: Status,
        done: Completion,
        exc: CostlineError | None,
    ) -> None:
        project = plan.req.project
        bodies = project is not None and project in self.settings.log_bodies_projects
        self.log.append(usage_event(plan, cand, attempt, status, done, exc, bodies=bodies))
        self.tracer.record(plan.start_ns, plan.req, done, exc)

    def _record_error(
        self,
        plan: Plan,
        cand: Candidate | None,
        exc: CostlineError,
        attempt: int,
        partial: str = "",
    ) -> Cost:
        cand, failed, status = failed_call(plan, cand, exc, attempt, partial)
        self._record(plan, cand, attempt, status, failed, exc)
        return failed.cost
