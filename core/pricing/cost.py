"""Pricing one call: plain integer arithmetic over disjoint token classes.

``Usage`` counts every token in exactly one class (input excludes cached and cache-write
tokens; output excludes reasoning tokens), so each class is charged once, at its own rate.
"""

from __future__ import annotations

from datetime import date

from core.errors import UnpricedModel
from core.pricing.catalog import Catalog
from core.pricing.rows import PriceRow
from core.types import Cost, Usage

__all__ = ["cost_of", "max_cost", "price"]


def price(usage: Usage, row: PriceRow, *, batch: bool = False) -> Cost:
    """Cost of ``usage`` at ``row``'s rates, in integer picodollars.

    With ``batch`` and a model that has a batch API, input and output (and reasoning, when it
    is billed as output) use the batch rates; cached and cache-write tokens keep their rates.
    """
    inp, out, reasoning = row.input, row.output, row.reasoning
    if batch and row.batch_input is not None and row.batch_output is not None:
        if reasoning == out:
            reasoning = row.batch_output
        inp, out = row.batch_input, row.batch_output
    return Cost(
        usage.input_tokens * inp,
        usage.cached_input_tokens * row.cached_input,
        usage.cache_write_tokens * row.cache_write,
        usage.output_tokens * out,
        usage.reasoning_tokens * reasoning,
    )


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
    rate plus every allowed output token at the dearer of the output and reasoning rates."""
    return prompt_tokens * row.input + max_output_tokens * max(row.output, row.reasoning)
