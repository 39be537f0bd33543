"""Step 3, estimate: whether the candidate's context window holds the prompt and which price
tier applies (an upper bound of the prompt's tokens when it settles both, else the exact
tiktoken count, offline), the prompt tokens per tokenizer when something needs them, and the
reservation - an upper bound of the call's cost and tokens that the budget guard holds while
the call runs."""

from __future__ import annotations

from core import tokens
from core.budgets import Estimate
from core.errors import ContextWindowExceeded
from core.pricing import max_cost

from .context import Context
from .state import Call, Candidate

__all__ = ["choices", "count", "count_inputs", "fit", "output_tokens", "reservation"]

DEFAULT_OUTPUT = 4096  # max_tokens when neither the request nor the catalog sets one (LiteLLM's)


def count(call: Call, model: str) -> tokens.TokenCount:
    """Prompt tokens for ``model``, counted once per tokenizer (candidates share them)."""
    return call.count(model)


def fit(ctx: Context, call: Call, cand: Candidate) -> bool:
    """Whether ``cand``'s context window holds the prompt; False (remembering why) if not.
    Sets ``cand.row`` to the price tier of the prompt's size. An embeddings call's inputs
    are counted once, by ``count_inputs``.

    The prompt is counted exactly only when it matters: when an upper bound of its tokens
    (``tokens.count_upper_bound``) plus max_tokens fits the window and stays in the base
    price tier, the exact count is left to its first use (``Candidate.prompt_tokens``); a
    count the call already made for this model (to rank its route) is used as is."""
    if call.embedding:
        return True
    if cand.tokens is None:
        cand.call = call  # counted on first use
        if cand.row is None:  # unpriced: no window, no tier
            return True
        known = call.by_model.get(cand.model)
        if known is not None:  # already counted (to rank the route): checked exactly below
            cand.tokens = known.tokens
        elif _bound_fits(ctx, call, cand):
            return True
    elif cand.row is None:
        return True
    n = cand.prompt_tokens
    cand.row = ctx.catalog.lookup(cand.model, prompt_tokens=n)  # the tier for this prompt
    window = cand.row.context_window
    out = call.req.max_tokens or 0
    if window and n + out > window:
        call.too_big = call.too_big or ContextWindowExceeded(
            f"{cand.model}: prompt {n} + max_tokens {out} = {n + out} tokens exceeds its"
            f" context window of {window}",
            tokens=n + out,
            window=window,
            model=cand.model,
            provider=cand.provider,
        )
        return False
    return True


def _bound_fits(ctx: Context, call: Call, cand: Candidate) -> bool:
    """True (with ``cand.row`` set) when an upper bound of the prompt's tokens plus
    max_tokens fits ``cand``'s window in its base price tier: the exact count's outcome."""
    out = call.req.max_tokens or 0
    bound = tokens.count_upper_bound(cand.model, call.req.messages)
    more = call.billed_text()  # tools, schemas, tool calls
    if more:
        bound += len(more.encode())
    if call.images != ():  # images, or not looked for yet (core.vision)
        bound += call.image_tokens(cand.model)
    lookup = ctx.catalog.lookup
    row = lookup(cand.model, prompt_tokens=bound)
    window = row.context_window
    if (not window or bound + out <= window) and row is lookup(cand.model, prompt_tokens=0):
        cand.row = row  # every size up to the bound has this tier: the exact one's too
        return True
    return False


def count_inputs(model: str, inputs: list[str]) -> int:
    """Input tokens of an embeddings request: each input's text, no chat framing."""
    return sum(tokens.count_text(model, t) for t in inputs)


def output_tokens(call: Call, cand: Candidate) -> int:
    """The most output tokens the call may produce on ``cand``: the request's max_tokens,
    else the model's maximum output in the price catalog, no more than its context window
    leaves after the prompt, else ``DEFAULT_OUTPUT`` (an unpriced model). The reservation
    assumes it, and it is the max_tokens sent to a provider that needs one (Anthropic) when
    the request has none (``Attempt.req``), so the two never differ."""
    if call.req.max_tokens:
        return call.req.max_tokens
    row = cand.row
    if row is None or not row.max_output_tokens:
        return DEFAULT_OUTPUT
    out = row.max_output_tokens
    if row.context_window:
        out = min(out, max(row.context_window - cand.prompt_tokens, 1))
    return out


def choices(call: Call) -> int:
    """How many answers the call asks for (OpenAI's ``n``, passed in ``extra``): each may
    produce ``output_tokens``, and the upstream bills every one."""
    extra = call.req.extra
    n = extra.get("n") if extra else None
    return n if type(n) is int and n > 1 else 1


def reservation(call: Call, cand: Candidate) -> Estimate:
    """The reservation: an upper bound of this call's cost and tokens (every choice's
    output when the call asks for several)."""
    if call.embedding:  # no output tokens
        cost = max_cost(cand.row, cand.prompt_tokens, 0) if cand.row else 0
        return Estimate(cand.model, cand.provider, cost, cand.prompt_tokens)
    out = output_tokens(call, cand) * choices(call)
    cost = max_cost(cand.row, cand.prompt_tokens, out) if cand.row else 0
    return Estimate(cand.model, cand.provider, cost, cand.prompt_tokens + out)
