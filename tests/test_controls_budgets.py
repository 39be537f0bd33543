"""Spend controls through the real Router: budgets.

Every scope, USD and token limits, hard blocks (also with the control plane on PostgreSQL),
$0 models, "reset now", threshold alerts, and reservations given back by failed attempts.
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
    MATCH,
    OTHER,
    PROMPT,
    budget,
    budget_plane,
    call,
    estimate,
    events,
    make_router,
    spend_until_blocked,
    status,
    sync,
    usd,
    window_label,
)

from core.control import ControlPlane, PriceOverride, RoutingPolicy
from core.errors import BudgetExceeded, ProviderServerError
from core.providers.dryrun import DryRunProvider
from core.retry import RetryPolicy
from core.router import Router
from core.settings import Settings
from core.state import MemoryState
from core.types import ChatRequest


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = budget_plane()
    yield p
    p.close()


@pytest.fixture
def router(plane: ControlPlane) -> Iterator[Router]:
    r = make_router(plane)
    yield r
    r.close()


# ---- scopes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "value", "other"),
    [
        ("global", None, None),
        ("org", "acme", OTHER),
        ("project", "web", OTHER),
        ("user", "ann", OTHER),
        ("task", "summarize", OTHER),
        ("model", "dryrun-large", OTHER),  # OTHER routes to dryrun-small
        ("provider", "dryrun", None),
    ],
)
def test_each_scope_blocks_the_requests_it_matches_and_only_those(
    plane, router, scope, value, other
):
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
    budget(plane, "openai-only", scope="provider", scope_value="openai", limit_usd=Decimal("0"))
    sync(router)
    assert router.complete(call(**MATCH)).provider == "dryrun"


def test_every_matching_budget_counts_the_call_and_the_tightest_blocks(plane, router):
    for b in (
        dict(id="all", scope="global"),
        dict(id="acme", scope="org", scope_value="acme"),
        dict(id="ann", scope="user", scope_value="ann"),
        dict(id="large", scope="model", scope_value="dryrun-large"),
        dict(id="globex", scope="org", scope_value="globex"),
    ):
        budget(plane, limit_usd=Decimal("100"), **b)
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
    p = budget_plane(url)
    yield p
    p.close()


def test_hard_limit_blocks_naming_budget_limit_spend_and_window(any_plane):
    with make_router(any_plane) as router:
        limit = Decimal("0.005")
        b = budget(
            any_plane,
            "acme-monthly",
            name="acme monthly",
            scope="org",
            scope_value="acme",
            limit_usd=limit,
        )
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


def test_a_zero_cost_model_is_never_blocked_by_a_cost_budget(plane, router):
    plane.upsert_price_override(
        PriceOverride(
            model="dryrun-free",
            provider="dryrun",
            effective_from=date(2024, 1, 1),
            input=Decimal(0),
            output=Decimal(0),
            note="self-hosted",
        ),
        ADMIN,
        new_model=True,
    )
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
        watch = budget(
            plane, "watch", scope="org", scope_value="acme", action="alert", limit_usd=usd(6 * est)
        )
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
        assert hundred.spent_picousd >= watch.limit_picousd
    finally:
        r1.close()
        r2.close()


class FailingLarge(DryRunProvider):
    """dryrun where dryrun-large always answers 503."""

    def complete(self, req: ChatRequest, model: str) -> Any:
        if model == "dryrun-large":
            raise ProviderServerError("upstream down", status_code=503)
        return super().complete(req, model)


def test_a_failed_attempt_releases_its_reservation_and_the_fallback_is_charged(plane):
    plane.upsert_policy(
        RoutingPolicy(task="summarize", primary_model="dryrun-large", fallbacks=("dryrun-medium",)),
        ENGINEER,
    )
    budget(plane, "all", limit_usd=Decimal("1"))
    budget(plane, "off", limit_usd=Decimal("0"), enabled=False)  # disabled: never applies
    provider = FailingLarge(Settings.from_env().provider("dryrun"))
    fast = RetryPolicy(max_attempts=2, base_s=0.001, cap_s=0.002)
    with make_router(plane, providers={"dryrun": provider}, retry=fast) as r:
        done = r.complete(call(**MATCH))
        assert done.model == "dryrun-medium"
        assert (
            done.route_reason == "dryrun-medium: fallback from dryrun-large after "
            "ProviderServerError"
        )
        st = status(r, "all")
        assert st.spent_picousd == done.cost.total and st.reserved_picousd == 0
        ev = events(r)
        assert list(ev.status) == ["error", "error", "ok"]
        assert int(ev.cost_picousd.sum()) == done.cost.total
