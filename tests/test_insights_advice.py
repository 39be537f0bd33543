"""Savings advice with a hand-written price table: the saving must equal hand repricing."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pandas as pd
import pytest

from core.insights import Tolerance, advise, model_switches, prompt_caching, response_cache

PICO = 10**12
T0 = pd.Timestamp("2025-03-01 00:00", tz="UTC")
DAYS = 10
# picodollars per token ($2.50 / M input = 2_500_000 pUSD per token)
PRICES = {
    "big": {"input_tokens": 2_500_000, "cached_input_tokens": 250_000, "output_tokens": 10_000_000},
    "small": {"input_tokens": 150_000, "cached_input_tokens": 15_000, "output_tokens": 600_000},
    "flaky": {"input_tokens": 100_000, "cached_input_tokens": 10_000, "output_tokens": 400_000},
}
CANDIDATES = {"summarize": ["big", "small", "flaky", "mystery"], "chat": ["small"]}


def reprice(model: str, tokens: Mapping[str, int]) -> int | None:
    price = PRICES.get(model)
    if price is None:
        return None  # unpriced, never $0
    return sum(n * price.get(cls, price["output_tokens"]) for cls, n in tokens.items())


def candidates(task: str) -> list[str]:
    return CANDIDATES.get(task, [])


def calls(
    task: str,
    model: str,
    n: int,
    *,
    input_tokens: int = 10_000,
    output_tokens: int = 200,
    latency_ms: float = 800.0,
    error_every: int = 0,
    cache_hit: bool = False,
    spacing_s: float | None = None,
    **extra: object,
) -> pd.DataFrame:
    """n calls spread evenly over DAYS days (or ``spacing_s`` apart)."""
    step = pd.Timedelta(seconds=spacing_s) if spacing_s else pd.Timedelta(days=DAYS) / n
    price = PRICES.get(model, PRICES["big"])
    cost = (
        0
        if cache_hit
        else input_tokens * price["input_tokens"] + output_tokens * price["output_tokens"]
    )
    rows = [
        {
            "ts": T0 + i * step,
            "org": "acme",
            "project": "p",
            "user": "u",
            "task": task,
            "model": model,
            "provider": "x",
            "status": "error" if error_every and i % error_every == 0 else "ok",
            "input_tokens": input_tokens,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": output_tokens,
            "reasoning_tokens": 0,
            "cost_picousd": cost,
            "latency_ms": latency_ms,
            "cache_hit": cache_hit,
        }
        for i in range(n)
    ]
    frame = pd.DataFrame(rows)
    for col, value in extra.items():
        frame[col] = value
    return frame


def frame(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


def base_events(**small: object) -> pd.DataFrame:
    return frame(
        calls("summarize", "big", 200),
        calls("summarize", "big", 20, cache_hit=True),  # cache hits: not billed, not repriced
        calls("summarize", "small", 100, latency_ms=600.0, **small),  # type: ignore[arg-type]
        calls("summarize", "flaky", 50, error_every=3),
    )


def test_model_switch_saving_equals_hand_repricing() -> None:
    found = model_switches(base_events(), reprice, candidates)
    assert len(found) == 1
    a = found[0]
    assert (a.kind, a.task, a.model, a.alternative) == ("model_switch", "summarize", "big", "small")
    # 200 billed calls x (10_000 in, 200 out): big $5.40, small $0.324 over 10 days
    big = 200 * 10_000 * 2_500_000 + 200 * 200 * 10_000_000
    small = 200 * 10_000 * 150_000 + 200 * 200 * 600_000
    assert (big, small) == (5_400_000_000_000, 324_000_000_000)
    expected = (Decimal(big - small) / PICO * 30 / DAYS).quantize(Decimal("0.01"))
    assert a.monthly_saving_usd == expected == Decimal("15.23")
    assert a.confidence == "high" and a.link == "routing"
    assert "flaky" not in a.title  # cheapest, but 34% errors


@pytest.mark.parametrize(
    "small",
    [{"error_every": 5}, {"latency_ms": 2400.0}],
    ids=["errors", "slow"],
)
def test_unreliable_or_slow_candidate_is_not_suggested(small: dict[str, object]) -> None:
    events = frame(
        calls("summarize", "big", 200),
        calls("summarize", "small", 100, **small),  # type: ignore[arg-type]
    )
    assert model_switches(events, reprice, candidates) == []


def test_quality_score_gates_the_switch() -> None:
    events = base_events()
    worse = model_switches(
        events, reprice, candidates, quality=lambda t, m: {"big": 0.9, "small": 0.7}.get(m)
    )
    same = model_switches(
        events, reprice, candidates, quality=lambda t, m: {"big": 0.9, "small": 0.89}.get(m)
    )
    assert worse == [] and len(same) == 1
    observed = events.assign(quality_score=events["model"].map({"big": 0.9, "small": 0.5}))
    assert model_switches(observed, reprice, candidates) == []


def test_evidence_from_other_tasks_is_medium_and_none_is_no_advice() -> None:
    elsewhere = frame(calls("summarize", "big", 200), calls("chat", "small", 100))
    found = model_switches(elsewhere, reprice, candidates)
    assert [(a.task, a.alternative, a.confidence) for a in found] == [
        ("summarize", "small", "medium")
    ]
    unseen = calls("summarize", "big", 200)
    assert model_switches(unseen, reprice, candidates) == []
    few = frame(unseen, calls("summarize", "small", 5))
    assert model_switches(few, reprice, candidates, tolerance=Tolerance(min_calls=20)) == []


def test_response_cache_counts_repeats_that_missed() -> None:
    groups = []
    for h in range(10):
        one = calls(
            "faq",
            "small",
            5,
            input_tokens=500_000,
            output_tokens=0,
            spacing_s=60,
            prompt_hash=f"h{h}",
        )
        one["ts"] += pd.Timedelta(hours=h * 20)
        one.loc[2, ["cache_hit", "cost_picousd"]] = [True, 0]
        groups.append(one)
    events = frame(*groups)
    found = response_cache(events, period_days=DAYS)
    assert len(found) == 1 and found[0].kind == "response_cache"
    # per group: calls 2, 4, 5 missed although an identical request came before: 30 x $0.075
    per_call = 500_000 * 150_000
    expected = (Decimal(30 * per_call) / PICO * 30 / DAYS).quantize(Decimal("0.01"))
    assert found[0].monthly_saving_usd == expected == Decimal("6.75")
    assert "30 of 50 calls (60%)" in found[0].detail
    assert response_cache(events, ttl_s=30, period_days=DAYS) == []  # repeats came 60 s apart


def test_prompt_caching_saving_at_the_cached_rate() -> None:
    hot = calls(
        "agent",
        "big",
        40,
        input_tokens=31_000,
        spacing_s=30,
        system_hash="S1",
        system_tokens=30_000,
    )
    cold = calls(
        "agent",
        "big",
        10,
        input_tokens=31_000,
        spacing_s=3600,
        system_hash="S2",
        system_tokens=30_000,
    )
    short = calls(
        "agent", "big", 40, input_tokens=600, spacing_s=30, system_hash="S3", system_tokens=500
    )
    events = frame(hot, cold, short)
    found = prompt_caching(events, reprice, lambda m: 0.1, period_days=DAYS)
    assert len(found) == 1 and (found[0].task, found[0].model) == ("agent", "big")
    full = 39 * 30_000 * 2_500_000  # 39 repeats within 5 min, S2 too far apart, S3 too short
    expected = (Decimal(full) * Decimal("0.9") / PICO * 30 / DAYS).quantize(Decimal("0.01"))
    assert found[0].monthly_saving_usd == expected == Decimal("7.90")
    assert prompt_caching(events, reprice, lambda m: None, period_days=DAYS) == []


def test_advise_reports_every_kind_and_says_what_it_skipped() -> None:
    events = base_events()
    report = advise(events, reprice=reprice, candidates=candidates)
    assert [a.kind for a in report.items] == ["model_switch"]
    assert set(report.skipped) == {"response_cache", "prompt_cache"}
    assert "prompt_hash" in report.skipped["response_cache"]
    assert report.period_days == DAYS and report.total_monthly_saving_usd == Decimal("15.23")
    hashed = events.assign(prompt_hash=None, system_hash=None, system_tokens=0)
    report = advise(hashed, reprice=reprice, candidates=candidates)
    assert report.skipped == {"prompt_cache": "no cached_rate_ratio given"}


def test_response_cache_advice_states_the_exact_cents_past_2_53(costline_home) -> None:
    """Repeats costing $12,345.674999999999 read '$12,345.67': the per-task sum is exact
    integer picodollars (a numpy/float sum of it read $12,345.68)."""
    from datetime import UTC, datetime, timedelta

    from core.usage import Reader, UsageEvent, UsageLog

    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    costs = [10**12, 12_345_674_999_999_000, 999]  # the first is not a repeat
    with UsageLog(costline_home, compact_threshold=0) as log:
        log.append_many(
            [
                UsageEvent(request_id=f"r{i}", ts=t0 + timedelta(minutes=i), org="acme",
                           task="summarise", model="gpt-4o", provider="openai",
                           prompt="same question", cost_picousd=c, source="test")
                for i, c in enumerate(costs)
            ]
        )  # fmt: skip
    with Reader(costline_home) as reader:
        events = reader.sql("SELECT *, md5(prompt) AS prompt_hash FROM events")  # as advise
    (found,) = response_cache(events, period_days=30)
    assert "they cost $12,345.67 in 30 days" in found.detail, found.detail
    assert found.monthly_saving_usd == Decimal("12345.67")
