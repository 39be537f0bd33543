"""What a request says besides its body: the virtual key, the x-costline-* headers and the
scopes the key binds (a key bound to project A cannot claim project B)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.control import VirtualKey
from core.settings import comma_list
from core.types import CRITICALITIES

from ._errors import bad_request, forbidden, unauthorized

Headers = dict[bytes, bytes]
PREFIX = b"x-costline-"
MAX_TIMEOUT_S = 3600.0  # x-costline-timeout's ceiling


def headers_of(scope: Mapping[str, Any]) -> Headers:
    """Request headers by lower-case name (the last one wins)."""
    return dict(scope.get("headers") or ())


def secret_of(h: Headers) -> str:
    """The key from ``Authorization: Bearer ...`` (OpenAI) or ``x-api-key`` (Anthropic)."""
    auth = h.get(b"authorization")
    if auth is not None:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = h.get(b"x-api-key")
    if key:
        return key.decode("latin-1").strip()
    raise unauthorized(
        "no API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with a "
        "Costline virtual key (costline keys create)"
    )


@dataclass(slots=True)
class Meta:
    """The request's who and how, after the key's bindings."""

    org: str | None = None
    project: str | None = None
    user: str | None = None
    task: str | None = None
    criticality: str = "normal"
    tags: tuple[str, ...] = ()
    cache: bool = True
    timeout: float | None = None  # x-costline-timeout: seconds per upstream attempt


def _text(h: Headers, name: str) -> str | None:
    raw = h.get(PREFIX + name.encode())
    if raw is None:
        return None
    value = raw.decode("utf-8", "replace").strip()
    return value or None


def meta_of(h: Headers, key: VirtualKey, body_user: str | None = None) -> Meta:
    """x-costline-* headers (and the OpenAI ``user`` field), bound by the key."""
    crit = _text(h, "criticality") or "normal"
    if crit not in CRITICALITIES:
        raise bad_request(
            f"x-costline-criticality: {crit!r} is not one of {', '.join(CRITICALITIES)}",
            "x-costline-criticality",
        )
    tags = comma_list(_text(h, "tags"))
    timeout = _seconds(_text(h, "timeout"), "x-costline-timeout")
    cache = _cache(_text(h, "cache"))
    return Meta(
        org=bind(key, "org", _text(h, "org")),
        project=bind(key, "project", _text(h, "project")),
        user=bind(key, "user", _text(h, "user") or body_user),
        task=_text(h, "task"),
        criticality=crit,
        tags=tags,
        cache=cache,
        timeout=timeout,
    )


CACHE_OFF = ("no-store", "no-cache", "off", "false")
CACHE_ON = ("default", "on", "true")


def _cache(raw: str | None) -> bool:
    """x-costline-cache: no-store (or no-cache, off, false) skips the response cache; absent,
    default, on or true uses it; anything else is a 400 naming the header, not ignored."""
    if raw is None:
        return True
    value = raw.lower()
    if value in CACHE_OFF or value in CACHE_ON:
        return value in CACHE_ON
    raise bad_request(
        f"x-costline-cache: {raw!r} is not one of {', '.join(CACHE_OFF + CACHE_ON)}",
        "x-costline-cache",
    )


def _seconds(raw: str | None, name: str) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise bad_request(f"{name}: seconds in (0, {MAX_TIMEOUT_S:.0f}], got {raw!r}", name)
    return value


def bind(key: VirtualKey, field: str, claimed: str | None) -> str | None:
    bound = getattr(key, field)
    if bound is None:
        return claimed
    if claimed is not None and claimed != bound:
        raise forbidden(
            f"key {key.name!r} is bound to {field} {bound!r} and cannot claim {field} {claimed!r}",
            code="scope_not_allowed",
        )
    return str(bound)
