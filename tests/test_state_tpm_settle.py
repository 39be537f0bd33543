"""Tokens-per-minute limits settle to the tokens used, on every live-state backend.

Admission charges a settling rate item (``RateItem.settles``: a token-metric limit) the call's
reservation; ``apply_deltas(deltas, fixes)`` corrects the charge to the actual tokens in the same
step as the budget deltas: a token bucket gets the difference back (within [0, capacity]), a
sliding window's entry becomes the actual. MemoryState, SharedState (SQLite), RedisState (a real
Redis, its own prefix) and ResilientState (healthy, and with the charge taken in its fallback),
then the budget guard and the x-ratelimit / ``GET /limits`` levels read back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core import clock
from core.budgets import BudgetGuard
from core.control import RateLimit, VirtualKey
from core.gateway._limits import headers
from core.ratelimits import rate_key
from core.state import (
    BudgetItem,
    MemoryState,
    RateItem,
    RedisState,
    ResilientState,
    SharedState,
    rate_levels,
)
from core.types import ChatRequest, Message

T0 = 1_700_000_000.0
TPM = 1_000  # tokens a minute


@pytest.fixture(params=["memory", "shared", "redis", "resilient"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryState("t:")
        return
    if request.param == "shared":
        shared = SharedState(tmp_path, "t:")
        yield shared
        shared.close()
        return
    url = request.getfixturevalue("redis_url")
    primary = RedisState(url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=2.0)
    st: Any = primary
    if request.param == "resilient":
        st = ResilientState(primary, MemoryState(primary.prefix))
    yield st
    st.close()


def item(alg: str, cost: int, key: str = "tpm") -> RateItem:
    return RateItem(key, alg, TPM, 60.0, None, cost, True)  # type: ignore[arg-type]


ALGS = ["token_bucket", "sliding_window"]


def fits(state: Any, alg: str, cost: int, at: float = T0) -> bool:
    """Whether ``cost`` fits now; a probe that takes nothing (settled straight back to 0)."""
    adm = state.admit([item(alg, cost)], [], at)
    if adm.ok:
        state.apply_deltas([], [(c, 0) for c in adm.charges], at)
    return bool(adm.ok)


@pytest.mark.parametrize("alg", ALGS)
def test_a_reservation_settles_to_the_tokens_used(state: Any, alg: str) -> None:
    for n in range(20):  # 20 x 400 reserved, 20 x 10 used: without settling the 3rd is refused
        adm = state.admit([item(alg, 400)], [], T0)
        assert adm.ok, n
        (charge,) = adm.charges
        assert charge.item.cost == 400
        assert state.apply_deltas([], [(charge, 10)], T0) == []
    assert fits(state, alg, TPM - 200)  # 200 used: 800 left at the same instant
    assert not fits(state, alg, TPM - 199)


@pytest.mark.parametrize("alg", ALGS)
def test_the_fix_rides_with_the_budget_deltas(state: Any, alg: str) -> None:
    adm = state.admit([item(alg, 500)], [BudgetItem("b:1", None, 700)], T0)
    assert adm.ok
    assert state.apply_deltas([("b:1", -600, None)], [(adm.charges[0], 30)], T0) == [100]
    assert fits(state, alg, TPM - 30) and not fits(state, alg, TPM - 29)


@pytest.mark.parametrize("alg", ALGS)
def test_more_than_reserved_is_charged_never_below_zero(state: Any, alg: str) -> None:
    adm = state.admit([item(alg, 100)], [], T0)
    state.apply_deltas([], [(adm.charges[0], 300)], T0)
    assert fits(state, alg, TPM - 300) and not fits(state, alg, TPM - 299)
    adm = state.admit([item(alg, 600)], [], T0)
    state.apply_deltas([], [(adm.charges[0], 5_000)], T0)  # far past the limit
    assert not fits(state, alg, 1)
    if alg == "token_bucket":  # empty, not in debt: a minute refills it whole
        assert fits(state, alg, TPM, T0 + 60.0)
    else:  # the window forgets the call a minute on
        assert fits(state, alg, TPM, T0 + 60.5)


def test_a_token_bucket_refund_never_exceeds_its_capacity(state: Any) -> None:
    adm = state.admit([item("token_bucket", 900)], [], T0)
    state.apply_deltas([], [(adm.charges[0], 0)], T0 + 120.0)  # refilled long ago
    adm = state.admit([item("token_bucket", TPM)], [], T0 + 120.0)
    assert adm.ok  # full, and no more than full:
    assert not fits(state, "token_bucket", 1, T0 + 120.0)


def test_a_window_entry_that_left_the_window_is_not_corrected(state: Any) -> None:
    adm = state.admit([item("sliding_window", 700)], [], T0)
    assert state.admit([item("sliding_window", 900)], [], T0 + 61.0).ok  # the 700 left
    state.apply_deltas([], [(adm.charges[0], 0)], T0 + 61.0)  # no refund of a gone entry
    assert fits(state, "sliding_window", 100, T0 + 61.0)
    assert not fits(state, "sliding_window", 101, T0 + 61.0)


@pytest.mark.parametrize("alg", ALGS)
def test_a_refused_admission_charges_nothing(state: Any, alg: str) -> None:
    adm = state.admit([item(alg, 400)], [BudgetItem("b:2", 10, 50)], T0)
    assert not adm.ok and adm.reason == "budget" and adm.charges == ()
    adm = state.admit([item(alg, 400, "a"), item(alg, TPM + 1, "b")], [], T0)
    assert not adm.ok and adm.reason == "rate" and adm.charges == ()
    assert fits(state, alg, TPM, T0)
    assert fits(state, alg, TPM, T0)  # the probes took nothing either


@pytest.mark.parametrize("alg", ALGS)
def test_request_limits_do_not_settle(state: Any, alg: str) -> None:
    adm = state.admit([RateItem("rpm", alg, 5, 60.0)], [], T0)  # type: ignore[arg-type]
    assert adm.ok and adm.charges == ()


def test_a_charge_taken_in_the_fallback_settles_there(redis_url: str) -> None:
    primary = RedisState("redis://127.0.0.1:1/0", "t:", socket_timeout=0.05)  # nobody there
    st = ResilientState(primary, MemoryState("t:"))
    try:
        adm = st.admit([item("sliding_window", 800)], [], T0)  # Redis away: the fallback
        assert adm.ok and adm.charges[0].owner is st.fallback
        st.apply_deltas([], [(adm.charges[0], 50)], T0)
        assert fits(st, "sliding_window", TPM - 50) and not fits(st, "sliding_window", TPM - 49)
    finally:
        st.close()


# -- through the budget guard, read back as the gateway and GET /limits do -------------------
KEY = VirtualKey(name="web", prefix="sk-cl-abcdef", key_hash="0" * 64)


def limit(alg: str) -> RateLimit:
    return RateLimit(
        id=f"key:web:tpm:{alg}",
        scope="key",
        scope_value="web",
        metric="tokens",
        limit=200_000,
        window_s=60,
        algorithm=alg,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("alg", ALGS)
def test_guard_settles_tpm_and_levels_show_actual_use(state: Any, alg: str) -> None:
    rl = limit(alg)
    now = datetime.fromtimestamp(T0, UTC)
    guard = BudgetGuard(state, clock=lambda: now)
    req = ChatRequest(model="gpt-4o-mini", messages=[Message("user", "hi")], key="web")
    with clock.frozen(now):  # the levels are read at the guard's time
        _thirty_calls(guard, state, rl, req)


def _thirty_calls(guard: BudgetGuard, state: Any, rl: RateLimit, req: ChatRequest) -> None:
    for n in range(30):  # 30 x (14 + 16,384) reserved: 12 would fill 200,000
        d = guard.admit(req, "gpt-4o-mini", "openai", 1_000, 14 + 16_384, (), (rl,))
        assert d.admitted, (n, d.reason)
        guard.settle(d, 900, 98)
    refused = guard.admit(req, "gpt-4o-mini", "openai", 0, 0, (), (rl,))
    guard.release(refused)
    used = 30 * 98
    if isinstance(state, MemoryState | SharedState) or (
        isinstance(state, ResilientState) and state.healthy
    ):
        levels = rate_levels(state, rl)
        assert [(b.value, round(b.used)) for b in levels] == [("web", used)]
    got = dict(headers(state, [rl], KEY))
    assert got[b"x-ratelimit-remaining-tokens"] == str(200_000 - used).encode()


def test_a_released_reservation_charges_nothing(state: Any) -> None:
    rl = limit("sliding_window")
    now = datetime.fromtimestamp(T0, UTC)
    guard = BudgetGuard(state, clock=lambda: now)
    req = ChatRequest(model="gpt-4o-mini", messages=[Message("user", "hi")], key="web")
    d = guard.admit(req, "gpt-4o-mini", "openai", 1_000, 16_398, (), (rl,))
    assert d.admitted and d.charges
    guard.release(d)  # the call failed before anything was billed
    with clock.frozen(now):
        got = dict(headers(state, [rl], KEY))
    assert got[b"x-ratelimit-remaining-tokens"] == b"200000"


def test_rate_key_is_the_bucket() -> None:
    assert rate_key(limit("token_bucket"), "web") == "rl:key:web:tpm:token_bucket:key:web"
