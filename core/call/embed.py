"""Embeddings on the same steps as a chat call, without sampling, cache or routing: route
resolves the one model (an unknown one is ``UnpricedModel``), estimate counts the input
tokens, admit reserves against every matching budget and rate limit, the attempt engine calls
the provider (retries as the router's policy says), settle prices the tokens the provider
reported (or the count, flagged as estimated) and record logs one event per attempt.
See docs/gateway.md, "Embeddings".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from core.errors import BadRequest, CostlineError
from core.types import ChatRequest, Cost, Message, Usage, new_request_id
from core.validate import check_request

from .admit import finish
from .attempt import attempts
from .context import Context
from .estimate import count_inputs
from .record import record_error
from .route import candidate
from .state import Call

__all__ = ["EmbedRequest", "Embeddings", "aembed"]


@dataclass(slots=True)
class EmbedRequest:
    inputs: list[str]
    model: str
    dimensions: int | None = None
    org: str | None = None
    project: str | None = None
    user: str | None = None
    task: str | None = None
    app: str | None = None
    key: str | None = None
    criticality: str = "normal"
    tags: tuple[str, ...] = ()
    source: str = "app"
    request_id: str = field(default_factory=new_request_id)
    # OpenAI's ``user`` field as the client sent it, passed to the provider as chat's is
    # (``user`` above is whom the call is attributed to, which a key's binding may decide)
    end_user: str | None = None
    # the inputs as token-ID arrays (OpenAI's other ``input`` form; LangChain's default):
    # sent as they are, to an upstream that takes them; ``inputs`` is then empty
    tokens: list[list[int]] | None = None


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage
    cost: Cost
    model: str
    provider: str
    latency_ms: float
    request_id: str


async def aembed(ctx: Context, req: EmbedRequest) -> Embeddings:
    """The async adapter: one embeddings request through the steps."""
    tokens = req.tokens
    if tokens is not None:
        if not tokens or not all(_token_ids(t) for t in tokens):
            raise BadRequest("input: give one or more non-empty arrays of token ids")
    elif not req.inputs or not all(isinstance(t, str) and t for t in req.inputs):
        raise BadRequest("input: give one or more non-empty strings")
    view = check_request(_chat_view(req))
    ctx.log.check()  # UsageLogUnavailable before any provider is paid
    call = Call(view, req.model, f"{req.model}: requested", embedding=True)
    try:
        cand = candidate(ctx, req.model)
    except CostlineError as exc:
        record_error(ctx, call, None, exc, 0)
        raise
    # token arrays are counted exactly: one token an id
    cand.prompt_tokens = (
        count_inputs(cand.model, req.inputs) if tokens is None else sum(map(len, tokens))
    )
    if ctx.controls is not None:
        call.snap = ctx.controls.snapshot()
    call.pending = [cand]
    try:
        for att in attempts(ctx, call):
            try:
                got = await att.provider.aembed(
                    req.inputs if tokens is None else tokens,
                    cand.provider_model,
                    req.dimensions,
                    req.end_user,
                )
            except CostlineError as exc:
                await asyncio.sleep(att.fail(exc))
                continue
            except BaseException as exc:  # cancelled (wait_for, a timeout): abandoned
                att.interrupted(exc)
                raise
            reported = got.input_tokens
            if reported is None and tokens is not None:  # exact all the same: not estimated
                reported = cand.prompt_tokens
            done = att.settle_embedding(reported)
            return Embeddings(
                got.vectors,
                done.usage,
                done.cost,
                cand.model,
                cand.provider,
                done.latency_ms,
                req.request_id,
            )
        raise call.exhausted()
    finally:
        finish(ctx, call)


def _token_ids(t: object) -> bool:
    """A non-empty list of token ids (ints >= 0)."""
    return (
        isinstance(t, list)
        and bool(t)
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in t)
    )


def _chat_view(req: EmbedRequest) -> ChatRequest:
    """The request as budgets, rate limits and the usage log see it."""
    return ChatRequest(
        messages=[Message("user", "\n".join(req.inputs))],
        model=req.model,
        task=req.task,
        org=req.org,
        project=req.project,
        user=req.user,
        app=req.app,
        key=req.key,
        criticality=req.criticality,  # type: ignore[arg-type]
        tags=req.tags,
        cache=False,
        source=req.source,
        request_id=req.request_id,
    )
