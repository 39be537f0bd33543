"""Rate limits per user/org/app/model/provider, candidate skipping, and RateLimitExceeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.budgets import BudgetGuard, Decision, Estimate, admit_first, window
from core.control import Budget, RateLimit
from core.errors import (
    BudgetExceeded,
    ConfigError,
    PolicyError,
    ProviderError,
    RateLimitExceeded,
)
from core.ratelimits import rate_items
from core.state import MemoryState, RedisState, ResilientState, State
from core.types import PICO, ChatRequest, Message


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 16, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def tick(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def req(**kw: str) -> ChatRequest:
    return ChatRequest([Message("user", "hi")], **kw)  # type: ignore[arg-type]


PER_USER = RateLimit(id="per-user", scope="user", limit=2, window_s=60)
GPT, MINI, CLAUDE = (
    Estimate("gpt-4o", "openai", PICO, 100),
    Estimate("gpt-4o-mini", "openai", PICO // 10, 100),
    Estimate("claude-haiku-4-5", "anthropic", PICO // 5, 100),
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def admit(
    guard: BudgetGuard,
    r: ChatRequest,
    rates: list[RateLimit],
    est: Estimate = GPT,
    budgets: tuple[Budget, ...] = (),
) -> Decision:
    return guard.admit(r, est.model, est.provider, est.cost_picousd, est.tokens, budgets, rates)


def test_items_per_scope_and_value() -> None:
    limits = [
        RateLimit(id="u", scope="user"),
        RateLimit(id="o", scope="org", scope_value="acme", metric="tokens", limit=1000),
        RateLimit(id="a", scope="app"),
        RateLimit(id="m", scope="model", scope_value="gpt-4o"),
        RateLimit(id="p", scope="provider"),
        RateLimit(id="off", scope="user", enabled=False),
    ]
    r = req(user="alice", org="acme", app="key-1")
    items = {a.item.key: a.item.cost for a in rate_items(limits, r, "openai/gpt-4o", "openai", 321)}
    assert items == {
        "rl:u:user:alice": 1,
        "rl:o:org:acme": 321,
        "rl:a:app:key-1": 1,
        "rl:m:model:gpt-4o": 1,
        "rl:p:provider:openai": 1,
    }
    other = rate_items(limits, req(org="beta"), "gpt-4o-mini", "openai", 5)
    assert [a.item.key for a in other] == ["rl:p:provider:openai"]  # no user, app; not acme


def test_per_user_token_bucket(state: State, clock: Clock) -> None:
    guard = BudgetGuard(state, clock=clock)
    assert admit(guard, req(user="alice"), [PER_USER]).admitted
    assert admit(guard, req(user="alice"), [PER_USER]).admitted
    d = admit(guard, req(user="alice"), [PER_USER])
    assert not d.admitted and d.rate_limited is not None
    assert d.retry_after == pytest.approx(30.0)  # one request refills in 60 s / 2
    assert "rate limit 'per-user' (user=alice): 2 requests per 60 s" in d.reason
    assert admit(guard, req(user="bob"), [PER_USER]).admitted  # bob has his own bucket
    clock.tick(30)
    assert admit(guard, req(user="alice"), [PER_USER]).admitted


def test_named_value_applies_only_to_it(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    vip = RateLimit(id="acme-rpm", scope="org", scope_value="acme", limit=1, window_s=60)
    assert admit(guard, req(org="acme"), [vip]).admitted
    assert admit(guard, req(org="acme"), [vip]).rate_limited is not None
    assert admit(guard, req(org="beta"), [vip]).admitted
    assert admit(guard, req(org="beta"), [vip]).admitted


def test_sliding_window_and_token_metric(state: State, clock: Clock) -> None:
    guard = BudgetGuard(state, clock=clock)
    win = RateLimit(id="app-win", scope="app", limit=2, window_s=60, algorithm="sliding_window")
    assert admit(guard, req(app="k"), [win]).admitted
    clock.tick(10)
    assert admit(guard, req(app="k"), [win]).admitted
    clock.tick(10)
    assert admit(guard, req(app="k"), [win]).retry_after == pytest.approx(40.0)
    tpm = RateLimit(id="tpm", scope="provider", metric="tokens", limit=1000, window_s=60)
    big = Estimate("gpt-4o", "openai", PICO, 600)
    assert admit(guard, req(), [tpm], big).admitted
    assert admit(guard, req(), [tpm], big).retry_after == pytest.approx(12.0)  # 200 at 1000/min
    huge = admit(guard, req(), [tpm], Estimate("gpt-4o", "openai", PICO, 5000))
    assert huge.rate_limited is not None and huge.retry_after is None
    assert "more than the limit allows at once" in huge.reason


def test_rate_and_budget_refusals_take_nothing(clock: Clock) -> None:
    state = MemoryState("t:")
    guard = BudgetGuard(state, clock=clock)
    one = RateLimit(id="one", scope="user", limit=1, window_s=60)
    tiny = Budget(id="tiny", name="Tiny", limit_usd=Decimal("1.5"), action="block")
    w = window(tiny, clock.at)
    assert admit(guard, req(user="u"), [one], budgets=(tiny,)).admitted
    refused = admit(guard, req(user="u"), [one], budgets=(tiny,))
    assert refused.rate_limited is not None
    assert state.get_values([w.usd_key]) == [PICO]  # the rate refusal reserved nothing
    over = admit(guard, req(user="v"), [one], budgets=(tiny,))
    assert over.blocked is not None
    assert admit(guard, req(user="v"), [one], MINI, (tiny,)).admitted  # v's bucket untouched


def test_limited_candidate_is_skipped_for_the_next(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    per_model = RateLimit(id="per-model", scope="model", limit=1, window_s=60)
    first = admit_first(guard, req(), [GPT, MINI], [], [per_model])
    assert first.estimate == GPT and first.index == 0 and first.skipped == []
    second = admit_first(guard, req(), [GPT, MINI], [], [per_model])
    assert second.estimate == MINI and second.index == 1
    assert [m for m, _ in second.skipped] == ["gpt-4o"]
    assert "rate limit 'per-model' (model=gpt-4o)" in second.skipped[0][1]


def test_none_left_raises_rate_limited_with_smallest_retry_after(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    openai = RateLimit(id="openai", scope="provider", scope_value="openai", limit=1, window_s=60)
    anthropic = RateLimit(
        id="anthropic", scope="provider", scope_value="anthropic", limit=1, window_s=20
    )
    rates = [openai, anthropic]
    admit_first(guard, req(), [GPT], [], rates)
    admit_first(guard, req(), [CLAUDE], [], rates)
    clock.tick(5)
    with pytest.raises(RateLimitExceeded) as err:
        admit_first(guard, req(), [GPT, MINI, CLAUDE], [], rates)
    assert err.value.retry_after == pytest.approx(15.0)  # anthropic refills first
    assert "gpt-4o-mini" in str(err.value) and "rate limit 'anthropic'" in str(err.value)
    # our own refusal, not the provider's 429: a policy error, never retried
    assert isinstance(err.value, PolicyError) and not isinstance(err.value, ProviderError)


def test_over_budget_candidate_is_skipped_then_budget_exceeded(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    cap = Budget(id="cap", name="Cap", limit_usd=Decimal("0.5"), action="block")
    chosen = admit_first(guard, req(), [GPT, MINI], [cap], [])
    assert chosen.estimate == MINI and chosen.skipped[0][0] == "gpt-4o"
    guard.settle(chosen.decision, PICO // 2, 10)
    with pytest.raises(BudgetExceeded) as err:
        admit_first(guard, req(), [GPT, MINI], [cap], [])
    assert err.value.budget == "cap"


def test_degrade_reroutes_to_the_target(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    soft = Budget(
        id="soft", name="Soft", limit_usd=Decimal("1.5"), action="degrade", degrade_to="gpt-4o-mini"
    )
    targets = {"gpt-4o-mini": MINI}

    def to_target(d: Decision) -> Estimate:
        return targets[d.degrade_to or ""]

    first = admit_first(guard, req(), [GPT], [soft], [], degrade=to_target)
    assert first.estimate == GPT and not first.degraded
    again = admit_first(guard, req(), [GPT], [soft], [], degrade=to_target)
    assert again.estimate == MINI and again.degraded and again.degraded_from == "gpt-4o"
    same = admit_first(guard, req(), [GPT], [soft], [])  # no target: same model, degraded
    assert same.estimate == GPT and same.degraded and same.decision.over_soft


def test_invalid_rate_limit_raises_config_error(clock: Clock) -> None:
    guard = BudgetGuard(MemoryState("t:"), clock=clock)
    with pytest.raises(ConfigError) as err:
        admit(guard, req(user="u"), [RateLimit(id="bad", scope="galaxy")])
    assert err.value.field == "scope"


def test_fail_closed_state_refuses_like_a_rate_limit(clock: Clock) -> None:
    dead = ResilientState(RedisState("redis://127.0.0.1:1/0"), policy="closed")
    guard = BudgetGuard(dead, clock=clock)
    cap = Budget(id="cap", name="Cap", limit_usd=Decimal("5"), action="block")
    d = admit(guard, req(), [], budgets=(cap,))
    assert not d.admitted and d.rate_limited is not None
    assert d.retry_after == dead.retry_interval_s
    assert "live state unavailable" in d.reason
    open_guard = BudgetGuard(ResilientState(RedisState("redis://127.0.0.1:1/0")), clock=clock)
    assert admit(open_guard, req(), [], budgets=(cap,)).admitted  # fail-open: local counters
