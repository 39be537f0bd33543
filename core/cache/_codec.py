"""Cached answers as versioned JSON: what was answered, by whom, and what it cost.

    {"v": 1, "text": "...", "model": "gpt-4o-mini", "provider": "openai",
     "usage": {"input_tokens": 812, ..., "estimated": false},
     "cost": {"input": 121800000, ..., "unpriced": false},
     "finish_reason": "stop", "created": 1750000000.0, "expires": 1750001800.0}

Costs are integer picodollars per token class. An entry with another ``v`` is ignored (a
future format change never misreads old entries); anything unparseable raises ``ValueError``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import orjson

from core.types import ZERO_COST, ChatRequest, Completion, Cost, Usage

FORMAT_VERSION = 1
_USAGE_INTS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
_COST_INTS = ("input", "cached_input", "cache_write", "output", "reasoning")


_usage_ints = operator.itemgetter(*_USAGE_INTS)
_cost_ints = operator.itemgetter(*_COST_INTS)


def _ints(d: dict[str, Any], get: operator.itemgetter[Any], names: tuple[str, ...]) -> Any:
    """The int fields ``names`` of ``d`` (KeyError names a missing one)."""
    values = get(d)
    for name, v in zip(names, values, strict=True):
        if type(v) is not int or v < 0:
            raise ValueError(f"{name} is not an int >= 0")
    return values


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A cache hit. ``saved`` is what the original call cost: log cost 0 and ``saved``."""

    text: str
    usage: Usage
    model: str
    provider: str
    saved: Cost
    created: float  # clock time it was stored
    expires: float
    finish_reason: str | None = None
    age_s: float = 0.0  # at lookup
    similarity: float | None = None  # semantic hits only

    def completion(self, req: ChatRequest, latency_ms: float = 0.0) -> Completion:
        """The Completion a router returns for this hit: cost 0, ``saved`` the original."""
        how = "exact" if self.similarity is None else f"semantic {self.similarity:.2f}"
        return Completion(
            text=self.text,
            usage=self.usage,
            cost=ZERO_COST,
            model=self.model,
            provider=self.provider,
            latency_ms=latency_ms,
            request_id=req.request_id,
            cache_hit=True,
            route_reason=f"{self.model}: cache hit ({how}, age {self.age_s:.0f}s)",
            requested_model=req.model,
            finish_reason=self.finish_reason,
            saved=self.saved,
        )


def encode(done: Completion, created: float, expires: float) -> bytes:
    u, c = done.usage, done.cost
    return orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "text": done.text,
            "model": done.model,
            "provider": done.provider,
            "usage": {
                "input_tokens": u.input_tokens,
                "cached_input_tokens": u.cached_input_tokens,
                "cache_write_tokens": u.cache_write_tokens,
                "output_tokens": u.output_tokens,
                "reasoning_tokens": u.reasoning_tokens,
                "estimated": u.estimated,
            },
            "cost": {
                "input": c.input,
                "cached_input": c.cached_input,
                "cache_write": c.cache_write,
                "output": c.output,
                "reasoning": c.reasoning,
                "unpriced": c.unpriced,
            },
            "finish_reason": done.finish_reason,
            "created": created,
            "expires": expires,
        }
    )


def _str(d: dict[str, Any], name: str) -> str:
    v = d[name]
    if not isinstance(v, str):
        raise ValueError(f"{name} is not a string")
    return v


def _num(d: dict[str, Any], name: str) -> float:
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{name} is not a number")
    return float(v)


def decode(raw: bytes, now: float | None = None) -> CachedAnswer | None:
    """None for another format version; ValueError for garbage. ``now`` sets ``age_s``."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    if d.get("v") != FORMAT_VERSION:
        return None
    try:
        u, c = d["usage"], d["cost"]
        if not isinstance(u, dict) or not isinstance(c, dict):
            raise ValueError("usage/cost are not objects")
        i, ci, cw, o, r = _ints(u, _usage_ints, _USAGE_INTS)
        ci_, cci, ccw, co, cr = _ints(c, _cost_ints, _COST_INTS)
        finish = d.get("finish_reason")
        created = _num(d, "created")
        return CachedAnswer(
            _str(d, "text"),
            Usage(i, ci, cw, o, r, bool(u["estimated"])),
            _str(d, "model"),
            _str(d, "provider"),
            Cost(ci_, cci, ccw, co, cr, bool(c["unpriced"])),
            created,
            _num(d, "expires"),
            finish if isinstance(finish, str) else None,
            0.0 if now is None else max(0.0, now - created),
        )
    except KeyError as exc:
        raise ValueError(f"missing field {exc}") from None
