"""Map HTTP statuses, provider error bodies and httpx exceptions onto core.errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from core.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    ContextWindowExceeded,
    CostlineError,
    MalformedResponse,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeout,
    RateLimited,
)
from core.retry import parse_retry_after

CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",
    "context window",
    "context length",
)
# Anthropic's error.type values, for error events inside a stream
ERROR_TYPES: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class Where:
    """Who failed: carried into every error, with the API key scrubbed from messages."""

    __slots__ = ("key", "model", "provider")

    def __init__(self, provider: str, model: str, key: str | None) -> None:
        self.provider = provider
        self.model = model
        self.key = key

    def text(self, detail: str) -> str:
        msg = f"{self.provider} {self.model}: {detail}"
        if self.key and len(self.key) >= 4:
            msg = msg.replace(self.key, "***")
        return msg


def error_detail(body: bytes | str) -> str:
    """The provider's own error message from a JSON error body, else the body text."""
    raw = body.encode() if isinstance(body, str) else body
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:300].decode("utf-8", "replace").strip() or "(empty body)"
    parts: list[str] = []
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for k in ("type", "code"):
                if isinstance(err.get(k), str) and err[k] not in parts:
                    parts.append(err[k])
            msg = err.get("message") or err.get("detail") or data.get("detail")
        else:
            msg = err
        if msg:
            parts.append(msg if isinstance(msg, str) else orjson.dumps(msg).decode())
    text = ": ".join(parts) if parts else raw[:300].decode("utf-8", "replace")
    return text[:300]


def for_status(
    status: int, body: bytes | str, headers: Mapping[str, str], where: Where
) -> CostlineError:
    """The error for an HTTP error status (also used for stream `error` events)."""
    detail = error_detail(body)
    msg = where.text(f"HTTP {status}: {detail}")
    kw: dict[str, Any] = {"provider": where.provider, "model": where.model, "status_code": status}
    if status in (401, 403):
        return AuthError(msg, **kw)
    if status == 429:
        return RateLimited(msg, retry_after=parse_retry_after(headers), **kw)
    if status == 408:
        return ProviderTimeout(msg, **kw)
    if status >= 500:  # includes Anthropic's 529 overloaded
        overloaded = status in (503, 529) or "overloaded" in detail.lower()
        retry = parse_retry_after(headers) if overloaded else None
        return ProviderServerError(msg, retry_after=retry, overloaded=overloaded, **kw)
    err: CostlineError
    if any(m in detail.lower() for m in CONTEXT_MARKERS):
        err = ContextWindowExceeded(msg, provider=where.provider, model=where.model)
    else:
        err = BadRequest(msg, provider=where.provider, model=where.model)
    setattr(err, "status_code", status)  # noqa: B010  (RequestError declares no status_code)
    return err


def for_transport(exc: Exception, where: Where, status: int | None = None) -> CostlineError:
    """The error for an httpx exception raised before the caller saw any text."""
    kw: dict[str, Any] = {"provider": where.provider, "model": where.model, "status_code": status}
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(where.text(f"timed out ({name})"), **kw)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        msg = where.text(f"bad base_url: {exc}")
        return ConfigError(msg, field="base_url", provider=where.provider, model=where.model)
    return ProviderConnectionError(where.text(f"connection failed ({name}: {exc})"), **kw)


def malformed(detail: str, where: Where, status: int | None = 200) -> MalformedResponse:
    return MalformedResponse(
        where.text(detail), provider=where.provider, model=where.model, status_code=status
    )
