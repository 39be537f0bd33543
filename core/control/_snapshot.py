"""ControlSnapshot: everything a router reads, as immutable values, taken in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

from ._keys import VirtualKey
from ._models import (
    DEFAULT_CACHE_TTL_S,
    DEFAULT_CACHE_TTLS,
    DEFAULT_SETTINGS,
    Budget,
    CacheSetting,
    ModelScore,
    PriceOverride,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    frozen_map,
)


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    """The control plane at one ``version``. Users, audit log and alerts are not included:
    routers do not need them (the console reads them from ``ControlPlane`` directly)."""

    version: int
    budgets: tuple[Budget, ...] = ()
    policies: tuple[RoutingPolicy, ...] = ()
    sampling: tuple[SamplingStrategy, ...] = ()
    cache_settings: tuple[CacheSetting, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    price_overrides: tuple[PriceOverride, ...] = ()
    model_scores: tuple[ModelScore, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=frozen_map)
    keys: tuple[VirtualKey, ...] = ()  # the gateway's virtual keys (hashes, never secrets)

    def policy(self, task: str | None) -> RoutingPolicy | None:
        return next((p for p in self.policies if p.task == task), None)

    def sampling_for(self, key: str | None) -> SamplingStrategy | None:
        return next((x for x in self.sampling if x.key == key and x.enabled), None)

    def cache_setting(self, task: str | None) -> CacheSetting | None:
        return next((c for c in self.cache_settings if c.task == task), None)

    def cache_ttl(self, task: str | None) -> int:
        """TTL in seconds: the task policy's, else the task's cache setting, else the seed
        table (chat 5 min ... translation 24 h), else 24 h. 0 means do not cache."""
        policy = self.policy(task)
        if policy is not None and policy.cache_ttl_s is not None:
            return policy.cache_ttl_s
        setting = self.cache_setting(task)
        if setting is not None:
            return setting.ttl_s if setting.enabled else 0
        return DEFAULT_CACHE_TTLS.get(task or "", DEFAULT_CACHE_TTL_S)

    def active_budgets(self) -> tuple[Budget, ...]:
        return tuple(b for b in self.budgets if b.enabled)

    def quality(self, model: str, default: float | None = None) -> float | None:
        return next((s.quality for s in self.model_scores if s.model == model), default)

    def price_overrides_for(self, model: str, on: date | None = None) -> tuple[PriceOverride, ...]:
        """Overrides of ``model`` (any provider) in force on ``on`` (all when None), newest
        first."""
        rows = [
            o
            for o in self.price_overrides
            if o.model == model and (on is None or o.effective_from <= on)
        ]
        return tuple(sorted(rows, key=lambda o: o.effective_from, reverse=True))

    def setting(self, key: str, default: Any = None) -> Any:
        if key in self.settings:
            return self.settings[key]
        return DEFAULT_SETTINGS.get(key, default)


def deep_freeze(value: Any) -> Any:
    """Read-only copy: dicts become mapping proxies, lists become tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: deep_freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(deep_freeze(v) for v in value)
    return value
