"""The values people edit in the console, as frozen dataclasses.

Money is a ``Decimal`` number of USD at the edge and integer picodollars in the database;
prices are USD per 1M tokens here and integer picodollars per token in the database.
Validation lives in ``_validate.py``; these classes only hold values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError
from core.types import PICO

RoleName = Literal["viewer", "engineer", "admin", "system"]
ROLES: tuple[str, ...] = ("viewer", "engineer", "admin")  # roles a user can have
BUDGET_SCOPES: tuple[str, ...] = (
    "global",
    "org",
    "project",
    "user",
    "task",
    "model",
    "provider",
    "key",  # a gateway virtual key, by name
)
PERIODS: tuple[str, ...] = ("day", "week", "month")
BUDGET_ACTIONS: tuple[str, ...] = ("alert", "degrade", "block")
ROUTING_STRATEGIES: tuple[str, ...] = ("explicit", "cheapest", "fastest", "balanced", "quality")
PROMPT_CACHE_TTLS: tuple[str, ...] = ("5m", "1h")  # provider prompt caching (Anthropic TTLs)
SAMPLING_STRATEGIES: tuple[str, ...] = (
    "always",
    "periodic",
    "change_based",
    "threshold",
    "adaptive",
)
RATE_SCOPES: tuple[str, ...] = ("user", "org", "app", "model", "provider", "key")
RATE_METRICS: tuple[str, ...] = ("requests", "tokens")
RATE_ALGORITHMS: tuple[str, ...] = ("token_bucket", "sliding_window")
ALERT_KINDS: tuple[str, ...] = (
    "budget",  # a budget threshold reached (the router or the worker)
    "forecast",  # a budget's run rate exhausts it before its window ends
    "anomaly",  # unusual spend or calls of a series (daily or hourly)
    "error_rate",  # failed calls above the threshold (5 % by default)
    "cache_hit_rate",  # cache hit rate below the threshold where caching is on
    "latency",  # p95 latency above the threshold
    "queue_depth",  # the low-priority batch queue holds more than the threshold
)
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
NOTIFY_STATES: tuple[str, ...] = ("pending", "sending", "sent", "failed", "skipped")
DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 75, 90, 100)

# Response-cache TTLs per task (nself-chat seed); anything else: 24 h (VANTAGE seed).
DEFAULT_CACHE_TTL_S = 86_400
DEFAULT_CACHE_TTLS: Mapping[str, int] = MappingProxyType(
    {
        "chat": 300,
        "summarization": 1_800,
        "search": 3_600,
        "embeddings": 7_200,
        "translation": 86_400,
    }
)

# Event thresholds of the trading seed: min 60 s between calls, LOW events batched by 10 / 5 min.
DEFAULT_MIN_INTERVAL_S = 60.0
DEFAULT_BATCH_SIZE = 10
DEFAULT_BATCH_TIMEOUT_S = 300.0

_FIXED_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "timezone": "UTC",  # unless $COSTLINE_TIMEZONE says otherwise
        "currency": "USD",
        "currency_rates": {"USD": "1"},  # display rates, Decimal strings per 1 USD
        "redis_fail_policy": "open",  # 'open': allow calls when Redis is down; 'closed': refuse
        "cache_scope": "org",  # who shares cached answers: 'org' (a key's org), 'key', 'global'
    }
)


class _Defaults(Mapping[str, Any]):
    """The built-in settings; 'timezone' is ``$COSTLINE_TIMEZONE`` when that is set (read on
    each lookup, like every other environment setting)."""

    def __getitem__(self, key: str) -> Any:
        if key == "timezone" and os.environ.get("COSTLINE_TIMEZONE"):
            return env_timezone()
        return _FIXED_DEFAULTS[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_FIXED_DEFAULTS)

    def __len__(self) -> int:
        return len(_FIXED_DEFAULTS)


def env_timezone() -> str:
    """``$COSTLINE_TIMEZONE``, checked: an invalid zone is a ConfigError naming the variable."""
    tz = os.environ.get("COSTLINE_TIMEZONE", "").strip() or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"COSTLINE_TIMEZONE {tz!r} is not an IANA time zone such as 'UTC' or 'Europe/Paris'",
            field="COSTLINE_TIMEZONE",
        ) from None
    return tz


# Settings used when nothing is stored (get_setting without a default falls back to these).
DEFAULT_SETTINGS: Mapping[str, Any] = _Defaults()


def frozen_map(m: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs a write; the role is re-checked against the users table on every write."""

    username: str
    role: RoleName


SYSTEM = Actor("system", "system")  # in-process writes: alerts fired by the router, first admin


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    name: str
    scope: str = "global"
    scope_value: str | None = None
    period: str = "month"
    limit_usd: Decimal | None = None
    limit_tokens: int | None = None
    soft_multiplier: float = 2.0
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    action: str = "alert"
    degrade_to: str | None = None
    timezone: str | None = None  # None: the 'timezone' setting, resolved when stored
    webhook_url: str | None = None
    enabled: bool = True
    reset_generation: int = 0  # only reset_budget() changes it; upserts keep the stored one

    @property
    def limit_picousd(self) -> int | None:
        return None if self.limit_usd is None else int(self.limit_usd * PICO)

    def window_key(self, at: datetime) -> str:
        """Key of the window holding ``at``; it changes at each calendar window and reset."""
        base = window_key(self.period, self.timezone or "UTC", at)
        return base if self.reset_generation == 0 else f"{base}.r{self.reset_generation}"

    def window_bounds(self, at: datetime) -> tuple[datetime, datetime]:
        return window_bounds(self.period, self.timezone or "UTC", at)


@dataclass(frozen=True, slots=True)
class Weights:
    """Relative weights of the balanced strategy; the router normalises them."""

    cost: float = 0.5
    latency: float = 0.2
    quality: float = 0.3


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    task: str
    primary_model: str
    fallbacks: tuple[str, ...] = ()
    degrade_to: str | None = None
    criticality: str = "normal"
    strategy: str = "explicit"
    weights: Weights = Weights()
    cache_ttl_s: int | None = None  # None: the task's cache setting or default
    personalised: bool = False  # personalised answers are never shared across users
    max_tokens: int | None = None
    prompt_cache: str | None = None  # "5m" | "1h": provider prompt caching (Anthropic)


@dataclass(frozen=True, slots=True)
class SamplingStrategy:
    """When an agent/task calls the model; params hold the strategy's own knobs.

    periodic: interval_s · change_based: threshold (relative change) · threshold: threshold
    (score) · adaptive: min_interval_s, max_interval_s (optional volatility_window).
    """

    key: str
    strategy: str = "always"
    params: Mapping[str, float] = field(default_factory=frozen_map)
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S  # HIGH/MEDIUM events
    batch_size: int = DEFAULT_BATCH_SIZE  # LOW events
    batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.params, MappingProxyType):
            object.__setattr__(self, "params", frozen_map(self.params))


@dataclass(frozen=True, slots=True)
class CacheSetting:
    task: str
    ttl_s: int = DEFAULT_CACHE_TTL_S
    enabled: bool = True
    semantic_threshold: float | None = None  # cosine similarity in (0, 1]; None = exact only


@dataclass(frozen=True, slots=True)
class RateLimit:
    id: str
    scope: str = "user"
    scope_value: str | None = None  # None: applies to each distinct value (e.g. per user)
    metric: str = "requests"
    limit: int = 60
    window_s: int = 60
    algorithm: str = "token_bucket"
    burst: int | None = None  # token bucket capacity; None = limit
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """Rates in USD per 1M tokens, exact: any decimal with at most 18 decimals (12 of pUSD
    per token, as the catalog; LiteLLM's 4.6875e-09 USD per token is 0.0046875)."""

    model: str
    provider: str
    effective_from: date
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    note: str = ""

    def picousd_per_token(self, rate: Decimal | None) -> int | Fraction | None:
        """``rate`` (one of this override's) in pUSD per token, exactly: an int when whole,
        else a Fraction (as ``core.pricing.Rate``)."""
        if rate is None:
            return None
        exact = Fraction(rate) * 1_000_000
        return exact.numerator if exact.denominator == 1 else exact


@dataclass(frozen=True, slots=True)
class ModelScore:
    model: str
    quality: float  # 0..1, higher is better
    note: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """A console user; the password hash never leaves the store."""

    username: str
    role: str
    failed_attempts: int = 0
    locked_until: datetime | None = None
    created_at: datetime | None = None
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    ts: datetime
    kind: str
    budget_id: str  # for anomalies: the subject ('' = global spend)
    window_key: str
    threshold_pct: int
    message: str
    spent_picousd: int | None = None
    limit_picousd: int | None = None
    spent_tokens: int | None = None
    limit_tokens: int | None = None
    delivered: bool = False
    delivery_error: str | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    severity: str = "warning"
    link: str | None = None  # console page that explains it, e.g. "budgets"
    notify_state: str = "skipped"  # the worker's outbox: pending -> sent | failed (| skipped)
    notify_attempts: int = 0
    notify_error: str | None = None
    notified_at: datetime | None = None
    notify: Mapping[str, str] = field(default_factory=frozen_map)  # channel -> outcome

    @property
    def subject(self) -> str:
        """What the alert is about: a budget id, or a series such as 'org=acme'."""
        return self.budget_id


@dataclass(frozen=True, slots=True)
class AlertMute:
    """Alerts of ``kind`` on ``subject`` are recorded but not notified until ``until``."""

    kind: str
    subject: str
    until: datetime
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token of a console user; the secret itself is shown once, at creation."""

    id: str
    username: str
    name: str
    prefix: str  # the first characters, to recognise it
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def window_key(period: str, tz: str, at: datetime) -> str:
    """Calendar window of ``at`` in ``tz``: '2026-05-14', '2026-W20' (ISO week) or '2026-05'."""
    local = at.astimezone(ZoneInfo(tz))
    if period == "day":
        return local.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{local.year:04d}-{local.month:02d}"


def window_bounds(period: str, tz: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar window holding ``at``, as aware datetimes in ``tz``."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    day = local.date()
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (
        datetime(start.year, start.month, start.day, tzinfo=zone),
        datetime(end.year, end.month, end.day, tzinfo=zone),
    )
