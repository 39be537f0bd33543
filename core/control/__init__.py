"""The control plane: everything people edit in the console, stored in SQL.

SQLite at ``$COSTLINE_HOME/control.db`` by default, PostgreSQL when ``COSTLINE_CONTROL_URL``
is set. Routers read a ``ControlSnapshot`` through a ``Watcher``; the console reads and
writes through ``ControlPlane``, every write as an ``Actor`` whose role is checked where it
writes, audited, and versioned.

    plane = ControlPlane(model_exists=catalog.has)
    plane.upsert_budget(Budget(id="monthly", name="Monthly", limit_usd=Decimal("500")), actor)
    watcher = Watcher(plane)          # in each router process
    watcher.current().budgets         # sees the edit within ~min_interval_s
"""

from __future__ import annotations

from core.control import _schema as tables
from core.control._engine import write_tx

from ._alerts import NOTIFY_MAX_AGE, default_severity
from ._base import PERMISSIONS, can
from ._engine import check_control_url, control_url, make_engine
from ._inbox import ALERT_STATES
from ._keys import VirtualKey, validate_key
from ._migrations import MIGRATIONS, applied, migrate
from ._models import (
    ALERT_KINDS,
    BUDGET_ACTIONS,
    BUDGET_SCOPES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_CACHE_TTL_S,
    DEFAULT_CACHE_TTLS,
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_SETTINGS,
    DEFAULT_THRESHOLDS,
    PERIODS,
    PROMPT_CACHE_TTLS,
    RATE_ALGORITHMS,
    RATE_METRICS,
    RATE_SCOPES,
    ROLES,
    ROUTING_STRATEGIES,
    SAMPLING_STRATEGIES,
    SEVERITIES,
    SYSTEM,
    Actor,
    Alert,
    AlertMute,
    ApiToken,
    AuditEntry,
    Budget,
    CacheSetting,
    ModelScore,
    PriceOverride,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    User,
    Weights,
    env_timezone,
    window_bounds,
    window_key,
)
from ._redact import redact_url, redact_webhooks, url_digest
from ._snapshot import ControlSnapshot
from ._store import ControlPlane
from ._tokens import TOKEN_PREFIX
from ._validate import (
    check_timezone,
    max_limit_usd,
    validate_budget,
    validate_cache_setting,
    validate_model_score,
    validate_password,
    validate_policy,
    validate_price_override,
    validate_rate_limit,
    validate_role,
    validate_sampling,
    validate_setting,
    validate_username,
)
from ._watch import Watcher
from .auth import AccountLocked, LoginFailed, authenticate, ensure_admin

__all__ = [
    "ALERT_KINDS",
    "ALERT_STATES",
    "BUDGET_ACTIONS",
    "BUDGET_SCOPES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BATCH_TIMEOUT_S",
    "DEFAULT_CACHE_TTLS",
    "DEFAULT_CACHE_TTL_S",
    "DEFAULT_MIN_INTERVAL_S",
    "DEFAULT_SETTINGS",
    "DEFAULT_THRESHOLDS",
    "MIGRATIONS",
    "NOTIFY_MAX_AGE",
    "PERIODS",
    "PERMISSIONS",
    "PROMPT_CACHE_TTLS",
    "RATE_ALGORITHMS",
    "RATE_METRICS",
    "RATE_SCOPES",
    "ROLES",
    "ROUTING_STRATEGIES",
    "SAMPLING_STRATEGIES",
    "SEVERITIES",
    "SYSTEM",
    "TOKEN_PREFIX",
    "AccountLocked",
    "Actor",
    "Alert",
    "AlertMute",
    "ApiToken",
    "AuditEntry",
    "Budget",
    "CacheSetting",
    "ControlPlane",
    "ControlSnapshot",
    "LoginFailed",
    "ModelScore",
    "PriceOverride",
    "RateLimit",
    "RoutingPolicy",
    "SamplingStrategy",
    "User",
    "VirtualKey",
    "Watcher",
    "Weights",
    "applied",
    "authenticate",
    "can",
    "check_control_url",
    "check_timezone",
    "control_url",
    "default_severity",
    "ensure_admin",
    "env_timezone",
    "make_engine",
    "max_limit_usd",
    "migrate",
    "redact_url",
    "redact_webhooks",
    "url_digest",
    "validate_budget",
    "validate_cache_setting",
    "validate_key",
    "validate_model_score",
    "validate_password",
    "validate_policy",
    "validate_price_override",
    "validate_rate_limit",
    "validate_role",
    "validate_sampling",
    "validate_setting",
    "validate_username",
    "window_bounds",
    "window_key",
    "write_tx",
    "tables",
]
