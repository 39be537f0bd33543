"""Step 2, cache: an exact (or semantic) hit answers at cost 0 and records what it saved.

The cache key is computed once per call, here, and reused by settle to store the answer.
"""

from __future__ import annotations

from core.types import Completion

from .context import Context
from .record import record
from .state import Call, Candidate

__all__ = ["lookup"]


def lookup(ctx: Context, call: Call) -> Completion | None:
    """The cached answer to this request, recorded as a call; None on a miss."""
    assert ctx.controls is not None
    cache = ctx.controls.cache
    call.cache_key = key = cache.key(call.req)  # once per call: for get and put
    hit = cache.get(call.req, key=key)
    if hit is None:
        return None
    done = hit.completion(call.req, call.elapsed_ms())
    record(ctx, call, Candidate(done.model, done.provider, done.model, None), 0, "ok", done, None)
    return done
