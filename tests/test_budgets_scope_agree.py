"""A budget's scope means the same calls at admission (the guard's live counter) and in the
usage log (the reconciler's log sum, the Budgets page's and /budgets/{id}/status's
utilisation): after N real calls the three agree, and reconcile rounds leave the counter as
it was. Real Router, real MemoryState, real usage log in this test's COSTLINE_HOME."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from test_controls_support import ENGINEER, make_plane, make_router

from core import clock, reports
from core.control import Budget, ControlPlane, RoutingPolicy
from core.reconcile import MIN_LAG_S
from core.router import Router
from core.state import MemoryState, SharedState
from core.types import ChatRequest, Message
from core.usage import Reader

REQ = {"org": "acme", "project": "Apollo", "user": "ann", "task": "summarise", "key": "k-1"}


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = make_plane()
    yield p
    p.close()


def ask(model: str, i: int, **kw: Any) -> ChatRequest:
    return ChatRequest([Message("user", f"scope {i}")], model=model, max_tokens=20, **kw)


def three_views(r: Router, plane: ControlPlane, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Per budget: (live committed counters, reconciler's log sums, report's utilisation),
    each as (picodollars, tokens)."""
    ctl = r.controls
    assert ctl is not None and r.reconciler is not None
    r.log.flush()
    snap = {b.id: b for b in ctl.snapshot().budgets}
    live: dict[str, tuple[int, int]] = {}
    for i in ids:
        w = ctl.guard.window(snap[i])
        usd, tok = ctl.state.get_values([w.usd_key + ":c", w.tokens_key + ":c"])
        live[i] = (usd, tok)
    logged: dict[str, dict[str, int]] = {i: {} for i in ids}
    for t in r.reconciler.targets():
        logged.setdefault(t.budget, {})[t.metric] = t.log_value
    cat = ctl.catalog

    def canonical(m: str) -> str:  # as the console and the API pass it
        return cat.canonical(m) if cat.has(m) else m

    now = clock.now() + timedelta(seconds=1)
    with Reader(r.settings.home) as rd:
        util = reports.utilisation(rd, plane, [snap[i] for i in ids], now, canonical)
    report = {u.budget.id: (u.spent_picousd, u.tokens) for u in util}
    return {
        i: (live[i], (logged[i].get("usd", 0), logged[i].get("tokens", 0)), report[i]) for i in ids
    }


def budget(bid: str, scope: str, value: str | None) -> Budget:
    return Budget(
        id=bid,
        name=bid,
        scope=scope,
        scope_value=value,
        limit_usd=Decimal(100),
        limit_tokens=10**9,
        action="block",
    )


def log_sums(r: Router) -> dict[tuple[str, str], int]:
    assert r.reconciler is not None
    return {(t.budget, t.metric): t.log_value for t in r.reconciler.targets()}


def agree_after_reconcile(r: Router, plane: ControlPlane, ids: list[str]) -> None:
    # before a flush the events are in this process's open journal (the reconciler's
    # journal sums), after it in segments (its SQL sums, as the Budgets page's)
    assert r.log.pending > 0
    in_journal = log_sums(r)
    views = three_views(r, plane, ids)
    assert in_journal == log_sums(r), (in_journal, views)
    for i, (live, logged, report) in views.items():
        assert live[1] > 0, (i, views)  # the scope matched the calls at admission
        assert live == logged == report, (i, views)
    rec = r.reconciler
    assert rec is not None
    assert rec.reconcile() == []
    time.sleep(MIN_LAG_S + 0.1)  # a lowering compares counters at least MIN_LAG_S old
    assert rec.reconcile() == []  # nothing raised or lowered: the counter was right
    assert three_views(r, plane, ids) == views


def test_a_model_budget_on_an_unpriced_model_is_rebuilt_and_reconciled(plane):
    """Admission matched it (the guard resolves unknown names to themselves), but the
    reconciler asked the catalog for the budget's canonical name, which raises for a model
    it does not price: the router could not start (the rebuild raised) and no round ran."""
    plane.upsert_budget(budget("local", "model", "dryrun/local-llm"), ENGINEER)
    with make_router(plane, MemoryState(), allow_unpriced=True) as r:
        for i in range(3):
            r.complete(ask("dryrun/local-llm", i))
        agree_after_reconcile(r, plane, ["local"])


def test_a_model_budget_matches_an_unpriced_model_in_any_letter_case(plane):
    """Admission compares model names in lower case ('dryrun/Local-LLM' covers calls to
    'dryrun/local-llm'); the log sums compared them exactly, so they found $0 and 0 tokens,
    the Budgets page showed the budget unused and the reconciler lowered its right counter."""
    plane.upsert_budget(budget("upper", "model", "dryrun/Local-LLM"), ENGINEER)
    with make_router(plane, MemoryState(), allow_unpriced=True) as r:
        for i in range(3):
            r.complete(ask("dryrun/local-llm", i))
        agree_after_reconcile(r, plane, ["upper"])


# -- regression guards: these agreed on main's code too ----------------------------------------
GRID = [
    budget("global", "global", None),
    replace(budget("global-tz", "global", None), period="day", timezone="Pacific/Kiritimati"),
    replace(budget("week-tz", "global", None), period="week", timezone="America/Los_Angeles"),
    budget("org", "org", "acme"),
    budget("project", "project", "Apollo"),
    budget("user", "user", "ann"),
    budget("task", "task", "summarise"),
    budget("key", "key", "k-1"),
    budget("provider", "provider", "DRYRUN"),
    budget("model", "model", "dryrun-small"),
    budget("model-case", "model", "DRYRUN-Small"),
    budget("model-prefix", "model", "dryrun/dryrun-small"),
]


@pytest.mark.parametrize("shared", [False, True], ids=["memory", "shared"])
def test_every_scope_kind_agrees_on_the_same_calls(plane, shared):
    for b in GRID:
        plane.upsert_budget(b, ENGINEER)
    state = SharedState(Reader().home) if shared else MemoryState()
    with make_router(plane, state) as r:
        for i in range(4):
            model = "dryrun/dryrun-small" if i % 2 else "dryrun-small"
            r.complete(ask(model, i, **REQ))
        agree_after_reconcile(r, plane, [b.id for b in GRID])


def test_degraded_and_skipped_calls_count_where_they_went(plane):
    """A degrade budget sends dryrun-large to dryrun-small; a spent block budget skips
    dryrun-medium for the policy's fallback: each model's budget counts the model called."""
    plane.upsert_policy(
        RoutingPolicy(task="t", primary_model="dryrun-medium", fallbacks=("dryrun-large",)),
        ENGINEER,
    )
    tiny = Decimal("0.000001")
    rows = [
        replace(
            budget("large", "model", "dryrun-large"),
            limit_usd=tiny,
            action="degrade",
            degrade_to="dryrun-small",
            soft_multiplier=1.0,
        ),
        replace(budget("medium", "model", "dryrun-medium"), limit_usd=tiny),
        budget("small", "model", "dryrun-small"),
        budget("all", "global", None),
    ]
    for b in rows:
        plane.upsert_budget(b, ENGINEER)
    with make_router(plane, MemoryState()) as r:
        for i in range(3):
            r.complete(ask("dryrun-large", i))
            r.complete(ChatRequest([Message("user", f"t {i}")], task="t", max_tokens=20))
        ids = ["small", "all"]
        agree_after_reconcile(r, plane, ids)
        views = three_views(r, plane, ["large", "medium"])
        assert all(live == logged == report for live, logged, report in views.values()), views
        assert views["large"][0] == views["medium"][0] == (0, 0)  # never called
        with Reader(r.settings.home) as rd:
            ev = rd.events(columns=["model", "degraded"])
        assert set(ev.model) == {"dryrun-small"} and ev.degraded.all()


def test_cache_hits_count_in_neither_the_counter_nor_the_log_sums(plane):
    """A cache hit never reaches admission (no provider tokens, $0), but it is logged with
    the original answer's usage: the log sums counted its tokens, so the Budgets page showed
    a token budget fuller than the guard's counter and the reconciler raised the counter by
    tokens no provider billed (a token budget blocked early on cached answers)."""
    plane.upsert_budget(budget("all", "global", None), ENGINEER)
    with make_router(plane, MemoryState()) as r:
        first = r.complete(ask("dryrun-small", 0))
        for _ in range(3):
            assert r.complete(ask("dryrun-small", 0)).cache_hit
        assert not first.cache_hit and first.usage.total_tokens > 0
        agree_after_reconcile(r, plane, ["all"])
        assert three_views(r, plane, ["all"])["all"][0][1] == first.usage.total_tokens
