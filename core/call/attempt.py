"""Step 6, attempt: the one attempt engine behind complete, acomplete, stream, astream and
aembed.

``attempts(ctx, call)`` yields one ``Attempt`` per provider call: each admitted candidate
(step 5) up to ``RetryPolicy.max_attempts`` times. The caller - a thin sync or async adapter
in ``core/router.py`` or ``embed.py`` - does only the I/O and reports how the attempt ended:

    for att in attempts(ctx, call):
        try:
            result = att.provider.complete(att.req, att.cand.provider_model)
        except CostlineError as exc:
            sleep(att.fail(exc))    # records it; 0 when moving on to the next candidate
            continue
        return att.settle(result)
    raise call.exhausted()

A stream hands each item to ``att.piece(item)``, which reports text with ``att.chunk`` and
tool-call pieces with ``att.tool`` (time to first token is measured from the start of this
attempt, not the call) and settles the final result; every adapter reports
``att.interrupted(exc)`` when the caller went away mid-attempt (a closed stream,
KeyboardInterrupt, a cancelled task).
Retries and fallbacks happen only before the first chunk reaches the caller: ``fail`` after
a chunk re-raises the error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

from core.errors import CostlineError
from core.providers import Provider, ProviderResult, StreamItem, TextDelta, ToolDelta
from core.types import ChatRequest, Completion, StreamChunk

from . import estimate, settle
from .admit import next_candidate
from .context import Context
from .state import Call, Candidate

__all__ = ["Attempt", "attempts"]


def attempts(ctx: Context, call: Call) -> Iterator[Attempt]:
    """Every attempt of the call, candidate by candidate, until the caller stops asking."""
    while (cand := next_candidate(ctx, call)) is not None:
        provider = ctx.provider(cand.provider)
        for n in range(1, ctx.retry.max_attempts + 1):
            att = Attempt(ctx, call, cand, provider, n)
            yield att
            if not att.retry:
                break


class Attempt:
    """One provider call of one candidate, from its start to its outcome."""

    __slots__ = (
        "args",
        "call",
        "cand",
        "ctx",
        "done",
        "n",
        "parts",
        "provider",
        "retry",
        "t0",
        "ttft_ms",
    )

    def __init__(
        self, ctx: Context, call: Call, cand: Candidate, provider: Provider, n: int
    ) -> None:
        self.ctx, self.call, self.cand, self.provider, self.n = ctx, call, cand, provider, n
        self.parts: list[str] = []  # text already passed to the caller (streams)
        self.args: list[str] | None = None  # tool-call names and arguments passed on
        self.ttft_ms: float | None = None
        self.retry = True  # after a failure: another attempt of the same candidate?
        self.done: Completion | None = None
        self.t0 = time.perf_counter()

    @property
    def req(self) -> ChatRequest:
        """The request this attempt sends: the call's, with max_tokens set to what the
        reservation assumed (``estimate.output_tokens``) when the provider needs one
        (``Provider.needs_max_tokens``: Anthropic) and the caller gave none."""
        req = self.call.req
        if req.max_tokens is None and self.provider.needs_max_tokens:
            out = estimate.output_tokens(self.call, self.cand)
            return dataclasses.replace(req, max_tokens=out)
        return req

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def chunk(self, text: str) -> str:
        """A streamed text chunk on its way to the caller."""
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()
        self.parts.append(text)
        return text

    def tool(self, delta: ToolDelta) -> ToolDelta:
        """A streamed piece of a tool call on its way to the caller (output, like text)."""
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()
        if self.args is None:
            self.args = []
        self.args.append((delta.name or "") + delta.arguments)
        return delta

    def piece(self, item: StreamItem) -> StreamChunk:
        """What the caller gets for one streamed item: text, a tool-call piece, or, for the
        provider's final result, the settled Completion (the last chunk)."""
        cand = self.cand
        if isinstance(item, str):
            return StreamChunk(self.chunk(item), model=cand.model, provider=cand.provider)
        if isinstance(item, TextDelta):
            text = self.chunk(item.text)
            return StreamChunk(text, None, item.logprobs, item.kind, cand.model, cand.provider)
        if isinstance(item, ToolDelta):
            return StreamChunk("", model=cand.model, provider=cand.provider, tool=self.tool(item))
        return StreamChunk("", self.settle(item))

    def output(self) -> str:
        """What this attempt streamed: text, then tool-call names and arguments."""
        return "".join(self.parts) + "".join(self.args) if self.args else "".join(self.parts)

    def settle(self, result: ProviderResult) -> Completion:
        """The attempt succeeded: price, settle and record it (steps 7 and 8)."""
        self.done = settle.settle(
            self.ctx,
            self.call,
            self.cand,
            self.n,
            result,
            streamed="".join(self.parts),
            ttft_ms=self.ttft_ms,
            latency_ms=self.elapsed_ms(),
        )
        return self.done

    def settle_embedding(self, reported_tokens: int | None) -> Completion:
        self.done = settle.settle_embedding(self.ctx, self.call, self.cand, self.n, reported_tokens)
        return self.done

    def fail(self, exc: CostlineError) -> float:
        """The attempt failed: record it; the seconds to wait before the next attempt.
        Raises ``exc`` when text was already streamed (no silent retry after a chunk)."""
        partial = self.output()
        delay = settle.failed(
            self.ctx, self.call, self.cand, self.n, exc, self.elapsed_ms(), partial
        )
        if partial:
            raise exc
        self.retry = delay is not None
        return delay or 0.0

    def interrupted(self, exc: BaseException) -> None:
        """The attempt was cut by ``exc``, no CostlineError. When it is no ``Exception`` the
        caller went away - a stream's consumer closed it (GeneratorExit), KeyboardInterrupt,
        a cancelled task or its timeout (``asyncio.wait_for``) - after the request was sent,
        so the attempt is abandoned: priced and logged once. An ``Exception`` (a bug) passes."""
        if not isinstance(exc, Exception):
            self.abandon()

    def abandon(self) -> None:
        """The caller went away before the end (the upstream call is closed)."""
        if self.done is None:
            partial = self.output()
            settle.abandoned(self.ctx, self.call, self.cand, self.n, partial, self.ttft_ms)
