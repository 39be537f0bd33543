"""The Routing & Sampling page's data: form values <-> policies, sampling strategies, cache
settings and rate limits; their writes (as the signed-in Actor, checked and audited by core);
sampling savings and provider health from the usage log; breaker states as this console
process's router saw them.

The editors' shared plumbing (errors next to the field, the success message) is in
console/forms.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from console import auth, data
from console.budgets_data import parse_int, text_value
from core.control import (
    Actor,
    CacheSetting,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    Weights,
)
from core.errors import ConfigError, CostlineError
from core.pricing import Catalog

# The knobs of each sampling strategy, as the form shows them (core.control validates them).
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

# ---- routing policies ----------------------------------------------------------------------

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
    "weights",
)


def policy_values(p: RoutingPolicy | None) -> dict[str, Any]:
    if p is None:
        p = RoutingPolicy(task="", primary_model="")
    return {
        "task": p.task,
        "primary_model": p.primary_model,
        "fallbacks": ", ".join(p.fallbacks),
        "degrade_to": p.degrade_to or "",
        "strategy": p.strategy,
        "criticality": p.criticality,
        "cache_ttl_s": "" if p.cache_ttl_s is None else str(p.cache_ttl_s),
        "personalised": p.personalised,
        "max_tokens": "" if p.max_tokens is None else str(p.max_tokens),
        "w_cost": p.weights.cost,
        "w_latency": p.weights.latency,
        "w_quality": p.weights.quality,
    }


def parse_policy(v: Mapping[Any, Any]) -> RoutingPolicy:
    fallbacks = tuple(m.strip() for m in text_value(v, "fallbacks").split(",") if m.strip())
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
    )


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


def provider_warnings(p: RoutingPolicy, cat: Catalog) -> list[str]:
    """Models of ``p`` whose provider is not ready in this console's configuration."""
    from console import playground_data as pg

    s = pg.settings()
    out = []
    for model in (p.primary_model, *p.fallbacks, p.degrade_to):
        if model and cat.has(model):
            problem = pg.provider_problem(s, cat.provider_of(model))
            if problem:
                out.append(f"{model}: {problem}")
    return out


def save_policy(actor: Actor, v: Mapping[str, Any], *, new: bool) -> RoutingPolicy:
    from console.pricing_data import catalog

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


def policies_frame(policies: list[RoutingPolicy]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "task": p.task,
                "primary": p.primary_model,
                "fallbacks": ", ".join(p.fallbacks),
                "degrade to": p.degrade_to or "",
                "strategy": p.strategy,
                "criticality": p.criticality,
                "cache TTL (s)": p.cache_ttl_s,
                "personalised": p.personalised,
                "max tokens": p.max_tokens,
            }
            for p in policies
        ]
    )


# ---- sampling strategies -------------------------------------------------------------------

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


def describe_params(s: SamplingStrategy) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in s.params.items()) or "–"


@data.cached
def sampling_savings(home: str, version: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Per task in [start, end): events, real calls, skipped calls and what skipping saved
    (exact picodollars, from the 'skipped' events' saved_picousd)."""
    sql = (
        "SELECT task AS key, count(*) AS events, count(*) FILTER (WHERE ai_called) AS calls,"
        " count(*) FILTER (WHERE status = 'skipped') AS skipped,"
        " CAST(coalesce(sum(saved_picousd) FILTER (WHERE status = 'skipped'), 0) AS VARCHAR)"
        " AS saved_picousd FROM events WHERE ts >= ? AND ts < ? AND task IS NOT NULL"
        " GROUP BY task ORDER BY task"
    )
    df = data.reader().sql(sql, [start, end])
    df["saved_picousd"] = pd.Series([int(v) for v in df["saved_picousd"]], dtype=object)
    return df


# ---- cache settings and rate limits --------------------------------------------------------

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


def save_cache_setting(actor: Actor, v: Mapping[str, Any]) -> CacheSetting:
    text = text_value(v, "semantic_threshold")
    try:
        threshold = float(text) if text else None
    except ValueError:
        raise ConfigError(
            f"semantic_threshold: must be a number (got {text!r})", field="semantic_threshold"
        ) from None
    setting = CacheSetting(
        task=text_value(v, "task"),
        ttl_s=int(v.get("ttl_s") or 0),
        enabled=bool(v.get("enabled", True)),
        semantic_threshold=threshold,
    )
    return auth.plane().upsert_cache_setting(setting, actor)


def delete_cache_setting(actor: Actor, task: str) -> bool:
    return auth.plane().delete_cache_setting(task, actor)


def save_rate_limit(actor: Actor, v: Mapping[str, Any]) -> RateLimit:
    limit = RateLimit(
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
    return auth.plane().upsert_rate_limit(limit, actor)


def delete_rate_limit(actor: Actor, limit_id: str) -> bool:
    return auth.plane().delete_rate_limit(limit_id, actor)


# ---- provider health -----------------------------------------------------------------------


@data.cached
def provider_health(home: str, version: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Per provider and model in [start, end): attempts that reached the provider, errors,
    error rate and latency p50/p95 of the answered ones (cache hits and Costline's own
    refusals - blocked, rate_limited, skipped - are not provider calls)."""
    sql = (
        "SELECT provider, model, count(*) AS attempts,"
        " count(*) FILTER (WHERE status = 'error') AS errors,"
        " quantile_cont(latency_ms, 0.5) FILTER (WHERE status = 'ok') AS p50_ms,"
        " quantile_cont(latency_ms, 0.95) FILTER (WHERE status = 'ok') AS p95_ms"
        " FROM events WHERE ts >= ? AND ts < ? AND ai_called AND NOT cache_hit"
        " AND status IN ('ok', 'error') GROUP BY ALL ORDER BY attempts DESC, provider, model"
    )
    df = data.reader().sql(sql, [start, end])
    df["error_rate"] = (df["errors"] / df["attempts"]).where(df["attempts"] > 0)
    return df


def breakers() -> dict[str, tuple[str, int]]:
    """model -> (breaker state, consecutive failures) as this console process's router last
    saw them (core.routing's health(): it never takes a half-open probe)."""
    from console import playground_data as pg

    try:
        health = pg.router().controls.routing.health()  # type: ignore[union-attr]
    except (CostlineError, AttributeError):
        return {}
    return {h.model: (h.breaker, h.consecutive_failures) for h in health}


def health_frame(df: pd.DataFrame, seen: Mapping[str, tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "provider": df["provider"],
            "model": df["model"],
            "attempts": df["attempts"],
            "errors": df["errors"],
            "error rate": df["error_rate"],
            "latency p50 (ms)": df["p50_ms"].round(0),
            "latency p95 (ms)": df["p95_ms"].round(0),
            "breaker (this console)": [seen[m][0] if m in seen else "n/a" for m in df["model"]],
        }
    )


# ---- policies of a what-if replay ----------------------------------------------------------

PROPOSAL_POLICY_COLUMNS = [
    "task",
    "primary_model",
    "fallbacks",
    "degrade_to",
    "strategy",
    "criticality",
    "max_tokens",
]


def policy_proposal_frame(policies: list[RoutingPolicy]) -> pd.DataFrame:
    rows = [{k: policy_values(p)[k] for k in PROPOSAL_POLICY_COLUMNS} for p in policies]
    return pd.DataFrame(rows, columns=PROPOSAL_POLICY_COLUMNS).astype(object)


def policies_from_frame(frame: pd.DataFrame, cat: Catalog) -> list[RoutingPolicy]:
    """The edited policy table -> policies checked by core; an error names row and field."""
    from core.control import validate_policy

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
