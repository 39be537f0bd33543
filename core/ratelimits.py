"""Rate limits: which ``RateItem``s (live-state buckets) apply to one request + candidate model.

A ``RateLimit`` row from the control plane names a scope (user, org, app, model, provider,
key: a gateway virtual key), a
metric (requests: cost 1; tokens: cost = the call's reservation, its prompt plus max_tokens
or the model's max output, at admission, corrected to the tokens it used when the call
settles: ``RateItem.settles``), a limit per
``window_s`` and an algorithm (token bucket with ``burst``, or sliding window). With
``scope_value`` None the row gives each distinct value its own bucket (one per user, ...); with
a value it applies only to requests carrying that value. A request without the field (no
``user``) is outside every user-scoped row.

Bucket keys are stable and namespaced: ``rl:<limit id>:<scope>:<value>`` (the state backend adds
its own prefix and kind, and hashes long keys).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.control import RateLimit
from core.state import RateItem
from core.types import ChatRequest

__all__ = [
    "KEY_PREFIX",
    "AppliedLimit",
    "describe",
    "model_matches",
    "rate_items",
    "rate_key",
    "scope_value",
]

KEY_PREFIX = "rl"
Canonical = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class AppliedLimit:
    """One control-plane row applied to one call: the row, the bucket value and its item."""

    limit: RateLimit
    value: str
    item: RateItem


def rate_key(limit: RateLimit, value: str) -> str:
    return f"{KEY_PREFIX}:{limit.id}:{limit.scope}:{value}"


def same_model(a: str, b: str, provider: str, canonical: Canonical | None = None) -> bool:
    """Model names compare equal after the catalog's canonical name (if given) or without a
    leading ``provider/``: a budget on 'gpt-4o' covers a call to 'openai/gpt-4o'."""
    return _norm(a, provider, canonical) == _norm(b, provider, canonical)


def _norm(name: str, provider: str, canonical: Canonical | None) -> str:
    if canonical is not None:
        try:
            return canonical(name).lower()
        except Exception:  # unknown to the catalog: compare the plain name
            pass
    name = name.strip().lower()
    head = provider.lower() + "/"
    return name[len(head) :] if name.startswith(head) else name


def model_matches(
    wanted: str, model: str, provider: str, canonical: Canonical | None = None
) -> bool:
    return same_model(wanted, model, provider, canonical)


def scope_value(scope: str, req: ChatRequest, model: str, provider: str) -> str | None:
    """The request's value for a rate/budget scope (None: the request has none)."""
    if scope == "user":
        return req.user
    if scope == "org":
        return req.org
    if scope == "app":
        return req.app
    if scope == "project":
        return req.project
    if scope == "task":
        return req.task
    if scope == "key":
        return req.key
    if scope == "model":
        return model
    if scope == "provider":
        return provider
    return None


def rate_items(
    limits: Sequence[RateLimit],
    req: ChatRequest,
    model: str,
    provider: str,
    est_tokens: int,
    canonical: Canonical | None = None,
) -> list[AppliedLimit]:
    """Every enabled row that applies to this request sent to ``model`` at ``provider``."""
    out: list[AppliedLimit] = []
    for lim in limits:
        if not lim.enabled:
            continue
        value = scope_value(lim.scope, req, model, provider)
        if value is None or value == "":
            continue
        if lim.scope == "model":
            value = _norm(value, provider, canonical)
            if lim.scope_value is not None and not same_model(
                lim.scope_value, value, provider, canonical
            ):
                continue
        elif lim.scope_value is not None and lim.scope_value != value:
            continue
        tokens = lim.metric != "requests"
        item = RateItem(
            rate_key(lim, value),
            lim.algorithm,  # type: ignore[arg-type]
            lim.limit,
            float(lim.window_s),
            lim.burst,
            max(0, est_tokens) if tokens else 1,
            tokens,  # a reservation: settled to the tokens used
        )
        out.append(AppliedLimit(lim, value, item))
    return out


def describe(applied: AppliedLimit, retry_after: float | None) -> str:
    """'rate limit 'per-user' (user=alice): 60 requests per 60 s; retry in 1.5 s'."""
    lim = applied.limit
    unit = "requests" if lim.metric == "requests" else "tokens"
    algo = "token bucket" if lim.algorithm == "token_bucket" else "sliding window"
    burst = f", burst {lim.burst:,}" if lim.algorithm == "token_bucket" and lim.burst else ""
    head = (
        f"rate limit '{lim.id}' ({lim.scope}={applied.value}): {lim.limit:,} {unit} per "
        f"{lim.window_s:,} s ({algo}{burst})"
    )
    if retry_after is None or math.isinf(retry_after):
        need = applied.item.cost
        return f"{head}; this call needs {need:,} {unit}, more than the limit allows at once"
    return f"{head}; retry in {retry_after:.2f} s"
