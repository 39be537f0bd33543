"""Every failure as an HTTP status and an error body the official SDKs understand.

    | cause                                    | status | error.type / code                  |
    |------------------------------------------|--------|------------------------------------|
    | missing, unknown, revoked or expired key | 401    | invalid_request_error / invalid_api_key |
    | model not allowed; a bound scope claimed | 403    | permission_error / model_not_allowed |
    | unknown (unpriced) model                 | 404    | invalid_request_error / model_not_found |
    | malformed JSON, wrong type, no messages  | 400    | invalid_request_error, param: field |
    | upstream 404 / 409 / 413 / 422 (other 4xx: 400) | the same | invalid_request_error |
    | body over the limit (default 10 MB)      | 413    | request_too_large |
    | a Costline rate limit                    | 429    | rate_limit_error + Retry-After     |
    | a budget's hard limit                    | 402    | budget_exceeded + Retry-After      |
    | upstream 5xx, bad answer, bad provider key | 502  | upstream_error                     |
    | upstream rate limited; circuits open     | 503    | upstream_unavailable               |
    | upstream overloaded (503/529), no fallback left | 503 | upstream_overloaded + Retry-After |
    | upstream timed out                       | 504    | upstream_timeout                   |

A 402 body also names the budget, its limit, the spend, the window and ``resets_at``.

The Anthropic endpoints use the same statuses with Anthropic's body shape, except an overloaded
upstream: 529 ``overloaded_error``, as Anthropic answers it (its SDK retries 529). Messages carry
the provider's own text (its API key scrubbed by the adapter), never a key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.errors import (
    AuthError,
    BudgetExceeded,
    ConfigError,
    ContextWindowExceeded,
    CostlineError,
    MalformedResponse,
    PermissionDenied,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeout,
    RateLimited,
    RateLimitExceeded,
    RequestError,
    RetryableError,
    UnpricedModel,
    UsageLogUnavailable,
)

BUDGET_STATUS = 402
KEPT_4XX = frozenset({404, 409, 413, 422})  # an upstream's refusals answered with its status
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "budget_exceeded",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


@dataclass
class HTTPError(Exception):
    """One error response: status, OpenAI-style error fields and extra headers."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    extra: dict[str, object] = field(default_factory=dict)
    anthropic_status: int | None = None  # when the Anthropic wire answers another status

    def status_for(self, anthropic: bool) -> int:
        return self.anthropic_status or self.status if anthropic else self.status

    def openai_body(self) -> dict[str, object]:
        err: dict[str, object] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }
        err.update(self.extra)
        return {"error": err}

    def anthropic_body(self) -> dict[str, object]:
        status = self.anthropic_status or self.status
        kind = self.type if status == BUDGET_STATUS else ANTHROPIC_TYPES.get(status)
        err: dict[str, object] = {"type": kind or "api_error", "message": self.message}
        err.update(self.extra)
        return {"type": "error", "error": err}

    def headers(self) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if self.retry_after is not None:
            secs = max(0, math.ceil(self.retry_after))
            out.append((b"retry-after", str(secs).encode()))
            out.append((b"retry-after-ms", str(math.ceil(self.retry_after * 1000)).encode()))
        if self.status == BUDGET_STATUS:  # clients must not hammer a spent budget
            out.append((b"x-should-retry", b"false"))
        return out


def bad_request(message: str, param: str | None = None) -> HTTPError:
    return HTTPError(400, message, param=param)


def unauthorized(message: str) -> HTTPError:
    return HTTPError(401, message, code="invalid_api_key")


def forbidden(message: str, code: str = "model_not_allowed") -> HTTPError:
    return HTTPError(403, message, type="permission_error", code=code)


def from_costline(exc: CostlineError, resets_at: datetime | None = None) -> HTTPError:
    """The response for an error the Router raised."""
    msg = exc.message
    if isinstance(exc, BudgetExceeded):
        return budget_error(exc, resets_at)
    if isinstance(exc, RateLimitExceeded | RateLimited):
        retry = exc.retry_after
        if retry is not None and math.isinf(retry):
            retry = None
        if isinstance(exc, RateLimitExceeded):  # Costline's own limit
            return HTTPError(429, msg, "rate_limit_error", "rate_limit_exceeded", None, retry)
        return HTTPError(503, msg, "upstream_unavailable", "upstream_rate_limited", None, retry)
    if isinstance(exc, UsageLogUnavailable):
        return HTTPError(503, msg, "server_error", "usage_log_unavailable")
    if isinstance(exc, UnpricedModel):
        return HTTPError(404, msg, code="model_not_found", param="model")
    if isinstance(exc, ContextWindowExceeded):
        return HTTPError(400, msg, code="context_length_exceeded", param="messages")
    if isinstance(exc, RequestError):
        # an upstream's 404 / 409 / 413 / 422 keeps its status, so the SDKs raise what they
        # would calling it directly (NotFoundError, ...); any other refusal is a 400
        status = exc.status_code if exc.status_code in KEPT_4XX else 400
        return HTTPError(status or 400, msg, param=_param_of(exc))
    if isinstance(exc, PermissionDenied):
        return forbidden(msg, "permission_denied")
    if isinstance(exc, ProviderTimeout):
        return HTTPError(504, msg, "upstream_timeout", "upstream_timeout")
    if isinstance(exc, ProviderServerError) and exc.overloaded:  # the SDKs retry a 503 / 529
        retry = exc.retry_after
        return HTTPError(
            503, msg, "upstream_unavailable", "upstream_overloaded", None, retry, {}, 529
        )
    if isinstance(exc, ProviderServerError | ProviderConnectionError):
        return HTTPError(502, msg, "upstream_error", "upstream_error")
    if isinstance(exc, RetryableError):  # every candidate's circuit is open
        return HTTPError(503, msg, "upstream_unavailable", "no_healthy_upstream")
    if isinstance(exc, AuthError | MalformedResponse | ConfigError):
        return HTTPError(502, msg, "upstream_error", "upstream_error")
    return HTTPError(500, msg, "server_error", "internal_error")


def budget_error(exc: BudgetExceeded, resets_at: datetime | None) -> HTTPError:
    """402 naming the budget, its limit, the spend and when the window resets."""
    wait = None
    extra: dict[str, object] = {
        "budget": exc.budget,
        "window": exc.window,
        "limit": _num(exc.limit),
        "spent": _num(exc.spent),
        "unit": "usd" if isinstance(exc.limit, Decimal) else "tokens",
        "resets_at": resets_at.isoformat() if resets_at is not None else None,
    }
    if resets_at is not None:
        from core import clock

        wait = max(0.0, (resets_at - clock.now()).total_seconds())
    return HTTPError(
        BUDGET_STATUS, exc.message, "budget_exceeded", "budget_exceeded", None, wait, extra
    )


def _num(value: Decimal | int) -> str | int:
    return format(value.normalize(), "f") if isinstance(value, Decimal) else int(value)


def _param_of(exc: RequestError) -> str | None:
    """The request field a refusal names: the field Costline's own check gave, else the one
    its message starts with. An upstream's 4xx (it has a ``status_code``) names none: its
    message starts with the provider's name ('openai gpt-4o-mini: HTTP 400: ...'), which is
    no field of the request."""
    field = getattr(exc, "field", None)
    if isinstance(field, str) and field:
        return field
    return _param(exc.message) if exc.status_code is None else None


def _param(message: str) -> str | None:
    """The field a Router validation message starts with ('max_tokens must be ...')."""
    head = message.split(" ", 1)[0].rstrip(":")
    plain = head.translate(str.maketrans("", "", "_.[]"))
    return head if head and plain.isalnum() else None
