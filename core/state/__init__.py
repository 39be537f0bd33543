"""Live state: budget windows, rate-limit buckets, circuit breakers and the response cache.

``make_state()`` picks the backend from a URL (or ``REDIS_URL``): by default budget counters
shared by every process of one ``COSTLINE_HOME`` (``SharedState``, SQLite), ``memory://`` for
one process only, Redis with an in-process fallback for shared deployments. Keys start with
``prefix``, else ``COSTLINE_REDIS_PREFIX``, else ``costline:``, so every process of one
deployment (gateways, ``costline api``, library Routers) reads the same keys. See ``base.py`` for
the contract.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import ConfigError
from core.settings import costline_home
from core.state._cluster import redis_client
from core.state._levels import live_backend, rate_levels, reset_rates
from core.state.base import (
    COUNTER_MAX,
    DEFAULT_PREFIX,
    Admission,
    BreakerState,
    BudgetItem,
    Delta,
    RateCharge,
    RateFix,
    RateItem,
    Reservation,
    Settlement,
    State,
    make_key,
)
from core.state.memory import MemoryState
from core.state.redis_state import RedisState
from core.state.resilient import Policy, ResilientState
from core.state.shared import SharedState

__all__ = [
    "Admission",
    "BreakerState",
    "BudgetItem",
    "COUNTER_MAX",
    "DEFAULT_PREFIX",
    "Delta",
    "MemoryState",
    "Policy",
    "RateCharge",
    "RateFix",
    "RateItem",
    "RedisState",
    "Reservation",
    "ResilientState",
    "Settlement",
    "SharedState",
    "State",
    "check_state_url",
    "live_backend",
    "make_key",
    "make_state",
    "rate_levels",
    "redis_client",
    "reset_rates",
]


def make_state(
    url: str | None = None,
    policy: Policy = "open",
    prefix: str | None = None,
    home: Path | None = None,
) -> MemoryState | ResilientState | SharedState:
    """None/'' (and no REDIS_URL) -> SharedState in ``home`` (default COSTLINE_HOME);
    'memory://' -> MemoryState (this process only); redis:// (or redis+cluster:// for Redis
    Cluster) -> ResilientState. ``prefix`` None: ``COSTLINE_REDIS_PREFIX``, else ``costline:``."""
    source = "state URL"
    if url is None:
        url = os.environ.get("REDIS_URL", "")
        source = "REDIS_URL"
    if prefix is None:
        prefix = os.environ.get("COSTLINE_REDIS_PREFIX") or DEFAULT_PREFIX
    if not url:
        return SharedState(home if home is not None else costline_home(), prefix)
    check_state_url(url, source)
    if url.startswith("memory://"):
        return MemoryState(prefix)
    primary = RedisState(url, prefix)  # a cluster URL tags the prefix: {prefix}
    return ResilientState(primary, MemoryState(primary.prefix), policy=policy)


_STATE_SCHEMES = ("memory://", "redis://", "rediss://", "unix://", "redis+cluster://")


def check_state_url(url: str, source: str = "REDIS_URL") -> None:
    """A ConfigError naming ``source`` unless ``url`` is empty or a live-state URL."""
    if url and not url.startswith((*_STATE_SCHEMES, "rediss+cluster://")):
        raise ConfigError(
            f"{source} {_redact(url)!r} is not supported: use memory://, redis:// or "
            "redis+cluster://",
            field=source if source == "REDIS_URL" else "url",
        )


def _redact(url: str) -> str:
    """``url`` with any credentials before an '@' cut out."""
    head, at, tail = url.rpartition("@")
    return f"{head.partition('//')[0]}//…@{tail}" if at else url
