"""Savings advice from the usage log, priced with the real catalog.

``advise`` (_advise.py) reaches prices only through callables; here they come from the
``Catalog`` (today's rates, base tier), the routing policies (which models a task may use)
and the quality scores (the control plane's model scores, else the catalog's 0-100 quality).
Response-cache and prompt-cache advice need logged prompts (``Settings.log_bodies_projects``):
the prompt's hash stands for the request, and a leading ``system:`` message for the prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import pandas as pd

from core import clock
from core.control import ModelScore, RoutingPolicy
from core.errors import UnpricedModel
from core.insights._advice_base import CachedRateRatio, Candidates, Quality, Reprice
from core.insights._advise import TOKEN_CLASSES, AdviceReport, advise
from core.pricing import Catalog, price
from core.types import Usage
from core.usage import Filters, Reader

COLUMNS = (
    "ts",
    "task",
    "model",
    "status",
    "error_type",
    "latency_ms",
    *TOKEN_CLASSES,
    "cost_picousd",
    "cache_hit",
    "ai_called",
)
USER_SPLIT = "chr(10) || 'user: '"  # core.call.record.prompt_text joins "role: content" lines
SYSTEM_PART = f"split_part(prompt, {USER_SPLIT}, 1)"
NO_PROMPTS = (
    "prompts are not logged (Settings.log_bodies_projects), so repeated requests"
    " and repeated system prompts cannot be found"
)


def catalog_reprice(catalog: Catalog, at: date | None = None) -> Reprice:
    """Picodollars of a bag of tokens at ``model``'s rates on ``at`` (None: unpriced)."""

    def reprice(model: str, tokens: Mapping[str, int]) -> int | None:
        try:
            row = catalog.lookup(model, at)
        except UnpricedModel:
            return None
        n = {k: int(tokens.get(k, 0)) for k in TOKEN_CLASSES}
        usage = Usage(
            n["input_tokens"],
            n["cached_input_tokens"],
            n["cache_write_tokens"],
            n["output_tokens"],
            n["reasoning_tokens"],
        )
        return price(usage, row).total

    return reprice


def catalog_cached_ratio(catalog: Catalog, at: date | None = None) -> CachedRateRatio:
    """Cached-input rate over input rate (None: unpriced or free input)."""

    def ratio(model: str) -> float | None:
        try:
            row = catalog.lookup(model, at)
        except UnpricedModel:
            return None
        return float(row.cached_input / row.input) if row.input > 0 else None

    return ratio


def policy_candidates(policies: Sequence[RoutingPolicy], events: pd.DataFrame) -> Candidates:
    """A task may use its policy's models (primary, fallbacks, degrade_to) and the models it
    already ran on; models seen only on other tasks are not proposed."""
    allowed: dict[str, set[str]] = {}
    for p in policies:
        allowed.setdefault(p.task, set()).update(
            m for m in (p.primary_model, *p.fallbacks, p.degrade_to) if m
        )
    seen = events[events["task"].notna() & events["model"].notna()]
    for task, models in seen.groupby("task")["model"].unique().items():
        allowed.setdefault(str(task), set()).update(str(m) for m in models)

    def candidates(task: str) -> list[str]:
        return sorted(allowed.get(task, set()))

    return candidates


def scored_quality(catalog: Catalog, scores: Sequence[ModelScore]) -> Quality:
    """Quality 0..1: the control plane's score, else the catalog's quality / 100."""
    mine = {s.model: float(s.quality) for s in scores}

    def quality(task: str, model: str) -> float | None:
        if model in mine:
            return mine[model]
        try:
            return catalog.lookup(model).quality / 100
        except UnpricedModel:
            return None

    return quality


def advice_events(reader: Reader, filters: Filters) -> tuple[pd.DataFrame, bool]:
    """The calls advice needs, with prompt and system-prompt hashes computed in DuckDB;
    second value: whether any prompt was logged."""
    where, params = filters.where()
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    sql = (
        f"SELECT {cols}, md5(prompt) AS prompt_hash,"
        f" CASE WHEN starts_with(prompt, 'system: ') THEN md5({SYSTEM_PART}) END AS system_hash"
        f" FROM events{where}"
    )
    events = reader.sql(sql, params)
    if not events["prompt_hash"].notna().any():
        return events.drop(columns=["prompt_hash", "system_hash"]), False
    events["system_tokens"] = _system_tokens(reader, filters, events)
    return events, True


def _system_tokens(reader: Reader, filters: Filters, events: pd.DataFrame) -> pd.Series:
    """Token count of each call's system prompt, counted once per distinct (model, prompt)."""
    from core.tokens import count_text

    where, params = filters.where()
    cond = "starts_with(prompt, 'system: ')"
    where = f"{where} AND {cond}" if where else f" WHERE {cond}"
    sql = (
        f"SELECT model, md5({SYSTEM_PART}) AS system_hash, any_value({SYSTEM_PART}) AS text"
        f" FROM events{where} GROUP BY ALL"
    )
    counts = {
        (str(r.model), str(r.system_hash)): count_text(str(r.model), str(r.text)[len("system: ") :])
        for r in reader.sql(sql, params).itertuples()
    }
    keys = zip(events["model"].astype(str), events["system_hash"].astype(str), strict=True)
    return pd.Series([counts.get(k, 0) for k in keys], index=events.index, dtype="int64")


def savings_advice(
    reader: Reader,
    catalog: Catalog,
    *,
    policies: Sequence[RoutingPolicy] = (),
    scores: Sequence[ModelScore] = (),
    filters: Filters | None = None,
    days: int = 30,
    now: datetime | None = None,
    min_saving_usd: float = 1.0,
) -> AdviceReport:
    """Model switches, response caching and prompt caching over the last ``days`` days
    (under ``filters``), each with its monthly saving at today's catalog rates."""
    at = now or clock.now()
    window = replace(filters or Filters(), start=at - timedelta(days=days), end=at)
    events, prompts = advice_events(reader, window)
    if events.empty:
        return AdviceReport([], {"all": f"no calls in the last {days} days"}, 0.0)
    today = at.date()
    report = advise(
        events,
        reprice=catalog_reprice(catalog, today),
        candidates=policy_candidates(policies, events),
        cached_rate_ratio=catalog_cached_ratio(catalog, today),
        quality=scored_quality(catalog, scores),
        min_saving_usd=min_saving_usd,
    )
    if not prompts:
        skipped = {k: NO_PROMPTS for k in ("response_cache", "prompt_cache")}
        return replace(report, skipped={**report.skipped, **skipped})
    return report
