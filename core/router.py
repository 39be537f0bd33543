"""Router: the public face of the call path (docs/architecture.md, "The call path").

Each method is a thin adapter: ``start`` runs the request through validation, the sampling
gate, the cache and routing (it may answer right there); ``attempts`` then yields provider
attempts - each admitted candidate, retried as the retry policy says - and the adapter only
does the I/O, sync or async, whole or streamed. Pricing, settling and logging live in the
steps (``core/call/``), so the five entry points cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import httpx

from core.call import (
    Call,
    ClosedLog,
    Context,
    Embeddings,
    EmbedRequest,
    aembed,
    attempts,
    gate,
    start,
    validate,
)
from core.call.admit import finish
from core.control import env_timezone
from core.controls import Controls
from core.errors import BadRequest, CostlineError, MalformedResponse
from core.otel import Tracer
from core.pricing import Catalog, load_catalog
from core.providers import Provider, StreamItem
from core.reconcile import Reconciler, start_reconciler
from core.retry import RetryPolicy
from core.settings import Settings
from core.types import ChatRequest, Completion, StreamChunk
from core.usage import UsageLog
from core.validate import unexpected

__all__ = ["EmbedRequest", "Embeddings", "Router", "validate"]

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
        settings = settings or Settings.from_env()
        env_timezone()  # a bad COSTLINE_TIMEZONE: ConfigError now, not at the first budget
        base = catalog or load_catalog()
        ctl = Controls(base) if controls is True else controls or None
        self.reconciler: Reconciler | None = None
        if ctl is not None:
            ctl.snapshot()  # overrides and policies in force from the first call
            # budget counters rebuilt from the usage log before the first call, then kept in line
            interval = settings.reconcile_interval_s
            self.reconciler = start_reconciler(ctl, settings.home, interval)
        self._ctx = Context(
            settings=settings,
            base_catalog=base,
            controls=ctl,
            log=log
            if log is not None
            else UsageLog(settings.home, flush_interval_s=settings.log_flush_s),
            retry=retry or RetryPolicy(),
            tracer=Tracer(settings.otel, tracer_provider),
            allow_unpriced=allow_unpriced,
            owns_log=log is None,
            providers=dict(providers or {}),
            client=client,
            aclient=aclient,
            rng=random.Random(seed),
        )
        self.settings, self.controls, self.log = settings, ctl, self._ctx.log
        self.retry, self.tracer = self._ctx.retry, self._ctx.tracer
        self.batch_tick_s = 1.0  # how often waiting LOW sampling batches are checked
        self._ticker: gate.Ticker | None = None
        self._closed = False
        self._ctx.on_batched = self._watch_batches

    @property
    def catalog(self) -> Catalog:
        """The price catalog in force (with the control plane's overrides, when on)."""
        return self._ctx.catalog

    def complete(self, req: ChatRequest) -> Completion:
        return self._complete(start(self._ctx, req))

    def _complete(self, call: Call | Completion) -> Completion:
        if isinstance(call, Completion):
            return call
        try:
            for att in attempts(self._ctx, call):
                try:
                    result = att.provider.complete(att.req, att.cand.provider_model)
                except CostlineError as exc:
                    time.sleep(att.fail(exc))
                    continue
                except BaseException as exc:  # KeyboardInterrupt: logged as abandoned
                    att.interrupted(exc)
                    raise
                return att.settle(result)
            raise call.exhausted()
        finally:
            finish(self._ctx, call)

    async def acomplete(self, req: ChatRequest) -> Completion:
        call = start(self._ctx, req)
        if isinstance(call, Completion):
            return call
        try:
            for att in attempts(self._ctx, call):
                try:
                    result = await att.provider.acomplete(att.req, att.cand.provider_model)
                except CostlineError as exc:
                    await asyncio.sleep(att.fail(exc))
                    continue
                except BaseException as exc:  # cancelled (wait_for, a timeout): abandoned
                    att.interrupted(exc)
                    raise
                return att.settle(result)
            raise call.exhausted()
        finally:
            finish(self._ctx, call)

    def stream(self, req: ChatRequest) -> Iterator[StreamChunk]:
        """Yield text chunks, then one final chunk carrying the Completion.

        Retries and fallbacks happen only before the first chunk reaches the caller.
        """
        call = start(self._ctx, req)
        if isinstance(call, Completion):
            yield StreamChunk(call.text, call)
            return
        try:
            for att in attempts(self._ctx, call):
                gen = cast(Gen, att.provider.stream(att.req, att.cand.provider_model))
                try:
                    with contextlib.closing(gen) as items:
                        for item in items:
                            piece = att.piece(item)
                            yield piece
                            if piece.completion is not None:
                                return
                    raise MalformedResponse("stream ended without a final result")
                except CostlineError as exc:
                    time.sleep(att.fail(exc))
                except BaseException as exc:  # the consumer stopped (GeneratorExit, Ctrl-C):
                    att.interrupted(exc)  # closing() has ended the upstream request
                    raise
            raise call.exhausted()
        finally:
            finish(self._ctx, call)

    async def astream(self, req: ChatRequest) -> AsyncIterator[StreamChunk]:
        call = start(self._ctx, req)
        if isinstance(call, Completion):
            yield StreamChunk(call.text, call)
            return
        try:
            for att in attempts(self._ctx, call):
                agen = cast(AGen, att.provider.astream(att.req, att.cand.provider_model))
                try:
                    async with contextlib.aclosing(agen) as items:
                        async for item in items:
                            piece = att.piece(item)
                            yield piece
                            if piece.completion is not None:
                                return
                    raise MalformedResponse("stream ended without a final result")
                except CostlineError as exc:
                    await asyncio.sleep(att.fail(exc))
                except BaseException as exc:  # the consumer went away (GeneratorExit, cancel)
                    att.interrupted(exc)  # aclosing() has closed the upstream request
                    raise
            raise call.exhausted()
        finally:
            finish(self._ctx, call)

    def flush_due(self) -> list[Completion | CostlineError]:
        """Make the one call of each LOW sampling batch whose timeout elapsed. A timer runs
        this every second from the first batched event until ``close``."""
        out: list[Completion | CostlineError] = []
        for req in gate.due(self._ctx):
            try:
                out.append(self._complete(start(self._ctx, req, flushed=True)))
            except CostlineError as exc:
                out.append(exc)
        return out

    def _watch_batches(self) -> None:
        with self._ctx.lock:
            if self._ticker is None and not self._closed:
                self._ticker = gate.Ticker(self.flush_due, self.batch_tick_s)

    async def aembed(self, req: EmbedRequest) -> Embeddings:
        """Embeddings priced by input tokens, under budgets and rate limits (core/call/embed.py)."""
        return await aembed(self._ctx, req)

    def batch(
        self, requests: Iterable[ChatRequest], concurrency: int = 8
    ) -> list[Completion | CostlineError]:
        """Run requests on ``concurrency`` threads; results in input order, errors in place."""
        if concurrency < 1:
            raise BadRequest(f"concurrency: must be >= 1, got {concurrency}", field="concurrency")

        def one(r: ChatRequest) -> Completion | CostlineError:
            try:
                return self.complete(r)
            except CostlineError as exc:
                return exc
            except Exception as exc:  # one broken item must not drop the others' results
                return unexpected(exc)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, list(requests)))

    async def abatch(
        self, requests: Iterable[ChatRequest], concurrency: int = 8
    ) -> list[Completion | CostlineError]:
        if concurrency < 1:
            raise BadRequest(f"concurrency: must be >= 1, got {concurrency}", field="concurrency")
        sem = asyncio.Semaphore(concurrency)

        async def one(r: ChatRequest) -> Completion | CostlineError:
            async with sem:
                try:
                    return await self.acomplete(r)
                except CostlineError as exc:
                    return exc
                except Exception as exc:
                    return unexpected(exc)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def close(self) -> None:
        """Flush the usage log (closing it and its threads when the Router made it), stop the
        timers and close the providers' clients. Later calls raise UsageLogUnavailable."""
        with self._ctx.lock:
            self._closed, ticker, self._ticker = True, self._ticker, None
        if ticker is not None:
            ticker.stop()
        if self.reconciler is not None:
            self.reconciler.close()
        self._ctx.close()
        if not isinstance(self._ctx.log, ClosedLog):
            self._ctx.log = ClosedLog(self._ctx.log)

    async def aclose(self) -> None:
        """``close`` for async code: it also closes the async HTTP clients the providers
        opened for ``acomplete``/``astream``/``aembed``, which ``close`` cannot await (their
        pooled connections stayed open until garbage collection, with a ResourceWarning)."""
        for p in list(self._ctx.providers.values()):
            await p.aclose()
        self.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
