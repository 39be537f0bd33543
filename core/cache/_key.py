"""The normalised request: what decides the answer, as canonical JSON, hashed.

In the key: the target (``model:<name>``, or ``task:<name>`` when the request is task-routed),
every message's role, content and name, and the parameters that change the output
(temperature, max_tokens). Not in the key: user, org, project, app, tags, metadata,
request_id, criticality, stream, timeouts, fallbacks, cache/ttl flags. What the key cannot see
(wire fields in ``extra``, a message's ``extra``: images, tools, tool calls) makes a request
uncacheable (``keyable``). Canonical JSON means
sorted keys and no whitespace, so equal requests give equal bytes on every machine.

The state key adds the *tenant* (``ResponseCache.tenant``: the virtual key's org, or the key
itself, by the ``cache_scope`` setting), so one tenant's answer is never another's hit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from core.types import ChatRequest

KEY_VERSION = 1  # bump to make every old key unreachable
# wire fields (ChatRequest.extra) that never change the answer: OpenAI's end-user id
NOT_IN_ANSWER = frozenset({"user"})


def keyable(req: ChatRequest) -> bool:
    """True when the key sees all the answer depends on: no wire field in ``extra`` but those
    NOT_IN_ANSWER (tools, response_format, stop, n, seed, ... change it) and no message
    ``extra`` (content parts such as images, tool calls, tool results) but text parts that
    only mark prompt-cache breakpoints. A request that is not keyable is never cached nor
    served a cached answer."""
    extra = req.extra
    if extra and not extra.keys() <= NOT_IN_ANSWER:
        return False
    for m in req.messages:  # noqa: SIM110  (a loop: half the cost of all() over a generator)
        if m.extra and not _marks_only(m.extra, m.content):
            return False
    return True


def _marks_only(extra: Mapping[str, Any], text: str) -> bool:
    """A message ``extra`` of text parts alone, kept for their prompt-cache breakpoints
    (``cache_control``) and holding exactly the message's text: the key sees the answer's
    input."""
    parts = extra.get("content")
    return (
        extra.keys() == {"content"}
        and isinstance(parts, list)
        and all(isinstance(p, dict) and p.get("type") == "text" for p in parts)
        and "".join(str(p.get("text", "")) for p in parts) == text
    )


def target(req: ChatRequest) -> str:
    if req.model:
        return "model:" + req.model.strip().lower()
    return "task:" + (req.task or "")


def normalised(req: ChatRequest, *, upto: int | None = None) -> bytes:
    """Canonical JSON of the request (``upto``: only the first ``upto`` messages)."""
    msgs = req.messages if upto is None else req.messages[:upto]
    temp = req.temperature
    payload = {  # keys already in sorted order: the bytes OPT_SORT_KEYS gives, without sorting
        "k": KEY_VERSION,
        "max_tokens": req.max_tokens,
        "messages": [[m.role, m.content, m.name] for m in msgs],
        "target": target(req),
        "temperature": None if temp is None else float(temp),
    }
    return orjson.dumps(payload)


def digest(req: ChatRequest) -> str:
    """sha256 hex of the normalised request (also usable as a log's prompt hash)."""
    return hashlib.sha256(normalised(req)).hexdigest()


def cache_key(req: ChatRequest, tenant: str = "") -> str:
    """The state key (``State.cache_*`` adds the namespace prefix). ``tenant`` (see
    ``ResponseCache.tenant``) is hashed in: equal requests of two tenants never share a key;
    "" (``cache_scope`` 'global', or a library call without an org) is the shared namespace."""
    if not tenant:
        return f"resp:v{KEY_VERSION}:{digest(req)}"
    h = hashlib.sha256(tenant.encode() + b"\x00" + normalised(req)).hexdigest()
    return f"resp:v{KEY_VERSION}:t:{h}"
