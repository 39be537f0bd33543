"""RoutingEngine: strategy orders on hand-made catalogs, filters, breaker, reasons."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from core.control import RoutingPolicy, Weights
from core.errors import BadRequest, ContextWindowExceeded, RetryableError, UnpricedModel
from core.pricing import Catalog, PriceRow
from core.routing import DEFAULT_OUTPUT_TOKENS, RoutingEngine, usd_text
from core.state import MemoryState, RedisState
from core.types import ChatRequest, Message

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def row(
    name: str, provider: str, inp: str, out: str, quality: int = 50, window: int = 128_000
) -> PriceRow:
    return PriceRow.from_usd(
        name, provider, input=inp, output=out, quality=quality, context_window=window
    )


CATALOG = Catalog(
    [
        row("big", "openai", "2.50", "10", quality=90),
        row("mini", "openai", "0.15", "0.60", quality=70),
        row("haiku", "anthropic", "0.80", "4", quality=75, window=8_192),
        row("open", "local", "0.05", "0.05", quality=40),
        # cheap to read, dear to write / the reverse: which is cheaper depends on the request
        row("reader", "x", "0.10", "10"),
        row("writer", "x", "1", "1"),
    ]
)


def engine(clock: Clock | None = None, **kw: float) -> RoutingEngine:
    return RoutingEngine(CATALOG, MemoryState("t:"), clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def policy(
    strategy: str,
    primary: str = "big",
    fallbacks: tuple[str, ...] = ("mini", "haiku"),
    **kw: object,
) -> RoutingPolicy:
    return RoutingPolicy(
        task="summarize", primary_model=primary, fallbacks=fallbacks, strategy=strategy, **kw
    )  # type: ignore[arg-type]


def req(**kw: object) -> ChatRequest:
    kw.setdefault("task", "summarize")
    return ChatRequest(messages=[Message("user", "hello")], **kw)  # type: ignore[arg-type]


# ---- strategies -------------------------------------------------------------------------
def test_cheapest_orders_by_estimated_cost_and_says_so() -> None:
    choice = engine().route(req(), policy("cheapest"), prompt_tokens=1000)
    assert choice.models == ("mini", "haiku", "big")
    # 1000 prompt tokens at $0.15/M + 256 expected output tokens at $0.60/M = $0.0003036
    assert DEFAULT_OUTPUT_TOKENS == 256
    assert choice.reason == "mini: cheapest of 3 for task summarize (est $0.00030)"
    assert choice.strategy == "cheapest" and choice.skipped == ()


def test_cheapest_depends_on_this_requests_shape() -> None:
    e, p = engine(), policy("cheapest", "reader", ("writer",))
    long_prompt = e.route(req(max_tokens=10), p, prompt_tokens=10_000)
    long_answer = e.route(req(max_tokens=10_000), p, prompt_tokens=10)
    assert long_prompt.models == ("reader", "writer")
    assert long_answer.models == ("writer", "reader")
    # the policy's max_tokens is the expected output when the request has none
    assert e.route(req(), replace(p, max_tokens=10_000), prompt_tokens=10).models[0] == "writer"


def test_fastest_uses_ewma_and_unknown_latency_goes_last() -> None:
    e = engine(ewma_alpha=0.5)
    e.observe("big", 200, ok=True)
    e.observe("haiku", 900, ok=True)
    choice = e.route(req(), policy("fastest"), prompt_tokens=10)
    assert choice.models == ("big", "haiku", "mini")
    assert choice.reason == "big: fastest of 3 for task summarize (200 ms)"
    e.observe("big", 1800, ok=True)  # EWMA 0.5*1800 + 0.5*200 = 1000 > 900
    assert e.route(req(), policy("fastest"), prompt_tokens=10).models == ("haiku", "big", "mini")
    health = {h.model: h for h in e.health()}
    assert health["big"].ewma_latency_ms == pytest.approx(1000)
    assert health["mini"].ewma_latency_ms is None  # seen by routing, never called


def test_fastest_without_any_latency_keeps_policy_order() -> None:
    choice = engine().route(req(), policy("fastest"), prompt_tokens=10)
    assert choice.models == ("big", "mini", "haiku")
    assert "no latency data yet" in choice.reason


def test_quality_uses_catalog_scores_and_editable_overrides() -> None:
    e = engine()
    assert e.route(req(), policy("quality"), prompt_tokens=10).models == ("big", "haiku", "mini")
    choice = e.route(req(), policy("quality"), prompt_tokens=10, scores={"mini": 0.95})
    assert choice.models == ("mini", "big", "haiku")
    assert choice.reason == (
        "mini: highest quality of 3 for task summarize (quality 0.95 (score override))"
    )


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (Weights(cost=1, latency=0, quality=0), ("mini", "haiku", "big")),
        (Weights(cost=0, latency=0, quality=1), ("big", "haiku", "mini")),
        # unknown latency is the middle (0.5): ahead of the slowest known, behind the fastest
        (Weights(cost=0, latency=1, quality=0), ("haiku", "mini", "big")),
    ],
)
def test_balanced_follows_the_policy_weights(weights: Weights, expected: tuple[str, ...]) -> None:
    e = engine()
    e.observe("haiku", 100, ok=True)
    e.observe("big", 400, ok=True)  # mini unknown: counts as the middle (0.5)
    choice = e.route(req(), policy("balanced", weights=weights), prompt_tokens=1000)
    assert choice.models == expected
    assert choice.reason.startswith(f"{expected[0]}: best balanced score of 3 for task summarize")


def test_balanced_mixes_normalised_terms() -> None:
    # est cost (1000 in + 256 out): big $0.00506, mini $0.000304, haiku $0.001824
    # cost' = 1 - (c - min)/(max - min): mini 1, haiku 0.6805, big 0
    # quality' = (q - min)/(max - min): big 1, haiku 0.25, mini 0; latency unknown: all equal
    # weights 0.6/0/0.4: mini 0.6, haiku 0.508, big 0.4
    p = policy("balanced", weights=Weights(cost=0.6, latency=0, quality=0.4))
    choice = engine().route(req(), p, prompt_tokens=1000)
    assert choice.models == ("mini", "haiku", "big")
    assert "score 0.60" in choice.reason and "est $0.00030" in choice.reason
    # more weight on quality flips it: 0.3/0/0.7 -> big 0.7, haiku 0.379, mini 0.3
    p = policy("balanced", weights=Weights(cost=0.3, latency=0, quality=0.7))
    assert engine().route(req(), p, prompt_tokens=1000).models == ("big", "haiku", "mini")


def test_explicit_strategy_keeps_policy_order_and_degrade_to_is_last() -> None:
    p = policy("explicit", degrade_to="open")
    choice = engine().route(req(), p, prompt_tokens=10)
    assert choice.models == ("big", "mini", "haiku", "open")
    assert choice.reason == "big: primary for task summarize"
    # degrade_to stays last even when the strategy would rank it first
    assert engine().route(req(), replace(p, strategy="cheapest"), prompt_tokens=10).models == (
        "mini",
        "haiku",
        "big",
        "open",
    )


def test_optimize_cost_prefers_cheaper_whatever_the_strategy() -> None:
    for strategy in ("quality", "fastest", "balanced", "explicit"):
        choice = engine().route(req(optimize_cost=True), policy(strategy), prompt_tokens=1000)
        assert choice.models == ("mini", "haiku", "big"), strategy
        assert "optimize_cost" in choice.reason and f"over the {strategy} strategy" in choice.reason
    assert (
        "optimize_cost"
        in engine().route(req(optimize_cost=True), policy("cheapest"), prompt_tokens=1000).reason
    )


# ---- filters ----------------------------------------------------------------------------
def test_context_window_filter_skips_models_that_cannot_fit() -> None:
    e = engine()
    choice = e.route(
        req(max_tokens=500), policy("quality"), prompt_tokens=8000, scores={"haiku": 0.99}
    )
    assert choice.models == ("big", "mini")
    assert choice.skipped == (("haiku", "context window 8192 < 8500 tokens"),)
    assert choice.reason == "big: fallback, haiku context window 8192 < 8500 tokens"
    # fits exactly: kept
    assert "haiku" in e.route(req(max_tokens=192), policy("quality"), prompt_tokens=8000).models


def test_a_quality_route_reused_across_prompt_sizes_still_checks_windows_and_tiers() -> None:
    # The quality order reads neither cost nor latency, so one route serves every prompt that
    # fits every window and gets the same price tier of each candidate (PolicyPlan.fixed):
    # a prompt past a window, or past a tier that changes a quality, is ranked afresh.
    tiered = Catalog(
        [
            row("long", "x", "1", "1", quality=90),
            PriceRow.from_usd(
                "long", "x", input="2", output="2", quality=60, above_prompt_tokens=1_000
            ),
            row("short", "x", "1", "1", quality=80, window=4_000),
            row("mid", "x", "1", "1", quality=70),
        ]
    )
    e = RoutingEngine(tiered, MemoryState("t:"), clock=Clock())
    p = policy("quality", "long", ("short", "mid"))
    first = e.route(req(), p, prompt_tokens=10)
    assert first.models == ("long", "short", "mid")
    assert e.route(req(), p, prompt_tokens=900) is first  # reused: same rows, every one fits
    # max_tokens counts towards the window: 3,500 + 600 > 4,000 drops "short";
    big = e.route(req(max_tokens=600), p, prompt_tokens=900 + 2_600)
    assert big.models == ("mid", "long")  # and "long" at its second tier: quality 60
    assert big.skipped == (("short", "context window 4000 < 4100 tokens"),)
    # past 1,000 prompt tokens "long" is priced at its second tier: quality 60
    assert e.route(req(), p, prompt_tokens=1_001).models == ("short", "mid", "long")
    assert e.route(req(), p, prompt_tokens=10).models == ("long", "short", "mid")
    # an edited score is a new scores mapping: ranked afresh
    assert e.route(req(), p, prompt_tokens=10, scores={"mid": 0.99}).models[0] == "mid"


def test_no_candidate_fits_raises_context_window_exceeded() -> None:
    p = policy("cheapest", "haiku", ())
    with pytest.raises(ContextWindowExceeded) as info:
        engine().route(req(max_tokens=100), p, prompt_tokens=9000)
    assert info.value.window == 8192 and info.value.tokens == 9100
    assert "haiku" in info.value.message


def test_unpriced_models_are_skipped_in_policies_but_not_when_explicit() -> None:
    e = engine()
    choice = e.route(req(), policy("explicit", "mystery-model", ("mini",)), prompt_tokens=10)
    assert choice.models == ("mini",)
    assert choice.skipped == (("mystery-model", "unpriced (not in the price catalog)"),)
    with pytest.raises(UnpricedModel):
        e.route(req(), policy("cheapest", "mystery-model", ()), prompt_tokens=10)
    explicit = e.route(req(model="mystery-model", fallbacks=("mini",)), None, prompt_tokens=10)
    assert explicit.models == ("mystery-model", "mini")


# ---- explicit model path ----------------------------------------------------------------
def test_explicit_model_path_is_unchanged() -> None:
    e = engine()
    r = req(model="big", fallbacks=("haiku", "mini", "haiku"), task=None)
    choice = e.route(r, None, prompt_tokens=100_000)  # no context filtering here: the router's
    assert choice.models == ("big", "haiku", "mini")  # per-model count decides
    assert choice.reason == "big: requested" and choice.strategy == "explicit"
    # a model named on the request wins over the task's policy
    assert e.route(req(model="haiku"), policy("cheapest"), prompt_tokens=10).models == ("haiku",)


def test_no_model_and_no_policy_is_a_bad_request_naming_the_task() -> None:
    with pytest.raises(BadRequest, match="'translate'"):
        engine().route(req(task="translate"), None, prompt_tokens=10)
    with pytest.raises(BadRequest, match="model or a task"):
        engine().route(req(task=None), None, prompt_tokens=10)


def test_an_edited_policy_takes_effect() -> None:
    e = engine()
    p = policy("explicit")
    assert e.route(req(), p, prompt_tokens=10).models[0] == "big"
    assert e.route(req(), replace(p, primary_model="haiku"), prompt_tokens=10).models[0] == "haiku"


# ---- circuit breaker --------------------------------------------------------------------
def test_breaker_opens_after_n_consecutive_failures_and_reason_names_it() -> None:
    clock = Clock()
    e = engine(clock, breaker_threshold=3, breaker_cooldown_s=30)
    p = policy("explicit", fallbacks=("mini",))
    for _ in range(2):
        e.observe("big", 50, ok=False)
    e.observe("big", 50, ok=True)  # success resets the streak
    for _ in range(2):
        e.observe("big", 50, ok=False)
    assert e.route(req(), p, prompt_tokens=10).models == ("big", "mini")
    e.observe("big", 50, ok=False, error_retryable=False)  # a bad request does not count
    assert e.route(req(), p, prompt_tokens=10).models == ("big", "mini")
    e.observe("big", 50, ok=False)
    choice = e.route(req(), p, prompt_tokens=10)
    assert choice.models == ("mini",)
    assert choice.skipped == (("big", "circuit open (3 consecutive failures)"),)
    assert choice.reason == "mini: fallback, big circuit open (3 consecutive failures)"
    health = {h.model: h for h in e.health()}["big"]
    assert (health.calls, health.errors, health.breaker) == (7, 6, "open")


def test_breaker_half_open_allows_a_single_probe_then_closes_on_success() -> None:
    clock = Clock()
    e = engine(clock, breaker_threshold=2, breaker_cooldown_s=30)
    p = policy("explicit", fallbacks=("mini",))
    e.observe("big", 50, ok=False)
    e.observe("big", 50, ok=False)
    clock.t += 29
    assert e.route(req(), p, prompt_tokens=10).models == ("mini",)
    clock.t += 2  # cooldown over: one caller gets the probe
    probe = e.route(req(), p, prompt_tokens=10)
    assert probe.models == ("big", "mini") and "probe" in probe.reason
    assert e.route(req(), p, prompt_tokens=10).models == ("mini",)  # only one probe
    e.observe("big", 80, ok=True)
    closed = e.route(req(), p, prompt_tokens=10)
    assert closed.models == ("big", "mini") and closed.reason == "big: primary for task summarize"


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    e = engine(clock, breaker_threshold=1, breaker_cooldown_s=10)
    p = policy("explicit", fallbacks=("mini",))
    e.observe("big", 50, ok=False)
    clock.t += 10
    assert e.route(req(), p, prompt_tokens=10).models[0] == "big"
    e.observe("big", 50, ok=False)
    clock.t += 9
    assert e.route(req(), p, prompt_tokens=10).models == ("mini",)


def test_every_candidate_open_raises_retryable() -> None:
    e = engine(breaker_threshold=1)
    e.observe("big", 50, ok=False)
    with pytest.raises(RetryableError, match="circuit open"):
        e.route(req(model="big", task=None), None, prompt_tokens=10)
    choice = e.route(req(model="big", fallbacks=("mini",), task=None), None, prompt_tokens=10)
    assert choice.models == ("mini",) and choice.reason.startswith("mini: fallback, big circuit")


def test_breaker_is_shared_through_redis(redis_url: str) -> None:
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    a_state, b_state = RedisState(redis_url, prefix), RedisState(redis_url, prefix)
    clock = Clock()
    a = RoutingEngine(CATALOG, a_state, breaker_threshold=2, breaker_cooldown_s=30, clock=clock)
    b = RoutingEngine(CATALOG, b_state, breaker_threshold=2, breaker_cooldown_s=30, clock=clock)
    try:
        p = policy("explicit", fallbacks=("mini",))
        a.observe("big", 50, ok=False)
        a.observe("big", 50, ok=False)
        choice = b.route(req(), p, prompt_tokens=10)  # another process sees it open
        assert choice.models == ("mini",) and choice.skipped == (("big", "circuit open"),)
        clock.t += 31
        assert a.route(req(), p, prompt_tokens=10).models[0] == "big"  # a takes the probe
        assert b.route(req(), p, prompt_tokens=10).models == ("mini",)
        a.observe("big", 40, ok=True)
        assert b.route(req(), p, prompt_tokens=10).models == ("big", "mini")
    finally:
        a_state.close()
        b_state.close()


def test_aliases_and_provider_prefixes_share_one_breaker() -> None:
    cat = Catalog(
        [PriceRow.from_usd("gpt-x", "openai", input="1", output="1", aliases=("gpt-x-2025",))]
    )
    e = RoutingEngine(cat, MemoryState("t:"), breaker_threshold=1, clock=Clock())
    e.observe("openai/gpt-x", 50, ok=False)
    with pytest.raises(RetryableError):
        e.route(req(model="gpt-x-2025", task=None), None, prompt_tokens=10)


# ---- text -------------------------------------------------------------------------------
def test_explain_degrade_and_money_text() -> None:
    text = engine().explain_degrade("gpt-4o-mini", "gpt-4o", "org acme at 93% of monthly budget")
    assert text == "gpt-4o-mini: org acme at 93% of monthly budget, degraded from gpt-4o"
    assert usd_text(420_000_000) == "$0.00042"
    assert usd_text(13 * 10**9) == "$0.013"
    assert usd_text(1_250_000_000_000) == "$1.25"
    assert usd_text(0) == "$0"
