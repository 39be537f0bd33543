"""Row <-> value conversion for each stored entity, and the JSON written to the audit log."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from core.types import PICO

from . import _schema as s
from ._models import (
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
    frozen_map,
)
from ._redact import redact_webhooks
from ._validate import WIDE, tidy

T = TypeVar("T")
Row = Mapping[Any, Any]  # a SQLAlchemy RowMapping or a plain dict


def plain(value: Any) -> Any:
    """JSON-ready copy of a value: dataclasses to dicts, Decimal to str, dates to ISO text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def dumps(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"))


def usd(pico: int | None) -> Decimal | None:
    return None if pico is None else tidy(Decimal(pico).scaleb(-12))


def per_million(pico_per_token: int | None) -> Decimal | None:
    return None if pico_per_token is None else tidy(Decimal(pico_per_token).scaleb(-6))


def pico(value: Decimal | None, scale: int = PICO) -> int | None:
    return None if value is None else int(value * scale)


@dataclass(frozen=True)
class Entity(Generic[T]):
    """How one kind of value is stored: its table, key, and row conversions."""

    name: str  # audit 'entity' and permission name
    table: sa.Table
    key: Callable[[T], dict[str, Any]]
    to_row: Callable[[T], dict[str, Any]]
    from_row: Callable[[Row], T]

    def key_id(self, key: Mapping[str, Any]) -> str:
        return "/".join(str(plain(v)) for v in key.values())

    def where(self, key: Mapping[str, Any]) -> sa.ColumnElement[bool]:
        return sa.and_(*(self.table.c[k] == v for k, v in key.items()))


def _budget_row(b: Budget) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "scope": b.scope,
        "scope_value": b.scope_value,
        "period": b.period,
        "limit_picousd": pico(b.limit_usd),
        "limit_tokens": b.limit_tokens,
        "soft_multiplier": b.soft_multiplier,
        "thresholds_json": json.dumps(list(b.thresholds)),
        "action": b.action,
        "degrade_to": b.degrade_to,
        "timezone": b.timezone or "UTC",
        "webhook_url": b.webhook_url,
        "enabled": b.enabled,
        "reset_generation": b.reset_generation,
    }


def _budget(r: Row) -> Budget:
    return Budget(
        id=r["id"],
        name=r["name"],
        scope=r["scope"],
        scope_value=r["scope_value"],
        period=r["period"],
        limit_usd=usd(r["limit_picousd"]),
        limit_tokens=r["limit_tokens"],
        soft_multiplier=float(r["soft_multiplier"]),
        thresholds=tuple(json.loads(r["thresholds_json"])),
        action=r["action"],
        degrade_to=r["degrade_to"],
        timezone=r["timezone"],
        webhook_url=r["webhook_url"],
        enabled=bool(r["enabled"]),
        reset_generation=r["reset_generation"],
    )


def _policy_row(p: RoutingPolicy) -> dict[str, Any]:
    return {
        "task": p.task,
        "primary_model": p.primary_model,
        "fallbacks_json": json.dumps(list(p.fallbacks)),
        "degrade_to": p.degrade_to,
        "criticality": p.criticality,
        "strategy": p.strategy,
        "weight_cost": p.weights.cost,
        "weight_latency": p.weights.latency,
        "weight_quality": p.weights.quality,
        "cache_ttl_s": p.cache_ttl_s,
        "personalised": p.personalised,
        "max_tokens": p.max_tokens,
        "prompt_cache": p.prompt_cache,
    }


def _policy(r: Row) -> RoutingPolicy:
    return RoutingPolicy(
        task=r["task"],
        primary_model=r["primary_model"],
        fallbacks=tuple(json.loads(r["fallbacks_json"])),
        degrade_to=r["degrade_to"],
        criticality=r["criticality"],
        strategy=r["strategy"],
        weights=Weights(r["weight_cost"], r["weight_latency"], r["weight_quality"]),
        cache_ttl_s=r["cache_ttl_s"],
        personalised=bool(r["personalised"]),
        max_tokens=r["max_tokens"],
        prompt_cache=r.get("prompt_cache"),
    )


def _sampling_row(x: SamplingStrategy) -> dict[str, Any]:
    return {
        "key": x.key,
        "strategy": x.strategy,
        "params_json": dumps(x.params),
        "min_interval_s": x.min_interval_s,
        "batch_size": x.batch_size,
        "batch_timeout_s": x.batch_timeout_s,
        "enabled": x.enabled,
    }


def _sampling(r: Row) -> SamplingStrategy:
    return SamplingStrategy(
        key=r["key"],
        strategy=r["strategy"],
        params=json.loads(r["params_json"]),
        min_interval_s=r["min_interval_s"],
        batch_size=r["batch_size"],
        batch_timeout_s=r["batch_timeout_s"],
        enabled=bool(r["enabled"]),
    )


def _cache_row(c: CacheSetting) -> dict[str, Any]:
    return {
        "task": c.task,
        "ttl_s": c.ttl_s,
        "enabled": c.enabled,
        "semantic_threshold": c.semantic_threshold,
    }


def _cache(r: Row) -> CacheSetting:
    return CacheSetting(
        task=r["task"],
        ttl_s=r["ttl_s"],
        enabled=bool(r["enabled"]),
        semantic_threshold=r["semantic_threshold"],
    )


def _rate_row(x: RateLimit) -> dict[str, Any]:
    return {
        "id": x.id,
        "scope": x.scope,
        "scope_value": x.scope_value,
        "metric": x.metric,
        "limit_value": x.limit,
        "window_s": x.window_s,
        "algorithm": x.algorithm,
        "burst": x.burst,
        "enabled": x.enabled,
    }


def _rate(r: Row) -> RateLimit:
    return RateLimit(
        id=r["id"],
        scope=r["scope"],
        scope_value=r["scope_value"],
        metric=r["metric"],
        limit=r["limit_value"],
        window_s=r["window_s"],
        algorithm=r["algorithm"],
        burst=r["burst"],
        enabled=bool(r["enabled"]),
    )


RATES = ("input", "cached_input", "cache_write", "output", "reasoning")


def _price_row(o: PriceOverride) -> dict[str, Any]:
    row: dict[str, Any] = {
        "provider": o.provider,
        "model": o.model,
        "effective_from": o.effective_from,
        "note": o.note,
    }
    for name in RATES:
        whole, exact = rate_columns(getattr(o, name))
        row[f"{name}_picousd_per_token"] = whole
        row[f"{name}_picousd_per_token_exact"] = exact
    return row


def rate_columns(usd_per_mtok: Decimal | None) -> tuple[int | None, str | None]:
    """A rate (USD per 1M tokens) as its two columns: pUSD per token rounded half to even,
    and the exact pUSD per token as decimal text when that is not whole (else None)."""
    if usd_per_mtok is None:
        return None, None
    with localcontext(prec=WIDE):
        exact = usd_per_mtok.scaleb(6)
        whole = exact.to_integral_value(rounding=ROUND_HALF_EVEN)
        return int(whole), None if exact == whole else f"{exact.normalize():f}"


def rate_value(whole: int | None, exact: str | None) -> Decimal | None:
    """A rate's two columns as USD per 1M tokens. The exact text counts when it rounds to
    the integer column: a row whose integer a version without the exact column rewrote is
    read from the integer, and a row written before the exact column existed (NULL) too."""
    if whole is None:
        return None
    if exact is not None:
        with localcontext(prec=WIDE):
            try:
                value = Decimal(exact)
            except InvalidOperation:
                value = Decimal("NaN")
            ok = value.is_finite() and value >= 0
            if ok and value.to_integral_value(rounding=ROUND_HALF_EVEN) == whole:
                return tidy(value.scaleb(-6))
    return per_million(whole)


def _price(r: Row) -> PriceOverride:
    def rate(name: str) -> Decimal | None:
        return rate_value(r[f"{name}_picousd_per_token"], r.get(f"{name}_picousd_per_token_exact"))

    return PriceOverride(
        model=r["model"],
        provider=r["provider"],
        effective_from=r["effective_from"],
        input=rate("input") or Decimal(0),
        output=rate("output") or Decimal(0),
        cached_input=rate("cached_input"),
        cache_write=rate("cache_write"),
        reasoning=rate("reasoning"),
        note=r["note"],
    )


def _score(r: Row) -> ModelScore:
    return ModelScore(model=r["model"], quality=r["quality"], note=r["note"])


def user_from_row(r: Row) -> User:
    return User(
        username=r["username"],
        role=r["role"],
        failed_attempts=r["failed_attempts"],
        locked_until=r["locked_until"],
        created_at=r["created_at"],
        disabled=bool(r["disabled"]),
    )


def audit_from_row(r: Row) -> AuditEntry:
    def load(text: str | None) -> Mapping[str, Any] | None:  # redacted at write too; this
        return None if text is None else redact_webhooks(json.loads(text))  # covers any older row

    return AuditEntry(
        id=r["id"],
        ts=r["ts"],
        actor=r["actor"],
        action=r["action"],
        entity=r["entity"],
        entity_id=r["entity_id"],
        before=load(r["before_json"]),
        after=load(r["after_json"]),
    )


def alert_from_row(r: Row) -> Alert:
    return Alert(
        id=r["id"],
        ts=r["ts"],
        kind=r["kind"],
        budget_id=r["budget_id"],
        window_key=r["window_key"],
        threshold_pct=r["threshold_pct"],
        message=r["message"],
        spent_picousd=r["spent_picousd"],
        limit_picousd=r["limit_picousd"],
        spent_tokens=r["spent_tokens"],
        limit_tokens=r["limit_tokens"],
        delivered=bool(r["delivered"]),
        delivery_error=r["delivery_error"],
        acked_by=r["acked_by"],
        acked_at=r["acked_at"],
        severity=r["severity"] or "warning",
        link=r["link"],
        notify_state=r["notify_state"] or "skipped",
        notify_attempts=r["notify_attempts"] or 0,
        notify_error=r["notify_error"],
        notified_at=r["notified_at"],
        notify=frozen_map(json.loads(r["notify_json"]) if r["notify_json"] else {}),
    )


BUDGET = Entity("budget", s.budgets, lambda b: {"id": b.id}, _budget_row, _budget)
POLICY = Entity(
    "routing_policy", s.routing_policies, lambda p: {"task": p.task}, _policy_row, _policy
)
SAMPLING = Entity(
    "sampling_strategy", s.sampling_strategies, lambda x: {"key": x.key}, _sampling_row, _sampling
)
CACHE = Entity("cache_setting", s.cache_settings, lambda c: {"task": c.task}, _cache_row, _cache)
RATE_LIMIT = Entity("rate_limit", s.rate_limits, lambda x: {"id": x.id}, _rate_row, _rate)
PRICE = Entity(
    "price_override",
    s.price_overrides,
    lambda o: {"provider": o.provider, "model": o.model, "effective_from": o.effective_from},
    _price_row,
    _price,
)
SCORE = Entity(
    "model_score",
    s.model_scores,
    lambda x: {"model": x.model},
    lambda x: {"model": x.model, "quality": x.quality, "note": x.note},
    _score,
)


def token_from_row(r: Row) -> ApiToken:
    return ApiToken(
        id=r["id"],
        username=r["username"],
        name=r["name"],
        prefix=r["prefix"],
        created_at=r["created_at"],
        created_by=r["created_by"],
        expires_at=r["expires_at"],
        last_used_at=r["last_used_at"],
        revoked_at=r["revoked_at"],
        revoked_by=r["revoked_by"],
    )


def mute_from_row(r: Row) -> AlertMute:
    return AlertMute(r["kind"], r["subject"], r["until"], r["created_by"], r["created_at"])
