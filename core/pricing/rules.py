"""Per-provider pricing rules that a price row alone does not say.

Which providers have a batch API is in the catalog (a row with batch rates); whether the batch
discount also applies to cached-input (cache read) and cache-write tokens is a provider rule:

    | provider  | batch API | batch discount on cache reads/writes | where it is written        |
    |-----------|-----------|--------------------------------------|----------------------------|
    | anthropic | yes (50%) | yes: the multipliers stack           | Anthropic batch-processing |
    |           |           |                                      | docs ("pricing stacks")    |
    | openai    | yes (50%) | yes: cached input at half the cached | openai.com/api/pricing,    |
    |           |           | rate (e.g. gpt-5 batch $0.0625)      | Batch column               |
    | google    | yes (50%) | no: context-cache reads keep their   | ai.google.dev pricing      |
    |           |           | standard rate                        |                            |
    | groq      | yes (50%) | no (no stacking documented)          | groq.com/pricing           |
    | mistral   | yes (50%) | no (no cache discount)               | mistral.ai/pricing         |
    | others    | per row   | no                                   |                            |

A batch request on a row without batch rates (deepseek, xai, cohere, local, ...) is priced at
the standard rates and flagged ``batch_unavailable``: the call is served, never refused, and
never silently shown as discounted. See docs/architecture.md, "Money".
"""

from __future__ import annotations

__all__ = ["BATCH_DISCOUNTS_CACHE", "FLAG_BATCH_UNAVAILABLE", "FLAG_OVER_CONTEXT", "PRICE_FLAGS"]

BATCH_DISCOUNTS_CACHE: frozenset[str] = frozenset({"anthropic", "openai"})

FLAG_BATCH_UNAVAILABLE = "batch_unavailable"  # batch asked; the provider has no batch API
FLAG_OVER_CONTEXT = "over_context_window"  # prompt larger than the model's context window
PRICE_FLAGS: tuple[str, ...] = (FLAG_BATCH_UNAVAILABLE, FLAG_OVER_CONTEXT)
