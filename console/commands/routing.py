"""Routing writes: policies, sampling strategies, cache settings and rate limits from editor
values. Each passes the signed-in Actor to the control plane, which checks the role
(PermissionDenied) and audits the change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console import auth
from console.inputs.routing import (
    check_models,
    parse_cache_setting,
    parse_policy,
    parse_rate_limit,
    parse_sampling,
)
from console.queries.pricing import catalog
from core.control import Actor, CacheSetting, RateLimit, RoutingPolicy, SamplingStrategy
from core.errors import ConfigError


def save_policy(actor: Actor, v: Mapping[str, Any], *, new: bool) -> RoutingPolicy:
    policy = parse_policy(v)
    plane = auth.plane()
    if new and any(p.task == policy.task for p in plane.policies()):
        raise ConfigError(
            f"task: a policy for {policy.task!r} already exists; pick it to edit it", field="task"
        )
    check_models(policy, catalog())
    return plane.upsert_policy(policy, actor)


def delete_policy(actor: Actor, task: str) -> bool:
    return auth.plane().delete_policy(task, actor)


def save_sampling(actor: Actor, v: Mapping[str, Any], *, new: bool) -> SamplingStrategy:
    strategy = parse_sampling(v)
    plane = auth.plane()
    if new and any(s.key == strategy.key for s in plane.sampling()):
        raise ConfigError(
            f"key: {strategy.key!r} already has a strategy; pick it to edit it", field="key"
        )
    return plane.upsert_sampling(strategy, actor)


def delete_sampling(actor: Actor, key: str) -> bool:
    return auth.plane().delete_sampling(key, actor)


def save_cache_setting(actor: Actor, v: Mapping[str, Any]) -> CacheSetting:
    return auth.plane().upsert_cache_setting(parse_cache_setting(v), actor)


def delete_cache_setting(actor: Actor, task: str) -> bool:
    return auth.plane().delete_cache_setting(task, actor)


def save_rate_limit(actor: Actor, v: Mapping[str, Any]) -> RateLimit:
    return auth.plane().upsert_rate_limit(parse_rate_limit(v), actor)


def delete_rate_limit(actor: Actor, limit_id: str) -> bool:
    return auth.plane().delete_rate_limit(limit_id, actor)
