"""Retry timing: exponential backoff with full jitter, honouring Retry-After."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from dataclasses import dataclass

from core import clock
from core.errors import CostlineError, ProviderServerError, RateLimited, RetryableError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` per candidate model; delays are ``uniform(0, min(cap, base * 2**n))``.

    A 429's (or an overloaded 503/529's) Retry-After is honoured as the delay when it is at
    most ``max_retry_after_s``; a longer wait moves on to the next fallback instead of blocking
    the caller.
    """

    max_attempts: int = 3
    base_s: float = 0.25
    cap_s: float = 8.0
    max_retry_after_s: float = 30.0

    def delay(self, attempt: int, exc: CostlineError, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` of the same model, or None to stop."""
        if not isinstance(exc, RetryableError) or attempt >= self.max_attempts:
            return None
        if isinstance(exc, RateLimited | ProviderServerError) and exc.retry_after is not None:
            if exc.retry_after > self.max_retry_after_s:
                return None
            return max(0.0, exc.retry_after)
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2 ** (attempt - 1))))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from retry-after-ms, or Retry-After as seconds or an HTTP-date (provider
    errors and the alert worker's webhook replies)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    now = clock.timestamp() if now is None else now
    return max(when.timestamp() - now, 0.0)
