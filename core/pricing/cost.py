"""Pricing one call: plain integer arithmetic over disjoint token classes.

``Usage`` counts every token in exactly one class (input excludes cached and cache-write
tokens; output excludes reasoning tokens), so each class is charged once, at its own rate.
``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a 1-hour TTL,
charged at ``cache_write_1h`` instead of ``cache_write``.

Rounding. Rates are exact (int or Fraction pUSD per token). Each token class's cost is the
exact product tokens x rate, rounded half-to-even to whole pUSD (only a fractional rate can
give a fraction); the call's cost is the sum of its classes. So a logged call is within
0.5 pUSD per class of its exact cost, and any sum of N logged calls is within 2.5 N pUSD of
the exact rational total (1M calls: within $0.0000025), while the sum of logged costs always
equals the sum of re-pricing each call.
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction
from typing import cast

from core.errors import UnpricedModel
from core.pricing.catalog import Catalog
from core.pricing.rows import PriceRow, Rate
from core.pricing.rules import BATCH_DISCOUNTS_CACHE, FLAG_BATCH_UNAVAILABLE, FLAG_OVER_CONTEXT
from core.types import Cost, Usage

__all__ = ["cost_of", "max_cost", "price", "prompt_cache_saving"]


def _mul(tokens: int, rate: Rate) -> int:
    """tokens x rate in whole pUSD: exact for an int rate, round-half-even for a Fraction."""
    if type(rate) is int:
        return tokens * rate
    return round(tokens * rate)


def price(usage: Usage, row: PriceRow, *, batch: bool = False) -> Cost:
    """Cost of ``usage`` at ``row``'s rates, in integer picodollars.

    With ``batch`` and a model that has a batch API, input and output (and reasoning, when it
    is billed as output) use the batch rates; cached and cache-write tokens get the same
    discount where the provider stacks it (``rules.BATCH_DISCOUNTS_CACHE``). Without a batch
    API the standard rates apply and the cost carries the ``batch_unavailable`` flag; a prompt
    larger than the context window is priced and flagged ``over_context_window``.
    """
    u = usage
    over = u.input_tokens + u.cached_input_tokens + u.cache_write_tokens > row.context_window
    if row.whole and not batch and not u.cache_write_1h_tokens:  # the common case: ints only
        cost = Cost(
            u.input_tokens * cast(int, row.input),
            u.cached_input_tokens * cast(int, row.cached_input),
            u.cache_write_tokens * cast(int, row.cache_write),
            u.output_tokens * cast(int, row.output),
            u.reasoning_tokens * cast(int, row.reasoning),
        )
        return Cost(*_classes(cost), flags=(FLAG_OVER_CONTEXT,)) if over else cost
    flags: list[str] = []
    inp, out, reasoning = row.input, row.output, row.reasoning
    cached, write = row.cached_input, row.cache_write
    write_1h = row.cache_write_1h if row.cache_write_1h is not None else write
    if batch and (row.batch_input is None or row.batch_output is None):
        flags.append(FLAG_BATCH_UNAVAILABLE)
    elif batch and row.batch_input is not None and row.batch_output is not None:
        if reasoning == out:
            reasoning = row.batch_output
        if row.provider in BATCH_DISCOUNTS_CACHE and inp:
            f = Fraction(row.batch_input) / Fraction(inp)
            cached, write, write_1h = cached * f, write * f, write_1h * f
        inp, out = row.batch_input, row.batch_output
    if over:
        flags.append(FLAG_OVER_CONTEXT)
    hour = min(u.cache_write_1h_tokens, u.cache_write_tokens)
    return Cost(
        _mul(u.input_tokens, inp),
        _mul(u.cached_input_tokens, cached),
        _mul(u.cache_write_tokens - hour, write) + _mul(hour, write_1h),
        _mul(u.output_tokens, out),
        _mul(u.reasoning_tokens, reasoning),
        flags=tuple(flags),
    )


def _classes(c: Cost) -> tuple[int, int, int, int, int]:
    return c.input, c.cached_input, c.cache_write, c.output, c.reasoning


def prompt_cache_saving(usage: Usage, row: PriceRow) -> Cost:
    """What provider prompt caching saved on this call against sending every prompt token
    uncached: cache reads at (input - cached_input) less the cache-write premium
    (cache_write - input; 1-hour writes at cache_write_1h - input). Negative when a call
    only wrote the cache. Returned in the cached_input / cache_write classes."""
    u, inp = usage, row.input
    hour = min(u.cache_write_1h_tokens, u.cache_write_tokens)
    write_1h = row.cache_write_1h if row.cache_write_1h is not None else row.cache_write
    reads = _mul(u.cached_input_tokens, inp) - _mul(u.cached_input_tokens, row.cached_input)
    premium = (
        _mul(u.cache_write_tokens - hour, row.cache_write)
        + _mul(hour, write_1h)
        - _mul(u.cache_write_tokens, inp)
    )
    return Cost(cached_input=reads, cache_write=-premium)


def cost_of(
    catalog: Catalog,
    model: str,
    usage: Usage,
    at: date | None = None,
    batch: bool = False,
) -> Cost:
    """Like ``price`` after a lookup; an unknown model gives ``Cost(unpriced=True)``, never $0
    silently."""
    try:
        row = catalog.lookup(model, at, usage.prompt_tokens)
    except UnpricedModel:
        return Cost(unpriced=True)
    return price(usage, row, batch=batch)


def max_cost(row: PriceRow, prompt_tokens: int, max_output_tokens: int) -> int:
    """Upper-bound estimate in pUSD for a budget reservation: the whole prompt at the input
    rate plus every allowed output token at the dearer of the output and reasoning rates
    (rounded up when a rate is fractional)."""
    return math.ceil(prompt_tokens * row.input + max_output_tokens * max(row.output, row.reasoning))
