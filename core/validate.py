"""Request and usage checks that run before anything is admitted, called or priced.

``check_request(req)`` raises ``BadRequest`` naming the first wrong field of a ChatRequest:
wrong types (``max_tokens="100"``, ``tags="abc"``), out-of-range or non-finite numbers,
unknown enum values, lone surrogates in any text (they cannot be stored) and metadata or
extra body fields that are not JSON-serialisable. The Router runs it at every entry point
(sync, async, stream, batch) and the gateway runs it on what it parsed, so a bad request
never reserves budget, reaches a provider or writes a half-formed usage event.

``checked_usage(usage)`` returns None for provider-reported usage that cannot be true
(negative counts, or more tokens than any call can hold), so the caller estimates it instead
(flagged ``estimated``): a call is never priced negative or overflows int64.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from core.control import PROMPT_CACHE_TTLS
from core.errors import BadRequest, CostlineError
from core.types import CRITICALITIES, ChatRequest, Message, Usage, new_request_id

log = logging.getLogger(__name__)
ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_TOKENS = 100_000_000  # max_tokens above this is a mistake, not a request
MAX_USAGE_TOKENS = 1_000_000_000  # per token class and call: beyond this, reported usage is absurd
TEXT_FIELDS = ("model", "task", "org", "project", "user", "app", "key", "prompt_cache")
BOOL_FIELDS = ("stream", "cache", "personal", "optimize_cost", "batch")


def _bad(field: str, problem: str) -> BadRequest:
    return BadRequest(f"{field}: {problem}", field=field)


def _kind(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _text(field: str, v: object, *, optional: bool = True) -> None:
    """A str that can be encoded as UTF-8 (no lone surrogate)."""
    if v is None and optional:
        return
    if not isinstance(v, str):
        raise _bad(field, f"must be a string, got {_kind(v)} {v!r}")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _bad(
                field, f"is not valid UTF-8 (lone surrogate at position {exc.start})"
            ) from None


def _utf8(v: object) -> bool:
    """True for a str that encodes as UTF-8 (no lone surrogate)."""
    if type(v) is not str:
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(field: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(field, f"must be a number, got {_kind(v)} {v!r}")
    if not math.isfinite(v):
        raise _bad(field, f"must be a finite number, got {v!r}")
    return float(v)


def _strings(field: str, v: object) -> None:
    """A list or tuple of strings (a bare string is refused: 'abc' is not ['abc'])."""
    if not isinstance(v, list | tuple):
        raise _bad(field, f"must be a list of strings, got {_kind(v)} {v!r}")
    for i, item in enumerate(v):
        _text(f"{field}[{i}]", item, optional=False)


def _json(field: str, v: object) -> None:
    """A mapping with string keys whose values JSON can store (orjson: no lone surrogates,
    no NaN surprises turned into null silently, no arbitrary objects)."""
    if not isinstance(v, Mapping):
        raise _bad(field, f"must be an object (dict), got {_kind(v)}")
    for k in v:
        _text(f"{field} key", k, optional=False)
    try:
        orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise _bad(field, f"is not JSON-serialisable ({exc})") from None
    _finite(field, v)


def _finite(field: str, v: object) -> None:
    """orjson writes NaN/inf as null: refuse them instead of changing the data."""
    if isinstance(v, float) and not math.isfinite(v):
        raise _bad(field, f"holds a non-finite number {v!r}")
    if isinstance(v, Mapping):
        for x in v.values():
            _finite(field, x)
    elif isinstance(v, list | tuple):
        for x in v:
            _finite(field, x)


def _message(i: int, m: object) -> None:
    where = f"messages[{i}]"
    if not isinstance(m, Message):
        raise _bad(where, f"must be a Message, got {_kind(m)}")
    if m.role not in ROLES:
        raise _bad(f"{where}.role", f"{m.role!r} is not one of {sorted(ROLES)}")
    _text(f"{where}.content", m.content, optional=False)
    _text(f"{where}.name", m.name)
    if m.extra is not None:
        _json(f"{where}.extra", m.extra)


def _plain(v: object) -> bool:
    """True for the usual well-formed text: an ASCII str (nothing to check further)."""
    return type(v) is str and v.isascii()


def check_request(req: object) -> ChatRequest:
    """``req`` if every field is well-formed, else BadRequest naming the field.

    The usual request (Message objects with a known role and ASCII or valid UTF-8 text, no
    extras, plain names) is checked without building any field name; ``_message`` and
    ``_text`` run only for what that quick look cannot pass, and name what is wrong."""
    if not isinstance(req, ChatRequest):
        raise BadRequest(f"request must be a ChatRequest, got {_kind(req)}", field="request")
    if not isinstance(req.messages, list | tuple):
        raise _bad("messages", f"must be a list of messages, got {_kind(req.messages)}")
    for i, m in enumerate(req.messages):
        if not (
            type(m) is Message
            and m.role in ROLES
            and (_plain(m.content) or _utf8(m.content))
            and m.name is None
            and m.extra is None
        ):
            _message(i, m)
    for name in TEXT_FIELDS:
        v = getattr(req, name)
        if v is not None and not _plain(v):
            _text(name, v)
    for name in ("source", "request_id"):
        v = getattr(req, name)
        if not _plain(v):
            _text(name, v, optional=False)
    if not req.request_id or req.request_id.isspace():
        raise _bad("request_id", "must not be empty (leave it out and the router makes one)")
    if req.prompt_cache is not None and req.prompt_cache not in PROMPT_CACHE_TTLS:
        ttls = ", ".join(PROMPT_CACHE_TTLS)
        raise _bad("prompt_cache", f"{req.prompt_cache!r} is not one of {ttls}")
    if req.model is not None and not req.model.strip():
        raise _bad("model", "must not be empty")
    for name in BOOL_FIELDS:
        if not isinstance(getattr(req, name), bool):
            raise _bad(name, f"must be true or false, got {getattr(req, name)!r}")
    mt = req.max_tokens
    if mt is not None:
        if isinstance(mt, bool) or not isinstance(mt, int):
            raise _bad("max_tokens", f"must be an integer, got {_kind(mt)} {mt!r}")
        if not 1 <= mt <= MAX_TOKENS:
            raise _bad("max_tokens", f"must be between 1 and {MAX_TOKENS}, got {mt}")
    if req.temperature is not None:
        t = _number("temperature", req.temperature)
        if not 0.0 <= t <= 2.0:
            raise _bad("temperature", f"must be between 0 and 2, got {t}")
    if req.criticality not in CRITICALITIES:
        raise _bad("criticality", f"{req.criticality!r} is not one of {list(CRITICALITIES)}")
    for name in ("tags", "fallbacks"):
        v = getattr(req, name)
        if not (type(v) is tuple and not v):  # () is the default: nothing to check
            _strings(name, v)
    for name in ("metadata", "extra"):
        v = getattr(req, name)
        if not (type(v) is dict and not v):  # {} is the default: nothing to check
            _json(name, v)
    if req.timeout is not None and _number("timeout", req.timeout) <= 0:
        raise _bad("timeout", f"must be > 0 seconds, got {req.timeout}")
    if req.ttl is not None and _number("ttl", req.ttl) < 0:
        raise _bad("ttl", f"must be >= 0 seconds, got {req.ttl}")
    for name in ("signal", "score"):
        if getattr(req, name) is not None:
            _number(name, getattr(req, name))
    return req


def _safe_text(v: object) -> str | None:
    """Any value as text the usage log can store (lone surrogates escaped)."""
    if v is None:
        return None
    text = v if isinstance(v, str) else repr(v)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def loggable(req: object) -> ChatRequest | None:
    """A copy of a rejected request that the usage log can store: each bad field escaped or
    dropped, so the rejection is logged without its bad bytes (None: not a ChatRequest)."""
    if not isinstance(req, ChatRequest):
        return None
    changes: dict[str, Any] = {}
    for name in (*TEXT_FIELDS, "source", "request_id"):
        v = getattr(req, name)
        try:
            _text(name, v)
        except BadRequest:
            changes[name] = _safe_text(v)
    if req.criticality not in CRITICALITIES:
        changes["criticality"] = "normal"
    if isinstance(req.request_id, str) and (not req.request_id or req.request_id.isspace()):
        changes["request_id"] = new_request_id()  # the log's events need an id
    for name in ("tags", "fallbacks"):
        try:
            _strings(name, getattr(req, name))
        except BadRequest:
            v = getattr(req, name)
            items = v if isinstance(v, list | tuple) else [v]
            changes[name] = tuple(_safe_text(x) or "" for x in items)
    try:
        _json("metadata", req.metadata)
    except BadRequest:
        changes["metadata"] = {}
    try:
        for i, m in enumerate(req.messages):
            _message(i, m)
    except (BadRequest, TypeError):
        changes["messages"] = []
    return replace(req, **changes) if changes else req


USAGE_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
)


def usage_problem(usage: Usage) -> str | None:
    """Why provider-reported usage cannot be priced as is, or None when it can."""
    for name in USAGE_FIELDS:
        v: Any = getattr(usage, name)
        if isinstance(v, bool) or not isinstance(v, int):
            return f"{name} is not an integer ({v!r})"
        if v < 0:
            return f"{name} is negative ({v})"
        if v > MAX_USAGE_TOKENS:
            return f"{name} is absurd ({v})"
    if usage.cache_write_1h_tokens > usage.cache_write_tokens:
        return "cache_write_1h_tokens exceeds cache_write_tokens"
    return None


def checked_usage(usage: Usage | None) -> Usage | None:
    """``usage`` when it is plausible; None (estimate instead, flagged) when it is not."""
    problem = None if usage is None else usage_problem(usage)
    if problem is None:
        return usage
    log.warning("provider usage ignored and estimated instead: %s", problem)
    return None


def unexpected(exc: Exception) -> CostlineError:
    """An error that is not a CostlineError, as one (for ``batch()``'s per-item results)."""
    log.error("batch item failed unexpectedly", exc_info=exc)
    err = CostlineError(f"unexpected {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err
