"""The optimistic degrade (core/budgets/_select.py): a candidate whose last admission asked to
degrade has its target admitted first, in one State.admit_if step conditioned on the candidate
still degrading. Its outcome must be the two-step one (admit the candidate, told to degrade,
admit the target) for every counter value: the same Choice or error, the same decisions and
reasons, the same counters and rate buckets afterwards."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.budgets import BudgetGuard, Choice, Decision, Estimate, admit_first, window
from core.control import Budget, RateLimit
from core.errors import CostlineError
from core.state import Admission, MemoryState, SharedState
from core.types import ChatRequest, Message

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
BIG, SMALL, TINY = "gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"
EST = {
    BIG: Estimate(BIG, "openai", 9_000, 900),
    SMALL: Estimate(SMALL, "openai", 1_000, 700),
    TINY: Estimate(TINY, "openai", 300, 650),
}


def req(**kw: Any) -> ChatRequest:
    return ChatRequest([Message("user", "hi")], org="acme", user="ann", **kw)


def to_target(d: Decision) -> Estimate | None:
    """As the router's callback: the target the budget names, None for none or the same."""
    if d.degrade_to is None or d.degrade_to == d.model:
        return None
    return EST.get(d.degrade_to)


class Counting:
    """A State wrapper counting round trips; ``shortcut=False`` hides admit_if."""

    def __init__(self, inner: Any, shortcut: bool = True) -> None:
        self.inner, self.admits = inner, 0
        if not shortcut:
            self.admit_if = None

    def admit(self, *a: Any, **k: Any) -> Admission:
        self.admits += 1
        got: Admission = self.inner.admit(*a, **k)
        return got

    def admit_if(self, *a: Any, **k: Any) -> Admission:  # type: ignore[no-redef]
        self.admits += 1
        got: Admission = self.inner.admit_if(*a, **k)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make(shortcut: bool, clock: Callable[[], datetime] = lambda: NOW) -> BudgetGuard:
    return BudgetGuard(Counting(MemoryState("t:"), shortcut), clock=clock)  # type: ignore[arg-type]


def prime(guard: BudgetGuard, r: ChatRequest, model: str, budgets: Any, rates: Any) -> None:
    """As if the last admission of ``model`` had asked to degrade."""
    ix = guard._m.index(budgets, rates)
    ix.match(r, model, EST[model].provider, r.criticality == "critical", False).degrading = True


def outcome(choice: Choice | CostlineError) -> Any:
    """Everything observable of an admit_first result."""

    def dec(d: Decision | None, lines: bool = True) -> Any:
        if d is None:
            return None
        got = [(ln.key, ln.amount, ln.cap, ln.soft, ln.value) for ln in d.lines] if lines else 0
        err = d.error
        return (
            d.model,
            d.admitted,
            d.degraded,
            d.degrade,
            d.degrade_to,
            d.budget and d.budget.id,
            d.utilisation,
            d.over_soft,
            d.reason,
            got,
            err and (type(err), str(err), getattr(err, "retry_after", None)),
        )

    if isinstance(choice, CostlineError):
        return type(choice), str(choice), getattr(choice, "retry_after", None)
    return (
        choice.estimate,
        choice.index,
        choice.skipped,
        choice.degraded_from,
        dec(choice.decision),
        dec(choice.asked, lines=False),  # the shortcut's asks nothing of the state
    )


def run(guard: BudgetGuard, r: ChatRequest, cands: Sequence[str], budgets: Any, rates: Any) -> Any:
    try:
        return admit_first(guard, r, [EST[m] for m in cands], budgets, rates, degrade=to_target)
    except CostlineError as exc:
        return exc


def counters(guard: BudgetGuard) -> Any:
    """The state's keys and values (rate buckets included), expiry aside."""
    inner: MemoryState = guard.state.inner  # type: ignore[attr-defined]
    return {k: repr(v) for k, v in inner._data.items()}


def row(first: bool) -> st.SearchStrategy[dict[str, Any]]:
    """A budget row; the first is a degrade budget on every model (the shortcut's case).
    Spend is drawn as a share of the limit, so counters land on both sides of it."""
    return st.builds(
        dict,
        action=st.just("degrade") if first else st.sampled_from(["block", "degrade", "alert"]),
        scope=st.sampled_from(
            ["global", "org"] + ([] if first else ["model:" + BIG, "model:" + SMALL])
        ),
        usd=st.one_of(st.none(), st.integers(1, 40_000)),
        tokens=st.one_of(st.none(), st.integers(1, 4_000)),
        to=st.sampled_from([SMALL, SMALL, TINY, None, BIG]),
        mult=st.sampled_from([1.0, 1.5, 3.0]),
        spent=st.integers(0, 250),  # % of the limit
        spent_tokens=st.integers(0, 250),
    )


budget_rows = st.tuples(row(True), st.lists(row(False), max_size=3)).map(lambda t: [t[0], *t[1]])


def rows(specs: list[dict[str, Any]]) -> tuple[tuple[Budget, ...], list[tuple[Budget, int, int]]]:
    out, spent = [], []
    for i, s in enumerate(specs):
        if s["usd"] is None and s["tokens"] is None:
            s["usd"] = 1
        scope, _, value = s["scope"].partition(":")
        b = Budget(
            id=f"b{i}",
            name=f"b{i}",
            scope=scope,
            scope_value=value or ("acme" if scope == "org" else None),
            limit_usd=None if s["usd"] is None else Decimal(s["usd"]) / 10**12,
            limit_tokens=s["tokens"],
            action=s["action"],
            degrade_to=s["to"] if s["action"] == "degrade" else None,
            soft_multiplier=s["mult"],
        )
        out.append(b)
        usd = (s["usd"] or 0) * s["spent"] // 100
        spent.append((b, usd, (s["tokens"] or 0) * s["spent_tokens"] // 100))
    return tuple(out), spent


def seed(guard: BudgetGuard, spent: list[tuple[Budget, int, int]]) -> None:
    for b, usd, tok in spent:
        w = window(b, NOW)
        if b.limit_usd is not None:
            guard.state.add(w.usd_key, usd)
        if b.limit_tokens is not None:
            guard.state.add(w.tokens_key, tok)


RATES = (RateLimit(id="per-user", scope="user", limit=3, window_s=60),)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=budget_rows,
    cands=st.sampled_from([(BIG,), (BIG, SMALL), (SMALL,), (BIG, TINY)]),
    rated=st.booleans(),
    critical=st.booleans(),
    repeat=st.integers(1, 4),
)
def test_the_shortcut_gives_the_two_step_outcome(
    specs: list[dict[str, Any]],
    cands: tuple[str, ...],
    rated: bool,
    critical: bool,
    repeat: int,
) -> None:
    """Random budgets (block/degrade/alert, USD and token limits, org- and model-scoped,
    degrade targets that match other budgets or none) and counter values: with the candidate
    primed as degrading, the shortcut's result and the state it leaves are the two-step ones,
    call after call (reservations held, rate limit running out)."""
    budgets, spent = rows(specs)
    rates = RATES if rated else ()
    r = req(criticality="critical" if critical else "normal")
    fast, slow = make(True), make(False)
    for g in (fast, slow):
        seed(g, spent)
        prime(g, r, cands[0], budgets, rates)
    for _ in range(repeat):
        got, want = run(fast, r, cands, budgets, rates), run(slow, r, cands, budgets, rates)
        assert outcome(got) == outcome(want)
        assert counters(fast) == counters(slow)


def soft_budget(limit: int = 10_000, **kw: Any) -> Budget:
    return Budget(
        id="soft",
        name="acme soft",
        scope="org",
        scope_value="acme",
        limit_usd=Decimal(limit) / 10**12,
        action="degrade",
        degrade_to=SMALL,
        soft_multiplier=100.0,
        **kw,
    )


def test_a_degraded_call_takes_one_round_trip_after_the_first() -> None:
    guard = make(True)
    budgets = (soft_budget(),)
    guard.state.add(window(budgets[0], NOW).usd_key, 20_000)
    first = run(guard, req(), [BIG], budgets, ())
    assert first.degraded_from == BIG and guard.state.admits == 2  # type: ignore[attr-defined]
    again = run(guard, req(), [BIG], budgets, ())
    assert again.degraded_from == BIG and again.estimate.model == SMALL
    assert guard.state.admits == 3  # type: ignore[attr-defined]
    assert again.asked is not None and again.asked.budget == budgets[0]
    assert again.asked.utilisation == pytest.approx(20_000 / 10_000 + 1_000 / 10_000)


def test_a_counter_the_reconciler_lowered_admits_the_candidate_itself() -> None:
    """Between calls the counter falls below the soft limit: the conditioned step refuses,
    nothing is reserved, and the candidate is admitted as the two-step path would."""
    guard = make(True)
    budgets = (soft_budget(),)
    key = window(budgets[0], NOW).usd_key
    guard.state.add(key, 20_000)
    assert run(guard, req(), [BIG], budgets, ()).degraded_from == BIG  # primes the memo
    guard.state.add(key, -20_000 - 1_000)  # the reconciler rebuilt it (and the call released)
    assert guard.state.get_values([key]) == [0]
    got = run(guard, req(), [BIG], budgets, ())
    assert got.degraded_from is None and got.estimate.model == BIG
    assert guard.state.get_values([key]) == [9_000]  # only the candidate's reservation
    assert guard.state.admits == 4  # type: ignore[attr-defined] # 2, then refused + admitted


def test_a_new_window_admits_the_candidate_itself() -> None:
    now = [NOW]
    guard = make(True, clock=lambda: now[0])
    budgets = (soft_budget(),)
    guard.state.add(window(budgets[0], NOW).usd_key, 20_000)
    assert run(guard, req(), [BIG], budgets, ()).degraded_from == BIG
    now[0] = NOW + timedelta(days=31)  # next month: a fresh counter
    got = run(guard, req(), [BIG], budgets, ())
    assert got.degraded_from is None and got.estimate.model == BIG
    nxt = window(budgets[0], now[0]).usd_key
    assert guard.state.get_values([nxt]) == [9_000]


def test_a_hard_line_now_over_blocks_as_the_two_step_path_does() -> None:
    block = Budget(
        id="cap", name="cap", scope="global", limit_usd=Decimal(30_000) / 10**12, action="block"
    )
    budgets = (soft_budget(), block)
    outs = []
    for shortcut in (True, False):
        guard = make(shortcut)
        guard.state.add(window(budgets[0], NOW).usd_key, 20_000)
        first = run(guard, req(), [BIG, SMALL], budgets, ())
        assert first.degraded_from == BIG
        guard.state.add(window(block, NOW).usd_key, 21_000)  # 22,000 + BIG 9,000 > 30,000
        outs.append((outcome(run(guard, req(), [BIG, SMALL], budgets, ())), counters(guard)))
    assert outs[0] == outs[1]
    assert outs[0][0][2][0][0] == BIG  # skipped: blocked by 'cap', not degraded


@pytest.mark.parametrize(("model", "trips"), [(BIG, 2), (SMALL, 1)])
def test_model_scoped_budgets_that_differ(model: str, trips: int) -> None:
    """A block budget on the candidate alone: the candidate has a line the target lacks (its
    value is not read), so the two steps run. On the target alone: the candidate's lines
    are among the target's, so the shortcut applies. The outcome is the two-step one."""
    scoped = Budget(
        id="model-cap",
        name="model cap",
        scope="model",
        scope_value=model,
        limit_usd=Decimal(40_000) / 10**12,
        action="block",
    )
    budgets = (soft_budget(), scoped)
    outs = []
    for shortcut in (True, False):
        guard = make(shortcut)
        guard.state.add(window(budgets[0], NOW).usd_key, 20_000)
        first = run(guard, req(), [BIG], budgets, ())
        assert first.degraded_from == BIG and first.estimate.model == SMALL
        guard.release(first.decision)
        before = guard.state.admits  # type: ignore[attr-defined]
        outs.append((outcome(run(guard, req(), [BIG], budgets, ())), counters(guard)))
        assert guard.state.admits - before == (trips if shortcut else 2)  # type: ignore[attr-defined]
        hint = guard.degrade_hint(req(), BIG, "openai", budgets, ())
        assert (hint is not None) == (shortcut and trips == 1)  # no target estimated in vain
    assert outs[0] == outs[1]


def test_critical_calls_never_take_the_shortcut() -> None:
    guard = make(True)
    budgets = (soft_budget(),)
    guard.state.add(window(budgets[0], NOW).usd_key, 20_000)
    prime(guard, req(), BIG, budgets, ())
    got = run(guard, req(criticality="critical"), [BIG], budgets, ())
    assert got.degraded_from is None and got.decision.over_soft


@pytest.mark.parametrize("shared", [False, True])
def test_hard_caps_hold_when_threads_degrade_together(shared: bool, tmp_path: Any) -> None:
    """Many threads degrading at once through the shortcut: no hard cap is overshot."""
    state: Any = SharedState(tmp_path / "s.db") if shared else MemoryState("t:")
    guard = BudgetGuard(state, clock=lambda: NOW)
    soft = soft_budget()  # hard cap 100 x 10,000
    block = Budget(
        id="cap", name="cap", scope="global", limit_usd=Decimal(60_000) / 10**12, action="block"
    )
    budgets = (soft, block)
    state.add(window(soft, NOW).usd_key, 20_000)
    got: list[Choice | CostlineError] = []

    def worker() -> None:
        for _ in range(20):
            got.append(run(guard, req(), [BIG], budgets, ()))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = [c for c in got if isinstance(c, Choice)]
    assert admitted and all(c.degraded_from == BIG for c in admitted)
    held = state.get_values([window(block, NOW).usd_key])[0]
    assert held == 1_000 * len(admitted) <= 60_000
    state.close()


def test_router_outcomes_match_the_two_step_path(tmp_path: Any, monkeypatch: Any) -> None:
    """The controls bench's scenario (3 budgets, 2 rate limits, a 'degrade' budget that fires
    part-way) through two Routers, one without the shortcut: every call's model, route
    reason, cost and cache hit, and the live counters, are the same.

    Both run on one pinned clock (``core.clock``) and without the periodic reconciler: a route
    reason holds a cached answer's age in wall-clock seconds ("cache hit (exact, age 2s)"),
    which differed between the two runs whenever a loaded machine made one slower, and a
    reconciliation round (every 30 s) came in one run and not the other."""
    from core import clock
    from tests.bench import bench_controls as bench

    monkeypatch.setenv("COSTLINE_RECONCILE_S", "0")  # rebuilt at start and by the bench only
    results = []
    for shortcut in (True, False):
        monkeypatch.setenv("COSTLINE_HOME", str(tmp_path / str(shortcut)))
        with clock.frozen(NOW):
            router = bench.setup()
            try:
                assert router.controls is not None
                state = router.controls.guard.state
                if not shortcut:
                    state.admit_if = None  # type: ignore[attr-defined]
                bench.size_org_budget(router, 200)
                done = [router.complete(r) for r in bench.requests(200, seed=1)]
                done += [router.complete(r) for r in bench.requests(50, seed=1)]  # cache hits
                snap = router.controls.snapshot()
                keys = [window(b, NOW).usd_key for b in snap.budgets]
                results.append(
                    (
                        [(d.model, d.route_reason, d.cost.total, d.cache_hit) for d in done],
                        state.get_values(keys),
                    )
                )
                assert sum("degraded from" in d.route_reason for d in done) > 50
                assert sum(d.cache_hit for d in done) > 0  # the ages compared are real hits'
            finally:
                router.close()
                assert router.controls is not None
                router.controls.plane.close()
    assert results[0] == results[1]


def backend(kind: str, request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    from core.state import RedisState, ResilientState

    if kind == "memory":
        return MemoryState("t:")
    if kind == "shared":
        return SharedState(tmp_path / "s.db")
    url = request.getfixturevalue("redis_url")
    rs = RedisState(url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=5.0)
    return rs if kind == "redis" else ResilientState(rs)


@pytest.mark.parametrize("kind", ["memory", "shared", "redis", "resilient"])
def test_admit_if_takes_nothing_when_its_condition_fails(
    kind: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """State.admit_if: the budget values before the call decide; on 'condition' neither the
    budget counters nor the rate bucket moved, and values are reported as admit reports them."""
    from core.state import BudgetItem, RateItem

    state = backend(kind, request, tmp_path)
    state.add("soft", 50)
    state.add("cap", 10)
    rate = [RateItem("r", "token_bucket", limit=1, window_s=3600)]
    items = [BudgetItem("soft", 1_000, 5), BudgetItem("cap", 1_000, 5)]
    cases = [
        ([(0, 50)], [(1, 100)], False),  # 50 is not > 50: the candidate would be admitted
        ([(0, 49)], [(1, 9)], False),  # 10 > 9: a hard line of the candidate is over
        ([(0, 60), (0, 49)], [(1, 10)], True),  # one soft line over is enough
    ]
    for over, under, ok in cases:
        adm = state.admit_if(rate, items, None, over=over, under=under)
        assert adm.budget_values == [50, 10]
        assert adm.ok is ok and adm.reason == (None if ok else "condition")
    assert state.get_values(["soft", "cap"]) == [55, 15]  # only the admitted call reserved
    again = state.admit_if(rate, items, None, over=[(0, 0)], under=[])
    assert not again.ok and again.reason == "rate"  # the one request was taken once
    state.close()


@pytest.mark.parametrize("kind", ["redis", "resilient", "shared"])
def test_the_shortcut_gives_the_two_step_outcome_on_shared_backends(
    kind: str, request: pytest.FixtureRequest, tmp_path: Any
) -> None:
    """The same comparison on the backends shared between processes: random counter values
    (some below the soft limit, some past a hard line) on one state, each call admitted once
    through the shortcut and once through the two steps, each released before the next."""
    state = backend(kind, request, tmp_path)
    soft = soft_budget()
    block = Budget(
        id="cap", name="cap", scope="global", limit_usd=Decimal(30_000) / 10**12, action="block"
    )
    budgets = (soft, block)
    fast = BudgetGuard(state, clock=lambda: NOW)
    slow = BudgetGuard(Counting(state, shortcut=False), clock=lambda: NOW)  # type: ignore[arg-type]
    keys = [window(b, NOW).usd_key for b in budgets]
    rnd = random.Random(7)
    used = 0
    for _ in range(40):
        target = [rnd.randrange(0, 25_000), rnd.randrange(0, 30_000)]
        for k, now_v, want in zip(keys, state.get_values(keys), target, strict=True):
            state.add(k, want - now_v)
        prime(fast, req(), BIG, budgets, ())
        outs = []
        for g in (fast, slow):
            c = run(g, req(), [BIG, SMALL], budgets, ())
            outs.append(outcome(c))
            if isinstance(c, Choice):
                g.release(c.decision)
            assert state.get_values(keys) == target
        assert outs[0] == outs[1]
        used += outs[0][0] == EST[SMALL] and outs[0][3] == BIG
    assert used > 5
    state.close()
