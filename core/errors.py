"""Costline's one error tree.

Every error a caller of ``core`` can see is a ``CostlineError``. Provider adapters translate
httpx and provider errors at the boundary (``raise ... from exc``) into the most specific class.

    CostlineError
    ├── ConfigError                 bad settings, catalog, policy or input file (``field`` names it)
    ├── PermissionDenied            the actor's role may not do this (checked where it writes)
    ├── RequestError                the request itself is wrong; never retried
    │   ├── BadRequest              empty messages, negative max_tokens, invalid UTF-8, HTTP 400
    │   ├── ContextWindowExceeded   prompt + max_tokens over the model's window
    │   └── UnpricedModel           model not in the price catalog
    ├── PolicyError                 Costline's own controls said no; not retried
    │   ├── BudgetExceeded          names the budget, its limit, spend and window
    │   └── RateLimitExceeded       a Costline rate limit (retry_after seconds)
    ├── ClientDisconnected          the caller left mid-call; the upstream call was cancelled
    ├── UsageLogUnavailable         the usage log cannot be written (disk full, or its Router
    │                               was closed); nothing was called
    └── ProviderError               the upstream failed
        ├── AuthError               HTTP 401/403
        ├── MalformedResponse       unparseable body, missing fields, stream cut mid-way
        └── RetryableError          worth another attempt or the next fallback
            ├── RateLimited         the provider's HTTP 429 (retry_after seconds)
            ├── ProviderTimeout     connect/read timeout
            ├── ProviderConnectionError   refused, reset, DNS
            └── ProviderServerError HTTP 5xx
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "AuthError",
    "BadRequest",
    "BudgetExceeded",
    "ClientDisconnected",
    "ConfigError",
    "ContextWindowExceeded",
    "CostlineError",
    "MalformedResponse",
    "PermissionDenied",
    "PolicyError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderServerError",
    "ProviderTimeout",
    "RateLimitExceeded",
    "RateLimited",
    "RequestError",
    "RetryableError",
    "UnpricedModel",
    "UsageLogUnavailable",
]


class CostlineError(Exception):
    """Base of every Costline error. ``error_type`` is the name logged in usage events."""

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code: int | None = None

    @property
    def error_type(self) -> str:
        return type(self).__name__


class ConfigError(CostlineError):
    """Settings, catalog, policy or input data is invalid. The message names the field."""

    def __init__(self, message: str, *, field: str | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.field = field


class PermissionDenied(CostlineError):
    """The actor's role may not perform this action (enforced server-side, where it writes)."""


class RequestError(CostlineError):
    """The request is wrong; retrying or falling back will not help."""


class BadRequest(RequestError):
    """``field``: the request field that is wrong, when one is (core.validate names it)."""

    def __init__(self, message: str, *, field: str | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.field = field


class ContextWindowExceeded(RequestError):
    def __init__(self, message: str, *, tokens: int = 0, window: int = 0, **kw: str | None):
        super().__init__(message, **kw)
        self.tokens = tokens
        self.window = window


class UnpricedModel(RequestError):
    """The model has no price; Costline never prices it at $0 silently. ``field``: the
    request field that names it (``model``, ``fallbacks[1]``), when the router knows it."""

    def __init__(self, message: str, *, field: str | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.field = field


class PolicyError(CostlineError):
    """A Costline control (budget, rate limit) refused the call."""


class BudgetExceeded(PolicyError):
    def __init__(
        self,
        message: str,
        *,
        budget: str = "",
        limit: Decimal | int = 0,
        spent: Decimal | int = 0,
        window: str = "",
        **kw: str | None,
    ):
        super().__init__(message, **kw)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.window = window


class RateLimitExceeded(PolicyError):
    """A Costline rate limit refused the call; ``retry_after``: seconds until it would pass
    (None when unknown, e.g. live state unavailable under the fail-closed policy)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ClientDisconnected(CostlineError):
    """The caller went away mid-call - a stream's consumer closed it (an HTTP client
    disconnected), KeyboardInterrupt, a cancelled task or its timeout (``asyncio.wait_for``):
    the upstream call was cancelled and its usage so far (the prompt and any partial answer)
    is estimated and logged under this error type. Never raised to the caller, who left."""


class UsageLogUnavailable(CostlineError):
    """The usage log cannot record a call now (disk full, quota, I/O error): refused before
    any provider is paid. ``held`` completed calls wait in memory until it can."""

    def __init__(self, message: str, *, held: int = 0, **kw: str | None):
        super().__init__(message, **kw)
        self.held = held
        self.status_code = 503


class ProviderError(CostlineError):
    """The upstream provider failed."""

    def __init__(self, message: str, *, status_code: int | None = None, **kw: str | None):
        super().__init__(message, **kw)
        self.status_code = status_code


class AuthError(ProviderError):
    pass


class MalformedResponse(ProviderError):
    pass


class RetryableError(ProviderError):
    """Worth retrying the same model, then falling back to the next candidate."""


class RateLimited(RetryableError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ProviderTimeout(RetryableError):
    pass


class ProviderConnectionError(RetryableError):
    pass


class ProviderServerError(RetryableError):
    """HTTP 5xx. ``overloaded``: the upstream said so (503, Anthropic's 529 or an
    ``overloaded_error``), with its Retry-After in ``retry_after`` (seconds) when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        overloaded: bool = False,
        **kw: object,
    ):
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.overloaded = overloaded
