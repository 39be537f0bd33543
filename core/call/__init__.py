"""The call path: one request from ChatRequest to a priced, logged Completion.

Each step is one module, over one per-call state object (``state.Call``) and what every call
of a router shares (``context.Context``); see docs/architecture.md, "The call path".

    begin     validate the request, apply its task policy, then:
    gate      1 sampling gate: reuse the last answer instead of a call
    cache     2 exact (or semantic) cache hit: cost 0, saved cost recorded
    estimate  3 prompt tokens per candidate, its context window, the reservation
    route     4 ordered candidates (task policy, strategy, health, context window)
    admit     5 budgets and rate limits reserve the estimate; degrade, skip or refuse
    attempt   6 the attempt engine: provider calls with retries and fallback
    settle    7 usage and price; reservation, routing health, cache, gate settled
    record    8 one usage event per outcome (and a span)

``core.router.Router`` is the public face: its complete/acomplete/stream/astream (and
``embed.aembed``) are thin sync/async adapters around ``attempt.attempts``.
"""

from .attempt import Attempt, attempts
from .begin import apply_policy, start, validate
from .context import ClosedLog, Context
from .embed import Embeddings, EmbedRequest, aembed
from .state import Call, Candidate

__all__ = [
    "Attempt",
    "Call",
    "Candidate",
    "ClosedLog",
    "Context",
    "EmbedRequest",
    "Embeddings",
    "aembed",
    "apply_policy",
    "attempts",
    "start",
    "validate",
]
