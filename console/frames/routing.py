"""The Routing & Sampling page's tables: policies, sampling strategies with what they saved,
cache settings, rate limits, provider health, and the what-if replay's policy table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from console.inputs.routing import policy_values
from console.selection import Money
from core.control import CacheSetting, RateLimit, RoutingPolicy, SamplingStrategy


def whole(value: int | None) -> str:
    """An optional whole number as table text: '1,000', blank when unset (never 'None')."""
    return "" if value is None else f"{value:,}"


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
                "cache TTL (s)": whole(p.cache_ttl_s),
                "personalised": p.personalised,
                "max tokens": whole(p.max_tokens),
                "prompt cache": p.prompt_cache or "",
            }
            for p in policies
        ]
    )


def describe_params(s: SamplingStrategy) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in s.params.items()) or "–"


def sampling_frame(
    strategies: Sequence[SamplingStrategy], savings: pd.DataFrame, money: Money
) -> pd.DataFrame:
    by_key = {str(r["key"]): r for r in savings.to_dict("records")}
    rows = []
    for s in strategies:
        got = by_key.get(s.key, {})
        rows.append(
            {
                "agent / task": s.key,
                "strategy": s.strategy,
                "parameters": describe_params(s),
                "min interval (s)": s.min_interval_s,
                "batch": f"{s.batch_size} / {s.batch_timeout_s:g} s",
                "enabled": s.enabled,
                "events": int(got.get("events", 0)),
                "AI calls": int(got.get("calls", 0)),
                "calls saved": int(got.get("skipped", 0)),
                # "<$0.01" for a few skipped embedding calls: "$0.00" said nothing was saved
                "saved": money.table(int(got.get("saved_picousd", 0))),
            }
        )
    return pd.DataFrame(rows)


def cache_settings_frame(settings: Sequence[CacheSetting]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "task": c.task,
                "TTL (s)": c.ttl_s,
                "enabled": c.enabled,
                "semantic threshold": "" if c.semantic_threshold is None else c.semantic_threshold,
            }
            for c in settings
        ]
    )


def rate_limits_frame(limits: Sequence[RateLimit]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": r.id,
                "scope": r.scope,
                "value": r.scope_value or "each",
                "metric": r.metric,
                "limit": r.limit,
                "window (s)": r.window_s,
                "algorithm": r.algorithm,
                "burst": whole(r.burst),
                "enabled": r.enabled,
            }
            for r in limits
        ]
    )


def health_frame(df: pd.DataFrame, seen: Mapping[str, tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "provider": df["provider"],
            "model": df["model"],
            "attempts": df["attempts"],
            "errors": df["errors"],
            "error rate": df["error_rate"],
            "latency p50 (ms)": df["p50_ms"].round(0).astype("Int64"),
            "latency p95 (ms)": df["p95_ms"].round(0).astype("Int64"),
            "breaker (this console)": [seen[m][0] if m in seen else "n/a" for m in df["model"]],
        }
    )


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
    """The what-if replay's policy table: one text cell per field (fallbacks 'a, b')."""
    rows = [
        {
            **{k: policy_values(p)[k] for k in PROPOSAL_POLICY_COLUMNS},
            "fallbacks": ", ".join(p.fallbacks),
        }
        for p in policies
    ]
    return pd.DataFrame(rows, columns=PROPOSAL_POLICY_COLUMNS).astype(object)
