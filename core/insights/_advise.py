"""Savings advice from the usage log: cheaper models, response caching, prompt caching.

    advise(events, reprice=..., candidates=..., cached_rate_ratio=...) -> AdviceReport

The price catalog is reached only through callables (``reprice``, ``candidates``,
``cached_rate_ratio``), so this module does not depend on it. Token classes passed to
``reprice`` are the usage log's column names (``TOKEN_CLASSES``).

Model switch: for each (task, model) pair, every candidate for the task that reprices the same
logged tokens cheaper and whose observed reliability is within ``Tolerance`` of the current
model: error rate (provider-side errors only) at most +1 point, median latency at most +25%,
quality (when known) at most -0.02. Evidence: the candidate's own calls on that task
(confidence 'high'), else its calls on any task ('medium'); never-observed candidates are not
suggested. The saving is reprice(current) - reprice(candidate) on that pair's tokens, scaled
from the observed days to a 30-day month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd

from core.insights._advice_base import (
    TOKEN_CLASSES,
    Advice,
    CachedRateRatio,
    Candidates,
    Quality,
    Reprice,
    billed_calls,
    monthly_usd,
    observed_days,
    usd_text,
)
from core.insights._cache_advice import prompt_caching, response_cache

__all__ = [
    "TOKEN_CLASSES",
    "Advice",
    "AdviceReport",
    "Tolerance",
    "advise",
    "model_switches",
    "prompt_caching",
    "response_cache",
]

# errors that are not the model's fault: Costline's own controls and bad requests
NOT_MODEL_ERRORS = frozenset(
    {
        "BudgetExceeded",
        "PolicyError",
        "RateLimitExceeded",
        "RequestError",
        "BadRequest",
        "ContextWindowExceeded",
        "UnpricedModel",
        "PermissionDenied",
        "ConfigError",
    }
)


@dataclass(frozen=True)
class Tolerance:
    error_rate: float = 0.01  # candidate error rate <= current + this (absolute)
    latency: float = 0.25  # candidate median latency <= current * (1 + this)
    quality: float = 0.02  # candidate quality >= current - this
    min_calls: int = 20  # observed calls needed before a candidate's figures count


@dataclass(frozen=True)
class AdviceReport:
    items: list[Advice]  # largest monthly saving first
    skipped: dict[str, str] = field(default_factory=dict)  # kind -> why it was not analysed
    period_days: float = 0.0

    @property
    def total_monthly_saving_usd(self) -> Decimal:
        return sum((a.monthly_saving_usd for a in self.items), Decimal("0.00"))


Stats = dict[str, float]


def usage_stats(calls: pd.DataFrame, by: list[str]) -> dict[tuple[str, ...], Stats]:
    """Per group: calls, error_rate, median latency of ok calls, mean quality, token sums."""
    err = calls["status"].astype(str) != "ok"
    if "error_type" in calls.columns:
        err &= ~calls["error_type"].isin(NOT_MODEL_ERRORS)
    frame = calls.assign(_err=err.astype(float), _lat=calls["latency_ms"].where(~err))
    aggs: dict[str, tuple[str, str]] = {
        "calls": ("_err", "size"),
        "error_rate": ("_err", "mean"),
        "latency_ms": ("_lat", "median"),
        **{c: (c, "sum") for c in TOKEN_CLASSES if c in calls.columns},
    }
    if "quality_score" in calls.columns:
        aggs["quality"] = ("quality_score", "mean")
    table = frame.groupby(by, dropna=True).agg(**aggs).reset_index()
    out: dict[tuple[str, ...], Stats] = {}
    for rec in table.to_dict("records"):
        key = tuple(str(rec.pop(k)) for k in by)
        out[key] = {str(k): float(v) for k, v in rec.items()}
    return out


def _within(
    cur: Stats, cand: Stats, q_cur: float | None, q_cand: float | None, tol: Tolerance
) -> bool:
    if cand["error_rate"] > cur["error_rate"] + tol.error_rate:
        return False
    lat_c, lat_n = cur["latency_ms"], cand["latency_ms"]
    if not (math.isnan(lat_c) or math.isnan(lat_n)) and lat_n > lat_c * (1 + tol.latency):
        return False
    return q_cur is None or q_cand is None or q_cand >= q_cur - tol.quality


def _quality(stats: Stats, quality: Quality | None, task: str, model: str) -> float | None:
    if quality is not None:
        q = quality(task, model)
        if q is not None:
            return q
    q = stats.get("quality")
    return None if q is None or math.isnan(q) else q


def _evidence(
    task: str,
    cand: str,
    per_task: dict[tuple[str, ...], Stats],
    per_model: dict[tuple[str, ...], Stats],
    min_calls: int,
) -> tuple[Stats, str] | None:
    """The candidate's observed figures: on this task ('high'), else on any task ('medium')."""
    own = per_task.get((task, cand))
    if own is not None and own["calls"] >= min_calls:
        return own, "high"
    anywhere = per_model.get((cand,))
    if anywhere is not None and anywhere["calls"] >= min_calls:
        return anywhere, "medium"
    return None


def model_switches(
    events: pd.DataFrame,
    reprice: Reprice,
    candidates: Candidates,
    *,
    quality: Quality | None = None,
    tolerance: Tolerance = Tolerance(),
    period_days: float | None = None,
    min_saving_usd: float = 1.0,
) -> list[Advice]:
    """At most one advice per (task, model): the candidate with the largest saving."""
    calls = billed_calls(events)
    calls = calls[calls["task"].notna()]
    if calls.empty:
        return []
    days = period_days or observed_days(events)
    per_task = usage_stats(calls, ["task", "model"])
    per_model = usage_stats(calls, ["model"])
    out = []
    for (task, model), cur in per_task.items():
        tokens = {c: int(cur[c]) for c in TOKEN_CLASSES if c in cur}
        cur_cost = reprice(model, tokens)
        if cur_cost is None:
            continue
        q_cur = _quality(cur, quality, task, model)
        best: tuple[int, str, str, Stats] | None = None
        for cand in candidates(task):
            cost = reprice(cand, tokens) if cand != model else None
            if cost is None or cost >= cur_cost:
                continue
            found = _evidence(task, cand, per_task, per_model, tolerance.min_calls)
            if found is None:
                continue
            ev, conf = found
            if not _within(cur, ev, q_cur, _quality(ev, quality, task, cand), tolerance):
                continue
            if best is None or cur_cost - cost > best[0]:
                best = (cur_cost - cost, cand, conf, ev)
        if best is None:
            continue
        saving, cand, conf, ev = best
        monthly = monthly_usd(saving, days)
        if monthly < Decimal(str(min_saving_usd)):
            continue
        out.append(
            Advice(
                kind="model_switch",
                task=task,
                title=f"Route '{task}' to {cand} instead of {model}",
                detail=(
                    f"{int(cur['calls'])} calls in {days:g} days cost {usd_text(cur_cost)} on"
                    f" {model} and would cost {usd_text(cur_cost - saving)} on {cand}."
                    f" Error rate {ev['error_rate']:.1%} vs {cur['error_rate']:.1%};"
                    f" median latency {ev['latency_ms']:.0f} ms vs {cur['latency_ms']:.0f} ms"
                    f" ({'this task' if conf == 'high' else 'all tasks'},"
                    f" {int(ev['calls'])} calls)."
                ),
                monthly_saving_usd=monthly,
                confidence=conf,
                link="routing",
                model=model,
                alternative=cand,
            )
        )
    return out


def advise(
    events: pd.DataFrame,
    *,
    reprice: Reprice,
    candidates: Candidates,
    cached_rate_ratio: CachedRateRatio | None = None,
    quality: Quality | None = None,
    tolerance: Tolerance = Tolerance(),
    period_days: float | None = None,
    min_saving_usd: float = 1.0,
) -> AdviceReport:
    """Every kind of advice the columns allow; ``skipped`` says which kinds could not run."""
    days = period_days or observed_days(events)
    skipped: dict[str, str] = {}
    items = model_switches(
        events,
        reprice,
        candidates,
        quality=quality,
        tolerance=tolerance,
        period_days=days,
        min_saving_usd=min_saving_usd,
    )
    if "prompt_hash" not in events.columns:
        skipped["response_cache"] = "events have no prompt_hash column"
    else:
        items += response_cache(events, period_days=days, min_saving_usd=min_saving_usd)
    if not {"system_hash", "system_tokens"} <= set(events.columns):
        skipped["prompt_cache"] = "events have no system_hash/system_tokens columns"
    elif cached_rate_ratio is None:
        skipped["prompt_cache"] = "no cached_rate_ratio given"
    else:
        items += prompt_caching(
            events, reprice, cached_rate_ratio, period_days=days, min_saving_usd=min_saving_usd
        )
    items.sort(key=lambda a: a.monthly_saving_usd, reverse=True)
    return AdviceReport(items, skipped, days)
