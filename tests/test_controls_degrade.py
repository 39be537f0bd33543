"""Spend controls through the real Router: soft limits.

Over a 'degrade' budget's limit a non-critical call goes to the cheaper model (the budget's
or the task policy's degrade_to) and says why; critical calls run on to soft_multiplier x
the limit; with nothing cheaper the same model runs on to that hard cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from test_controls_support import (
    ENGINEER,
    MATCH,
    PROMPT,
    budget,
    budget_plane,
    call,
    estimate,
    events,
    make_router,
    spend_until_blocked,
    sync,
    usd,
)

from core.control import ControlPlane, RoutingPolicy
from core.errors import BudgetExceeded
from core.router import Router


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


def test_over_the_soft_limit_a_non_critical_call_is_degraded(plane, router):
    plane.upsert_policy(
        RoutingPolicy(task="summarize", primary_model="dryrun-large", degrade_to="dryrun-small"),
        ENGINEER,
    )
    b = budget(
        plane,
        "acme",
        name="acme monthly",
        scope="org",
        scope_value="acme",
        action="degrade",
        limit_usd=Decimal("100"),
    )
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
    budget(
        plane,
        "acme",
        name="acme monthly",
        scope="org",
        scope_value="acme",
        action="degrade",
        limit_usd=usd(limit),
    )
    sync(router)
    done = router.complete(call("second question", **MATCH))
    why = (
        "dryrun-small: org=acme at 93% of monthly budget 'acme monthly', degraded from dryrun-large"
    )
    assert done.model == "dryrun-small" and done.route_reason == why
    ev = events(router)
    assert list(ev.degraded) == [False] * n + [True] and ev.route_reason.iloc[-1] == why
    assert ev.model.iloc[-1] == "dryrun-small" and ev.requested_model.iloc[-1] == "dryrun-large"
    crit = router.complete(call("urgent", criticality="critical", **MATCH))
    assert crit.model == "dryrun-large" and "degraded" not in crit.route_reason
    assert b.soft_multiplier == 2.0


@pytest.mark.parametrize("multiplier", [2.0, 1.5])
def test_critical_calls_continue_up_to_soft_multiplier_times_the_limit(plane, router, multiplier):
    est = estimate(router, "dryrun-large", call(**MATCH))
    limit = 4 * est
    budget(
        plane,
        "acme",
        scope="org",
        scope_value="acme",
        limit_usd=usd(limit),
        soft_multiplier=multiplier,
    )
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


def test_a_budget_degrade_to_applies_to_an_explicit_model(plane, router):
    big = estimate(router, "dryrun-large", call(model="dryrun-large"))
    budget(
        plane,
        "acme",
        scope="org",
        scope_value="acme",
        action="degrade",
        degrade_to="dryrun-small",
        limit_usd=usd(big // 2),
    )
    sync(router)
    done = router.complete(call(model="dryrun-large", org="acme"))
    assert done.model == "dryrun-small"
    assert done.route_reason.endswith("degraded from dryrun-large")
    assert events(router).degraded.iloc[0]


def test_over_the_soft_limit_with_no_degrade_target_runs_on_to_the_hard_cap(plane, router):
    est = estimate(router, "dryrun-large", call(**MATCH))
    budget(
        plane,
        "acme",
        name="acme monthly",
        scope="org",
        scope_value="acme",
        action="degrade",
        limit_usd=usd(2 * est),
    )
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
