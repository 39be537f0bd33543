"""Spend controls through the real Router (2/3): budgets.

Scopes, USD and token limits, hard blocks, soft-limit degradation, critical headroom, $0
models, "reset now" and threshold alerts; the hard-block test also runs with the control
plane on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from test_controls_support import (
    ADMIN,
    ENGINEER,
    ask,
    events,
    make_plane,
    make_router,
    sync,
    usd,
    window_label,
)

from core import tokens
from core.control import Budget, ControlPlane, PriceOverride, RoutingPolicy
from core.errors import BudgetExceeded
from core.pricing import max_cost
from core.router import Router
from core.state import MemoryState
from core.types import ChatRequest

MATCH = dict(org="acme", project="web", user="ann", task="summarize")
OTHER = dict(org="globex", project="api", user="bob", task="other")
PROMPT = "Summarise this quarter's cloud bill in one paragraph."
OUT = 100  # max_tokens of every call here: a known reservation


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = make_plane()
    p.upsert_policy(RoutingPolicy(task="summarize", primary_model="dryrun-large"), ENGINEER)
    p.upsert_policy(RoutingPolicy(task="other", primary_model="dryrun-small"), ENGINEER)
    yield p
    p.close()


@pytest.fixture
def router(plane: ControlPlane) -> Iterator[Router]:
    r = make_router(plane)
    yield r
    r.close()


def call(text: str = PROMPT, **kw: Any) -> ChatRequest:
    kw.setdefault("max_tokens", OUT)
    return ask(text, **kw)


def estimate(router: Router, model: str, req: ChatRequest) -> int:
    """The reservation the router makes for ``req`` on ``model`` (picodollars)."""
    n = tokens.count_messages(model, req.messages).tokens
    return max_cost(router.catalog.lookup(model, prompt_tokens=n), n, req.max_tokens or 0)


def budget(plane: ControlPlane, id: str, **kw: Any) -> Budget:
    kw.setdefault("name", id)
    kw.setdefault("action", "block")
    return plane.upsert_budget(Budget(id=id, **kw), ENGINEER)


def spend_until_blocked(router: Router, limit: int = 200, **kw: Any) -> tuple[int, BudgetExceeded]:
    """Distinct calls until one is blocked: (picodollars spent, the error)."""
    spent = 0
    for i in range(limit):
        try:
            spent += router.complete(call(f"{PROMPT} #{i}", **kw)).cost.total
        except BudgetExceeded as exc:
            return spent, exc
    raise AssertionError(f"not blocked after {limit} calls ({spent} pUSD)")


def status(router: Router, budget_id: str) -> Any:
    assert router.controls is not None
    snap = router.controls.snapshot()
    return next(s for s in router.controls.guard.status(snap.budgets)
                if s.budget.id == budget_id)


# ---- scopes -------------------------------------------------------------------------------

@pytest.mark.parametrize(("scope", "value", "other"), [
    ("global", None, None),
    ("org", "acme", OTHER),
    ("project", "web", OTHER),
    ("user", "ann", OTHER),
    ("task", "summarize", OTHER),
    ("model", "dryrun-large", OTHER),  # OTHER routes to dryrun-small
    ("provider", "dryrun", None),
])
def test_each_scope_blocks_the_requests_it_matches_and_only_those(plane, router, scope, value,
                                                                   other):
    budget(plane, "tight", scope=scope, scope_value=value, limit_usd=Decimal("0.000001"))
    budget(plane, "elsewhere", scope="org", scope_value="initech", limit_usd=Decimal("0"))
    sync(router)
    with pytest.raises(BudgetExceeded) as err:
        router.complete(call(**MATCH))
    assert err.value.budget == "tight"
    if other is not None:
        assert router.complete(call(**other)).cost.total > 0
    ev = events(router)
    assert ev.status.iloc[0] == "blocked" and ev.error_type.iloc[0] == "BudgetExceeded"
    assert list(ev.status) == ["blocked"] + (["ok"] if other is not None else [])


def test_provider_budget_ignores_other_providers(plane, router):
    budget(plane, "openai-only", scope="provider", scope_value="openai",
           limit_usd=Decimal("0"))
    sync(router)
    assert router.complete(call(**MATCH)).provider == "dryrun"


def test_every_matching_budget_counts_the_call_and_the_tightest_blocks(plane, router):
    for b in (dict(id="all", scope="global"), dict(id="acme", scope="org", scope_value="acme"),
              dict(id="ann", scope="user", scope_value="ann"),
              dict(id="large", scope="model", scope_value="dryrun-large"),
              dict(id="globex", scope="org", scope_value="globex")):
        budget(plane, limit_usd=Decimal("100"), **b)  # type: ignore[arg-type]
    sync(router)
    done = router.complete(call(**MATCH))
    for b in ("all", "acme", "ann", "large"):
        st = status(router, b)
        assert st.spent_picousd == done.cost.total and st.reserved_picousd == 0
    assert status(router, "globex").spent_picousd == 0
    budget(plane, "ann", scope="user", scope_value="ann", limit_usd=usd(done.cost.total))
    sync(router)
    with pytest.raises(BudgetExceeded) as err:
        router.complete(call("another question", **MATCH))
    assert err.value.budget == "ann"  # the others still had room
    assert router.complete(call("another question", **{**MATCH, "user": "cy"})).cost.total > 0


def test_a_budget_on_org_a_never_blocks_org_b(plane, router):
    budget(plane, "acme", scope="org", scope_value="acme", limit_usd=Decimal("0.005"))
    sync(router)
    spend_until_blocked(router, **MATCH)
    for i in range(5):
        assert router.complete(call(f"globex {i}", org="globex", task="summarize")).cost.total
    with pytest.raises(BudgetExceeded):
        router.complete(call("acme again", **MATCH))
    ev = events(router)
    assert set(ev[ev.org == "globex"].status) == {"ok"}
    assert list(ev[ev.org == "acme"].status)[-2:] == ["blocked", "blocked"]


# ---- hard limits --------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def any_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    p = make_plane(url)
    p.upsert_policy(RoutingPolicy(task="summarize", primary_model="dryrun-large"), ENGINEER)
    yield p
    p.close()


def test_hard_limit_blocks_naming_budget_limit_spend_and_window(any_plane):
    with make_router(any_plane) as router:
        limit = Decimal("0.005")
        b = budget(any_plane, "acme-monthly", name="acme monthly", scope="org",
                   scope_value="acme", limit_usd=limit)
        sync(router)
        spent, exc = spend_until_blocked(router, **MATCH)
        label = window_label(b)
        assert 0 < spent <= b.limit_picousd  # type: ignore[operator]
        assert spent + estimate(router, "dryrun-large", call(**MATCH)) > b.limit_picousd
        assert exc.budget == "acme-monthly" and exc.limit == limit
        assert exc.spent == usd(spent) and exc.window == label
        assert "acme monthly" in exc.message and "of $0.005 limit" in exc.message
        assert f"in window {label} (month, UTC)" in exc.message
        with pytest.raises(BudgetExceeded):  # and it stays blocked
            router.complete(call("still there?", **MATCH))
        ev = events(router)
        blocked = ev[ev.status == "blocked"]
        assert len(blocked) == 2 and set(blocked.error_type) == {"BudgetExceeded"}
        assert (blocked.cost_picousd == 0).all() and not blocked.ai_called.any()
        assert blocked.error_message.iloc[0] == exc.message
        assert int(ev[ev.status == "ok"].cost_picousd.sum()) == spent
        assert status(router, "acme-monthly").spent_picousd == spent


def test_token_limit_blocks_on_tokens(plane, router):
    b = budget(plane, "tok", scope="user", scope_value="ann", limit_tokens=1_000)
    sync(router)
    _, exc = spend_until_blocked(router, **MATCH)
    ev = events(router)
    used = int(ev[ev.status == "ok"][["input_tokens", "output_tokens"]].to_numpy().sum())
    assert 0 < used <= 1_000
    assert exc.budget == "tok" and exc.limit == 1_000 and exc.spent == used
    assert "token limit" in exc.message and exc.window == window_label(b)


# ---- soft limits: degrade, critical headroom ----------------------------------------------

def test_over_the_soft_limit_a_non_critical_call_is_degraded(plane, router):
    plane.upsert_policy(RoutingPolicy(task="summarize", primary_model="dryrun-large",
                                      degrade_to="dryrun-small"), ENGINEER)
    b = budget(plane, "acme", name="acme monthly", scope="org", scope_value="acme",
               action="degrade", limit_usd=Decimal("100"))
    sync(router)
    est = estimate(router, "dryrun-large", call(**MATCH))
    spent = 0
    while spent < 2 * est:  # enough history that a critical call still fits under 2x
        done = router.complete(call(f"{PROMPT} {spent}", **MATCH))
        assert done.model == "dryrun-large"
        spent += done.cost.total
    n = len(events(router))
    assert not events(router).degraded.any()
    limit = spent * 100 // 93  # now at 93% of the budget
    budget(plane, "acme", name="acme monthly", scope="org", scope_value="acme",
           action="degrade", limit_usd=usd(limit))
    sync(router)
    done = router.complete(call("second question", **MATCH))
    why = ("dryrun-small: org=acme at 93% of monthly budget 'acme monthly', "
           "degraded from dryrun-large")
    assert done.model == "dryrun-small" and done.route_reason == why
    ev = events(router)
    assert list(ev.degraded) == [False] * n + [True] and ev.route_reason.iloc[-1] == why
    assert ev.model.iloc[-1] == "dryrun-small" and ev.requested_model.iloc[-1] == "dryrun-large"
    crit = router.complete(call("urgent", criticality="critical", **MATCH))
    assert crit.model == "dryrun-large" and "degraded" not in crit.route_reason
    assert b.soft_multiplier == 2.0


@pytest.mark.parametrize("multiplier", [2.0, 1.5])
def test_critical_calls_continue_up_to_soft_multiplier_times_the_limit(plane, router,
                                                                       multiplier):
    est = estimate(router, "dryrun-large", call(**MATCH))
    limit = 4 * est
    budget(plane, "acme", scope="org", scope_value="acme", limit_usd=usd(limit),
           soft_multiplier=multiplier)
    sync(router)
    normal, _ = spend_until_blocked(router, **MATCH)
    assert normal <= limit
    more, exc = spend_until_blocked(router, criticality="critical", **MATCH)
    total = normal + more
    assert limit < total <= int(limit * multiplier)  # past the limit, never past the cap
    assert total + est > int(limit * multiplier)
    assert "critical requests may reach" in exc.message
    with pytest.raises(BudgetExceeded):
        router.complete(call("not critical", **MATCH))


def test_a_zero_cost_model_is_never_blocked_by_a_cost_budget(plane, router):
    plane.upsert_price_override(
        PriceOverride(model="dryrun-free", provider="dryrun", effective_from=date(2024, 1, 1),
                      input=Decimal(0), output=Decimal(0), note="self-hosted"),
        ADMIN, new_model=True)
    budget(plane, "all", limit_usd=Decimal("0"))
    sync(router)
    with pytest.raises(BudgetExceeded):
        router.complete(call(model="dryrun-small"))
    for i in range(5):
        done = router.complete(call(f"free {i}", model="dryrun-free", org="acme"))
        assert done.cost.total == 0 and not done.cost.unpriced and done.provider == "dryrun"
    budget(plane, "tokens", limit_tokens=10)  # a token budget does apply to it
    sync(router)
    with pytest.raises(BudgetExceeded) as err:
        router.complete(call("free again", model="dryrun-free"))
    assert err.value.budget == "tokens"
    assert list(events(router).status) == ["blocked", *["ok"] * 5, "blocked"]


# ---- reset and alerts ---------------------------------------------------------------------

def test_reset_now_starts_a_fresh_window(plane, router):
    b = budget(plane, "acme", scope="org", scope_value="acme", limit_usd=Decimal("0.005"))
    sync(router)
    spent, exc = spend_until_blocked(router, **MATCH)
    assert exc.window == window_label(b)
    limit = b.limit_picousd
    assert limit is not None
    fired = {a.threshold_pct for a in plane.alerts() if a.window_key == exc.window}
    assert 50 in fired and fired == {t for t in b.thresholds if spent * 100 >= t * limit}
    after = plane.reset_budget("acme", ENGINEER)
    sync(router)
    done = router.complete(call("fresh window", **MATCH))
    st = status(router, "acme")
    assert st.window.label == window_label(after) == exc.window + ".r1"
    assert st.spent_picousd == done.cost.total < spent
    again, exc2 = spend_until_blocked(router, **MATCH)
    total = done.cost.total + again
    assert exc2.window == exc.window + ".r1" and total <= limit
    new = {a.threshold_pct for a in plane.alerts() if a.window_key == exc2.window}
    assert 50 in new and new == {t for t in b.thresholds if total * 100 >= t * limit}


def test_thresholds_fire_one_alert_per_budget_per_window(plane):
    state = MemoryState()  # two routers (two alert sinks) over one live state
    r1, r2 = make_router(plane, state), make_router(plane, state)
    try:
        est = estimate(r1, "dryrun-large", call(**MATCH))
        watch = budget(plane, "watch", scope="org", scope_value="acme", action="alert",
                       limit_usd=usd(6 * est))
        budget(plane, "wide", limit_usd=usd(300 * est), thresholds=(1, 2))
        sync(r1)
        sync(r2)
        for i in range(30):  # an alert-only budget never blocks: well past 100%
            (r1 if i % 2 else r2).complete(call(f"{PROMPT} {i}", **MATCH))
        assert status(r1, "watch").utilisation > 2
        alerts = plane.alerts()
        mine = sorted(a.threshold_pct for a in alerts if a.budget_id == "watch")
        assert mine == [50, 75, 90, 100]
        assert sorted(a.threshold_pct for a in alerts if a.budget_id == "wide") == [1, 2]
        assert {a.window_key for a in alerts} == {window_label(watch)}
        hundred = next(a for a in alerts if a.budget_id == "watch" and a.threshold_pct == 100)
        assert hundred.spent_picousd is not None
        assert hundred.spent_picousd >= watch.limit_picousd  # type: ignore[operator]
    finally:
        r1.close()
        r2.close()


def test_a_budget_degrade_to_applies_to_an_explicit_model(plane, router):
    big = estimate(router, "dryrun-large", call(model="dryrun-large"))
    budget(plane, "acme", scope="org", scope_value="acme", action="degrade",
           degrade_to="dryrun-small", limit_usd=usd(big // 2))
    sync(router)
    done = router.complete(call(model="dryrun-large", org="acme"))
    assert done.model == "dryrun-small"
    assert done.route_reason.endswith("degraded from dryrun-large")
    assert events(router).degraded.iloc[0]


def test_over_the_soft_limit_with_no_degrade_target_runs_on_to_the_hard_cap(plane, router):
    est = estimate(router, "dryrun-large", call(**MATCH))
    budget(plane, "acme", name="acme monthly", scope="org", scope_value="acme",
           action="degrade", limit_usd=usd(2 * est))
    sync(router)
    spent, exc = spend_until_blocked(router, **MATCH)
    assert 2 * est < spent <= 4 * est  # past the limit, up to soft_multiplier x limit
    assert "past the hard cap" in exc.message
    ev = events(router)
    ok = ev[ev.status == "ok"]
    assert set(ok.model) == {"dryrun-large"} and not ok.degraded.any()
    over = [r for r in ok.route_reason if "over the soft limit" in r]
    assert over and over[0].startswith("dryrun-large: org=acme at ")
    assert "degraded from" not in " ".join(ok.route_reason)
