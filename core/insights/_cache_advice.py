"""Caching advice: repeated identical requests (response cache) and repeated long system
prompts (provider prompt caching).

Response cache: events carry ``prompt_hash`` (hash of the normalised request). Within one
(task, model, prompt_hash) group, every call after the first that was not a cache hit could
have been served from the cache (optionally only when it came within ``ttl_s`` of the previous
call). The saving is what those calls cost.

Prompt caching: events carry ``system_hash`` and ``system_tokens``. A call repeating the same
system prompt (>= ``min_prefix_tokens``, providers' minimum) within ``ttl_s`` (providers keep a
prefix about 5 minutes) could read it from the provider's prompt cache: its system tokens not
already billed as cached input would cost ``cached_rate_ratio(model)`` of the input rate.
Cache-write surcharges (e.g. 1.25x on the first call) are not subtracted.
"""

from __future__ import annotations

import pandas as pd

from core.insights._advice_base import (
    Advice,
    CachedRateRatio,
    Reprice,
    monthly_usd,
    observed_days,
    usd_text,
)

MIN_SHARE = 0.05  # response cache: advise when >= 5% of a task's calls are avoidable repeats


def _repeats(frame: pd.DataFrame, keys: list[str], ttl_s: float | None) -> pd.Series:
    """True for each call that follows an earlier call of its group (within ttl_s)."""
    ts = pd.to_datetime(frame["ts"])
    prev = ts.groupby([frame[k] for k in keys], sort=False).shift()
    rep = prev.notna()
    if ttl_s is not None:
        rep &= (ts - prev) <= pd.Timedelta(seconds=ttl_s)
    return rep


def response_cache(
    events: pd.DataFrame,
    *,
    ttl_s: float | None = None,
    period_days: float | None = None,
    min_saving_usd: float = 1.0,
) -> list[Advice]:
    ev = events[events["task"].notna() & events["prompt_hash"].notna()].sort_values("ts")
    if ev.empty:
        return []
    days = period_days or observed_days(events)
    hit = ev["cache_hit"].fillna(False).astype(bool) if "cache_hit" in ev else False
    avoidable = _repeats(ev, ["task", "model", "prompt_hash"], ttl_s) & ~hit
    per_task = pd.DataFrame(
        {
            "calls": events[events["task"].notna()].groupby("task").size(),
            "avoidable": avoidable.groupby(ev["task"]).sum(),
        }
    ).fillna(0)
    # the avoidable picodollars per task in Python ints: a pandas sum wrapped past 2**63, and
    # its row (a float, or a numpy int read as one) rounded the text's cents past 2**53 pUSD
    cost: dict[object, int] = {}
    for task, pico, avoid in zip(ev["task"], ev["cost_picousd"], avoidable, strict=True):
        if avoid and not pd.isna(pico):
            cost[task] = cost.get(task, 0) + int(pico)
    out = []
    for task, row in per_task.iterrows():
        share = row["avoidable"] / row["calls"] if row["calls"] else 0.0
        spent = cost.get(task, 0)
        monthly = monthly_usd(spent, days)
        if share < MIN_SHARE or monthly < min_saving_usd:
            continue
        out.append(
            Advice(
                kind="response_cache",
                task=str(task),
                title=f"Cache repeated '{task}' requests",
                detail=(
                    f"{int(row['avoidable'])} of {int(row['calls'])} calls ({share:.0%}) repeated"
                    f" an identical earlier request and were not cache hits; they cost"
                    f" {usd_text(spent)} in {days:g} days. Turn on the response cache"
                    " (or lengthen its TTL) for this task."
                ),
                monthly_saving_usd=monthly,
                confidence="medium" if row["avoidable"] >= 50 else "low",
                link="routing",
            )
        )
    return out


def prompt_caching(
    events: pd.DataFrame,
    reprice: Reprice,
    cached_rate_ratio: CachedRateRatio,
    *,
    ttl_s: float | None = 300.0,
    min_prefix_tokens: int = 1024,
    period_days: float | None = None,
    min_saving_usd: float = 1.0,
) -> list[Advice]:
    ev = events[
        events["task"].notna()
        & events["model"].notna()
        & events["system_hash"].notna()
        & (events["system_tokens"].fillna(0) >= min_prefix_tokens)
    ]
    if "cache_hit" in ev.columns:
        ev = ev[~ev["cache_hit"].fillna(False).astype(bool)]
    ev = ev.sort_values("ts")
    if ev.empty:
        return []
    days = period_days or observed_days(events)
    rep = _repeats(ev, ["task", "model", "system_hash"], ttl_s)
    cached = ev["cached_input_tokens"].fillna(0) if "cached_input_tokens" in ev else 0
    uncached = (ev["system_tokens"].fillna(0) - cached).clip(lower=0).where(rep, 0)
    table = pd.DataFrame(
        {"task": ev["task"], "model": ev["model"], "tokens": uncached, "calls": rep.astype(int)}
    )
    out = []
    for rec in table.groupby(["task", "model"]).sum().reset_index().to_dict("records"):
        task, model, tokens = str(rec["task"]), str(rec["model"]), int(rec["tokens"])
        ratio = cached_rate_ratio(model)
        if ratio is None or ratio >= 1 or tokens <= 0:
            continue
        full = reprice(model, {"input_tokens": tokens})
        if full is None:
            continue
        saving = full * (1 - ratio)
        monthly = monthly_usd(saving, days)
        if monthly < min_saving_usd:
            continue
        out.append(
            Advice(
                kind="prompt_cache",
                task=task,
                title=f"Use prompt caching for '{task}' on {model}",
                detail=(
                    f"{int(rec['calls'])} calls repeated a system prompt of"
                    f" {min_prefix_tokens}+ tokens within {ttl_s or 'any'} s;"
                    f" {tokens:,} of those tokens were billed at the full input"
                    f" rate ({usd_text(full)}); cached they cost {ratio:.0%} of that."
                ),
                monthly_saving_usd=monthly,
                confidence="medium",
                link="routing",
                model=model,
            )
        )
    return out
