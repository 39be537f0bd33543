"""Routing editor values <-> policies, sampling strategies, cache settings and rate limits,
and the what-if replay's policy table -> policies."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from console.inputs.text import parse_int, text_value
from core.control import (
    DEFAULT_CACHE_TTL_S,
    DEFAULT_CACHE_TTLS,
    CacheSetting,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    Weights,
    validate_policy,
)
from core.errors import ConfigError
from core.insights import Advice
from core.pricing import Catalog
from core.settings import comma_list

STRATEGY_PARAMS: Mapping[str, tuple[str, ...]] = {
    "always": (),
    "periodic": ("interval_s",),
    "change_based": ("threshold",),
    "threshold": ("threshold",),
    "adaptive": ("base_interval_s", "min_interval_s", "max_interval_s"),
}


PARAM_LABELS = {
    "interval_s": "Interval (s)",
    "threshold": "Threshold",
    "base_interval_s": "Base interval (s)",
    "min_interval_s": "Min interval (s)",
    "max_interval_s": "Max interval (s)",
}


PARAM_HELP = {
    "change_based": "Call when the signal moved by at least this relative change (0.15 = 15%).",
    "threshold": "Call when the event's score is at least this value.",
}


POLICY_FIELDS = (
    "task",
    "primary_model",
    "fallbacks",
    "degrade_to",
    "strategy",
    "criticality",
    "cache_ttl_s",
    "personalised",
    "max_tokens",
    "prompt_cache",
    "weights",
)
POLICY_LABELS = {  # as the editor labels them
    "task": "Task",
    "primary_model": "Primary model",
    "fallbacks": "Fallbacks",
    "degrade_to": "Degrade to",
    "strategy": "Strategy",
    "criticality": "Criticality",
    "cache_ttl_s": "Cache TTL (s)",
    "personalised": "Personalised",
    "max_tokens": "Max tokens",
    "prompt_cache": "Provider prompt caching",
    "weights": "Weights",
    "weights.cost": "Cost weight",
    "weights.latency": "Latency weight",
    "weights.quality": "Quality weight",
}
POLICY_FILLER = {  # valid stand-ins: to find every bad field of a failed save at once
    "task": "valid-task",
    "primary_model": "dryrun-small",
    "fallbacks": [],
    "degrade_to": "",
    "strategy": "explicit",
    "criticality": "normal",
    "cache_ttl_s": "",
    "max_tokens": "",
    "prompt_cache": "",
}
PROMPT_CACHE = {"": "off", "5m": "5 minutes (write 1.25x input)", "1h": "1 hour (write 2x input)"}


def policy_values(p: RoutingPolicy | None) -> dict[str, Any]:
    if p is None:
        p = RoutingPolicy(task="", primary_model="")
    return {
        "task": p.task,
        "primary_model": p.primary_model,
        "fallbacks": list(p.fallbacks),  # a multiselect, in order
        "degrade_to": p.degrade_to or "",
        "strategy": p.strategy,
        "criticality": p.criticality,
        "cache_ttl_s": "" if p.cache_ttl_s is None else str(p.cache_ttl_s),
        "personalised": p.personalised,
        "max_tokens": "" if p.max_tokens is None else str(p.max_tokens),
        "prompt_cache": p.prompt_cache or "",
        "w_cost": p.weights.cost,
        "w_latency": p.weights.latency,
        "w_quality": p.weights.quality,
    }


def model_list(value: Any) -> tuple[str, ...]:
    """Fallbacks as picked (a list, in order) or typed in a table cell ('a, b')."""
    if value is None or isinstance(value, float) and value != value:
        return ()
    if isinstance(value, str):
        return tuple(comma_list(value))
    return tuple(str(m).strip() for m in value if str(m).strip())


def parse_policy(v: Mapping[Any, Any]) -> RoutingPolicy:
    fallbacks = model_list(v.get("fallbacks"))
    return RoutingPolicy(
        task=text_value(v, "task"),
        primary_model=text_value(v, "primary_model"),
        fallbacks=fallbacks,
        degrade_to=text_value(v, "degrade_to") or None,
        criticality=text_value(v, "criticality") or "normal",
        strategy=text_value(v, "strategy") or "explicit",
        weights=Weights(
            float(v.get("w_cost", 0.5) or 0),
            float(v.get("w_latency", 0.2) or 0),
            float(v.get("w_quality", 0.3) or 0),
        ),
        cache_ttl_s=parse_int(text_value(v, "cache_ttl_s"), "cache_ttl_s"),
        personalised=bool(v.get("personalised")),
        max_tokens=parse_int(text_value(v, "max_tokens"), "max_tokens"),
        prompt_cache=text_value(v, "prompt_cache") or None,
    )


def check_policy(v: Mapping[Any, Any], cat: Catalog) -> RoutingPolicy:
    """The editor's values -> a policy core accepts (validation only, nothing stored)."""
    p = parse_policy(v)
    check_models(p, cat)
    return validate_policy(p, model_exists=cat.has)


def check_models(p: RoutingPolicy, cat: Catalog) -> None:
    """Every model of a policy must be in the price catalog (with the overrides in force)."""
    named = [("primary_model", p.primary_model), *(("fallbacks", m) for m in p.fallbacks)]
    if p.degrade_to:
        named.append(("degrade_to", p.degrade_to))
    for field, model in named:
        if model and not cat.has(model):
            raise ConfigError(
                f"{field}: {model!r} is not a model in the price catalog (add a"
                " price override on the Pricing page first)",
                field=field,
            )


def policies_from_frame(frame: pd.DataFrame, cat: Catalog) -> list[RoutingPolicy]:
    """The edited policy table -> policies checked by core; an error names row and field."""
    out = []
    for i, v in enumerate(frame.to_dict("records"), start=1):
        if not text_value(v, "task") and not text_value(v, "primary_model"):
            continue
        try:
            p = parse_policy(v)
            check_models(p, cat)
            out.append(validate_policy(p, model_exists=cat.has))
        except ConfigError as exc:
            raise ConfigError(
                f"policy row {i} ({text_value(v, 'task') or 'no task'}): {exc}", field=exc.field
            ) from None
    return out


SAMPLING_FIELDS = (
    "key",
    "strategy",
    "params",
    "min_interval_s",
    "batch_size",
    "batch_timeout_s",
    "enabled",
)


def sampling_values(s: SamplingStrategy | None) -> dict[str, Any]:
    s = s or SamplingStrategy(key="")
    out: dict[str, Any] = {
        "key": s.key,
        "strategy": s.strategy,
        "min_interval_s": float(s.min_interval_s),
        "batch_size": int(s.batch_size),
        "batch_timeout_s": float(s.batch_timeout_s),
        "enabled": bool(s.enabled),
    }
    for name in PARAM_LABELS:
        got = s.params.get(name)
        out[f"p_{name}"] = "" if got is None else f"{float(got):g}"
    return out


def parse_sampling(v: Mapping[str, Any]) -> SamplingStrategy:
    """The strategy's own knobs come from ``p_<name>`` values; empty ones are left out."""
    strategy = text_value(v, "strategy") or "always"
    params: dict[str, float] = {}
    for name in STRATEGY_PARAMS.get(strategy, ()):
        text = text_value(v, f"p_{name}")
        if not text:
            if name == "base_interval_s":  # routers need it (core.sampling.SamplingConfig)
                raise ConfigError(
                    "params.base_interval_s: is required by the adaptive strategy",
                    field="params.base_interval_s",
                )
            continue
        try:
            params[name] = float(text)
        except ValueError:
            raise ConfigError(
                f"params.{name}: must be a number (got {text!r})", field=f"params.{name}"
            ) from None
    return SamplingStrategy(
        key=text_value(v, "key"),
        strategy=strategy,
        params=params,
        min_interval_s=float(v.get("min_interval_s") or 0.0),
        batch_size=int(v.get("batch_size") or 0),
        batch_timeout_s=float(v.get("batch_timeout_s") or 0.0),
        enabled=bool(v.get("enabled", True)),
    )


CACHE_FIELDS = ("task", "ttl_s", "enabled", "semantic_threshold")


RATE_FIELDS = (
    "id",
    "scope",
    "scope_value",
    "metric",
    "limit",
    "window_s",
    "algorithm",
    "burst",
    "enabled",
)


def cache_values(c: CacheSetting | None) -> dict[str, Any]:
    return {
        "task": c.task if c else "",
        "ttl_s": c.ttl_s if c else 3600,
        "enabled": c.enabled if c else True,
        "semantic_threshold": ""
        if c is None or c.semantic_threshold is None
        else str(c.semantic_threshold),
    }


def parse_cache_setting(v: Mapping[str, Any]) -> CacheSetting:
    text = text_value(v, "semantic_threshold")
    try:
        threshold = float(text) if text else None
    except ValueError:
        raise ConfigError(
            f"semantic_threshold: must be a number (got {text!r})", field="semantic_threshold"
        ) from None
    return CacheSetting(
        task=text_value(v, "task"),
        ttl_s=int(v.get("ttl_s") or 0),
        enabled=bool(v.get("enabled", True)),
        semantic_threshold=threshold,
    )


def rate_limit_values(r: RateLimit | None) -> dict[str, Any]:
    return {
        "id": r.id if r else "",
        "scope": r.scope if r else "user",
        "scope_value": (r.scope_value or "") if r else "",
        "metric": r.metric if r else "requests",
        "limit": r.limit if r else 60,
        "window_s": r.window_s if r else 60,
        "algorithm": r.algorithm if r else "token_bucket",
        "burst": "" if r is None or r.burst is None else str(r.burst),
        "enabled": r.enabled if r else True,
    }


def parse_rate_limit(v: Mapping[str, Any]) -> RateLimit:
    return RateLimit(
        id=text_value(v, "id"),
        scope=text_value(v, "scope"),
        scope_value=text_value(v, "scope_value") or None,
        metric=text_value(v, "metric"),
        limit=int(v.get("limit") or 0),
        window_s=int(v.get("window_s") or 0),
        algorithm=text_value(v, "algorithm"),
        burst=parse_int(text_value(v, "burst"), "burst"),
        enabled=bool(v.get("enabled", True)),
    )


NOTE_KEY = "rt_advice_note"  # what the Routing page says about an applied advice, once


@dataclass(frozen=True)
class Proposal:
    """What a savings advice proposes, as the Routing editor's state: the editor (``rt_pol``
    or ``rt_cache``), the entity to pick (a task, or None for a new one), the tab, the form
    values, and what the page says about it."""

    prefix: str
    pick: str | None
    tab: str
    values: dict[str, Any]
    note: str = ""

    def state(self, new: str) -> dict[str, Any]:
        """Session-state entries that open the editor on this proposal (``new``: the
        editor's key for a new entity)."""
        slug = self.pick or "new"
        return {
            "rt_tab": self.tab,
            f"{self.prefix}_pick": self.pick or new,
            NOTE_KEY: self.note,
            **{f"{self.prefix}_{slug}_{k}": v for k, v in self.values.items()},
        }


# model -> (its provider, the provider's wire); only the "anthropic" wire marks prompts
ProviderOf = Callable[[str], tuple[str, str]]


def proposal(
    advice: Advice,
    policies: Sequence[RoutingPolicy],
    caches: Sequence[CacheSetting],
    provider_of: ProviderOf,
) -> Proposal:
    """The change an advice proposes, on top of the task's current policy or cache setting:
    a model switch replaces the advised model where the policy names it (else makes the
    alternative primary); the response cache is turned on with a TTL no shorter than the
    task's built-in one, where the task's TTL is decided (the policy's cache TTL wins over
    the cache setting); prompt caching is turned on for a model whose provider is marked
    (Anthropic), and explained for one that caches prompts on its own."""
    task = advice.task
    policy = next((p for p in policies if p.task == task), None)
    cache = next((c for c in caches if c.task == task), None)
    said = (
        f"Filled in from the savings advice \u201c{advice.title}\u201d: review it and press"
        " Save (nothing is saved before)."
    )
    pick = policy.task if policy else None
    values = {**policy_values(policy), "task": task}
    if advice.kind == "response_cache":
        return _response_cache(task, policy, cache, said)
    if advice.kind == "model_switch" and advice.alternative:
        values.update(_switched(policy, advice.model, advice.alternative))
        return Proposal("rt_pol", pick, "Task policies", values, said)
    if advice.kind == "prompt_cache":
        values["primary_model"] = values["primary_model"] or advice.model or ""
        provider, wire = provider_of(advice.model) if advice.model else ("", "")
        if advice.model and wire != "anthropic":
            return Proposal(
                "rt_pol",
                pick,
                "Task policies",
                values,
                f"{advice.model} is served by {provider}, which caches a repeated prompt"
                " prefix on its own: 'Provider prompt caching' marks Anthropic requests"
                " only, so nothing is changed here. To get the cached rate, keep the long"
                " system prompt first and identical in every call of the task.",
            )
        values["prompt_cache"] = values["prompt_cache"] or "5m"
        return Proposal("rt_pol", pick, "Task policies", values, said)
    return Proposal("rt_pol", pick, "Task policies", values, said)


def _switched(policy: RoutingPolicy | None, model: str | None, alternative: str) -> dict[str, Any]:
    """The policy's models with ``model`` replaced by ``alternative`` where it is named
    (primary or a fallback, order kept); the alternative as primary otherwise."""
    if policy is None or model not in (policy.primary_model, *policy.fallbacks):
        primary = alternative
        rest = list(policy.fallbacks) if policy else []
    elif model == policy.primary_model:
        primary, rest = alternative, list(policy.fallbacks)
    else:
        primary = policy.primary_model
        rest = [alternative if m == model else m for m in policy.fallbacks]
    fallbacks = [m for m in dict.fromkeys(rest) if m != primary]
    return {"primary_model": primary, "fallbacks": fallbacks}


def _response_cache(
    task: str, policy: RoutingPolicy | None, cache: CacheSetting | None, said: str
) -> Proposal:
    builtin = DEFAULT_CACHE_TTLS.get(task, DEFAULT_CACHE_TTL_S)
    notes = [said]
    if policy is not None and policy.personalised:
        notes.append(
            "The task's policy is personalised, so its calls are never cached: untick"
            " 'Personalised' on the policy if answers may be shared across users."
        )
    if policy is not None and policy.cache_ttl_s is not None:  # it wins over the setting
        values = {
            **policy_values(policy),
            "cache_ttl_s": str(max(policy.cache_ttl_s, builtin)),
        }
        notes.insert(
            1, "The task's policy sets its cache TTL, which decides over the cache setting."
        )
        if cache is not None and not cache.enabled:
            notes.append(
                "The task's cache setting is disabled: turn it on under Cache & rate limits too."
            )
        return Proposal("rt_pol", policy.task, "Task policies", values, " ".join(notes))
    current = cache.ttl_s if cache is not None and cache.enabled else 0
    values = {
        **cache_values(cache),
        "task": task,
        "enabled": True,
        "ttl_s": max(current, builtin),
    }
    return Proposal(
        "rt_cache", cache.task if cache else None, "Cache & rate limits", values, " ".join(notes)
    )
