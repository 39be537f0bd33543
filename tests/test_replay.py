"""What-if replay (core.replay) on the demo data: its counts equal an independent re-run of the
same calls through the Router with the proposal; a generous proposal changes nothing; a tiny
one blocks or degrades exactly the calls in its scope; spend before the period is carried in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.budgets import BudgetGuard
from core.control import SYSTEM, Actor, Budget, ControlPlane, RateLimit, RoutingPolicy
from core.controls import Controls
from core.demo import load_demo
from core.errors import ConfigError, CostlineError
from core.pricing import Catalog, load_catalog
from core.providers import Provider, ProviderResult
from core.replay import PROMPT_TOKENS, ReplayResult, replay
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.state import MemoryState
from core.types import ChatRequest, Message, Usage
from core.usage import Filters, Reader, UsageEvent, UsageLog

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
START = datetime(2026, 5, 19, tzinfo=UTC)  # one whole day of the demo
END = datetime(2026, 5, 20, tzinfo=UTC)
FREE = "smollm2-135m-instruct"  # priced at $0: a degraded call to it is never blocked
ENGINEER = Actor("eve", "engineer")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("demo")
    load_demo(home, days=10, now=NOW)
    yield home


@pytest.fixture(scope="module")
def reader(demo: Path) -> Iterator[Reader]:
    with Reader(demo) as r:
        yield r


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def day_spend(reader: Reader, **scope: str) -> int:
    return int(reader.totals(Filters(start=START, end=END, **scope))["cost_picousd"])


def usd(pico: int) -> Decimal:
    return Decimal(pico).scaleb(-12)


# ---- the independent re-run ----------------------------------------------------------------


class LoggedUsage(Provider):
    """Answers with the usage the log shows for the request id."""

    wire = "test"

    def __init__(self, name: str, usage: dict[str, Usage]) -> None:
        super().__init__(ProviderConfig(name, "dryrun"))
        self.usage = usage

    def complete(self, req: ChatRequest, model: str) -> ProviderResult:
        return ProviderResult("ok", self.usage[req.request_id], "stop", model)

    def stream(self, req: ChatRequest, model: str) -> Iterator[str | ProviderResult]:
        yield self.complete(req, model)


def requests_of(reader: Reader) -> list[tuple[datetime, UsageEvent]]:
    """(first time, final event) per request id whose final event reached a model."""
    events = reader.fetch(Filters(start=START, end=END), order_by="ts", descending=False)
    first: dict[str, datetime] = {}
    last: dict[str, UsageEvent] = {}
    for e in sorted(events, key=lambda e: (e.ts, e.attempt)):
        first.setdefault(e.request_id, e.ts)
        last[e.request_id] = e
    done = [
        (first[k], e)
        for k, e in last.items()
        if e.status == "ok" and e.ai_called and not e.cache_hit and not e.unpriced
    ]
    return sorted(done, key=lambda p: p[0])


def request(e: UsageEvent, cat: Catalog, policy: RoutingPolicy | None) -> ChatRequest:
    """The documented replay request: at most PROMPT_TOKENS of prompt text, the rest of the
    prompt's price carried by max_tokens at the asked model's rates; a prompt in a long-context
    price tier is sent whole."""
    prompt = e.input_tokens + e.cached_input_tokens + e.cache_write_tokens
    out = max(1, e.output_tokens + e.reasoning_tokens)
    asked = (e.requested_model or e.model) if e.degraded else e.model
    model = policy.primary_model if policy else asked
    sent = prompt
    tier = min(r.above_prompt_tokens for r in cat.rows() if r.above_prompt_tokens)
    if PROMPT_TOKENS < prompt <= tier:
        sent = PROMPT_TOKENS
        row = cat.lookup(model, prompt_tokens=sent)
        dear = max(row.output, row.reasoning)
        out += -(-(prompt - sent) * row.input // dear) if dear else 0
        out = max(1, min(out, row.context_window - sent))
    text = " a" * max(1, sent - 7)
    return ChatRequest(
        [Message("user", text)],
        model=None if policy else asked,
        task=e.task,
        max_tokens=out,
        org=e.org,
        project=e.project,
        user=e.user,
        app=e.app,
        criticality=e.criticality,
        cache=False,  # type: ignore[arg-type]
        request_id=e.request_id,
    )


def rerun(
    reader: Reader,
    tmp: Path,
    cat: Catalog,
    budgets: Sequence[Budget],
    policies: Sequence[RoutingPolicy],
    limits: Sequence[RateLimit],
) -> pd.DataFrame:
    """Every call of the period through a Router holding the proposal; its own log back."""
    calls = requests_of(reader)
    plane = ControlPlane(f"sqlite:///{tmp / 'rerun.db'}", model_exists=cat.has)
    plane.create_user(ENGINEER.username, "engineer-pass-1", ENGINEER.role, SYSTEM)
    for b in budgets:
        plane.upsert_budget(b, ENGINEER)
    for p in policies:
        plane.upsert_policy(p, ENGINEER)
    for r in limits:
        plane.upsert_rate_limit(r, ENGINEER)
    clock = [START]
    state = MemoryState()
    controls = Controls(cat, plane=plane, state=state, poll_s=3600)
    controls.guard = BudgetGuard(
        state, clock=lambda: clock[0], canonical=lambda m: cat.canonical(m) if cat.has(m) else m
    )
    usage = {
        e.request_id: Usage(
            e.input_tokens,
            e.cached_input_tokens,
            e.cache_write_tokens,
            e.output_tokens,
            e.reasoning_tokens,
            e.usage_estimated,
        )
        for _, e in calls
    }
    names = {r.provider for r in cat.rows()}
    providers: dict[str, Provider] = {n: LoggedUsage(n, usage) for n in names}
    home = tmp / "rerun"
    by_task = {p.task: p for p in policies}
    router = Router(
        Settings(home=home, providers={n: p.config for n, p in providers.items()}),
        catalog=cat,
        log=UsageLog(home),
        providers=providers,
        controls=controls,
        retry=RetryPolicy(max_attempts=1),
    )
    for ts, e in calls:
        clock[0] = ts
        with contextlib.suppress(CostlineError):
            router.complete(request(e, cat, by_task.get(e.task or "")))
    router.close()
    plane.close()
    with Reader(home) as r:
        return r.events(columns=["request_id", "status", "model", "degraded", "cost_picousd"])


def replayed(result: ReplayResult) -> pd.DataFrame:
    return result.details[result.details["replayed"]]


# ---- tests ---------------------------------------------------------------------------------


def test_replay_counts_equal_an_independent_rerun_through_the_router(
    reader: Reader, catalog: Catalog, tmp_path: Path
) -> None:
    acme = day_spend(reader, org="acme")
    budgets = [
        Budget(
            id="acme-day",
            name="acme daily",
            scope="org",
            scope_value="acme",
            period="day",
            limit_usd=usd(acme * 2 // 5),
            action="degrade",
            degrade_to="gpt-4o-mini",
        ),
        Budget(
            id="initech-day",
            name="initech daily",
            scope="org",
            scope_value="initech",
            period="day",
            limit_usd=usd(day_spend(reader, org="initech") // 2),
            action="block",
        ),
        Budget(
            id="search-tokens",
            name="search tokens",
            scope="task",
            scope_value="search",
            period="day",
            limit_tokens=400_000,
            action="block",
        ),
        Budget(id="all", name="everything", limit_usd=usd(acme * 10), action="alert"),
    ]
    policies = [
        RoutingPolicy("summarize", "gemini-2.5-flash", ("claude-3-5-haiku",), strategy="cheapest")
    ]
    limits = [
        RateLimit("per-user", scope="user", limit=10, window_s=3600, algorithm="sliding_window")
    ]
    result = replay(reader, START, END, budgets, policies, catalog=catalog, rate_limits=limits)
    again = rerun(reader, tmp_path, catalog, budgets, policies, limits)
    print(
        f"\nreplayed {result.replayed} of {result.calls} calls in {result.seconds:.1f} s:"
        f" {result.degraded} degraded, {result.blocked} blocked,"
        f" {result.rate_limited} rate limited; ${result.cost_actual} -> ${result.cost_replayed}"
    )
    assert result.replayed == len(again) > 1000
    assert result.degraded == int(again["degraded"].sum()) > 0
    assert result.blocked == int((again["status"] == "blocked").sum()) > 0
    assert result.rate_limited == int((again["status"] == "rate_limited").sum()) > 0
    assert result.errors == int((again["status"] == "error").sum()) == 0
    mine = replayed(result).set_index("request_id")
    theirs = again.set_index("request_id").loc[mine.index]
    assert (mine["status_replayed"] == theirs["status"]).all()
    assert (mine["model_replayed"] == theirs["model"]).all()
    assert [int(v) for v in mine["cost_replayed_picousd"]] == [
        int(v) for v in theirs["cost_picousd"]
    ]
    kept = result.details[~result.details["replayed"]]
    total = sum(int(v) for v in again["cost_picousd"]) + sum(
        int(v) for v in kept["cost_actual_picousd"]
    )
    assert result.cost_replayed == usd(total)
    hit = result.by_user[result.by_user["blocked"] + result.by_user["degraded"] > 0]
    assert set(hit["user"]) == set(
        mine[(mine["status_replayed"] == "blocked") | mine["degraded_replayed"]]["user"]
    )


def test_a_generous_budget_blocks_nothing_and_reprices_every_call_exactly(
    reader: Reader, catalog: Catalog
) -> None:
    budgets = [
        Budget(id="big", name="big", limit_usd=Decimal(10**6), action="block"),
        Budget(
            id="big-acme",
            name="big acme",
            scope="org",
            scope_value="acme",
            period="day",
            limit_usd=Decimal(10**5),
            action="degrade",
            degrade_to=FREE,
        ),
    ]
    result = replay(reader, START, END, budgets, catalog=catalog)
    assert (result.degraded, result.blocked, result.rate_limited, result.errors) == (0, 0, 0, 0)
    assert result.replayed > 1000
    d = replayed(result)
    same = d[~d["degraded_actual"].astype(bool)]
    assert (same["model_replayed"] == same["model_actual"]).all()
    assert [int(v) for v in same["cost_replayed_picousd"]] == [
        int(v) for v in same["cost_actual_picousd"]
    ]
    assert result.cost_actual == usd(sum(int(v) for v in result.details["cost_actual_picousd"]))


def test_a_tiny_user_budget_blocks_exactly_that_users_calls(
    reader: Reader, catalog: Catalog
) -> None:
    user = "dmitri@initech.com"
    budgets = [
        Budget(
            id="tiny",
            name="tiny",
            scope="user",
            scope_value=user,
            period="day",
            limit_usd=Decimal("0.000001"),
            action="block",
        )
    ]
    result = replay(reader, START, END, budgets, catalog=catalog)
    d = replayed(result)
    theirs, others = d[d["user"] == user], d[d["user"] != user]
    assert len(theirs) > 10
    assert (theirs["status_replayed"] == "blocked").all()
    assert result.blocked == len(theirs)
    assert (others["status_replayed"] == "ok").all()
    assert "budget 'tiny'" in theirs["reason"].iloc[0]
    row = result.by_user.iloc[0]
    assert (row["user"], row["blocked"]) == (user, len(theirs))
    assert int(row["cost_replayed_picousd"]) == 0 < int(row["cost_actual_picousd"])


def test_a_tiny_degrade_budget_sends_its_orgs_calls_to_the_free_model(
    reader: Reader, catalog: Catalog
) -> None:
    budgets = [
        Budget(
            id="tiny-org",
            name="tiny org",
            scope="org",
            scope_value="initech",
            period="day",
            limit_usd=Decimal("0.000001"),
            action="degrade",
            degrade_to=FREE,
        )
    ]
    result = replay(reader, START, END, budgets, catalog=catalog)
    d = replayed(result)
    org, others = d[d["org"] == "initech"], d[d["org"] != "initech"]
    answered = org[org["status_replayed"] == "ok"]
    assert len(answered) > 10 and result.degraded == len(answered)
    assert (answered["model_replayed"] == FREE).all() and answered["degraded_replayed"].all()
    assert all(int(v) == 0 for v in answered["cost_replayed_picousd"])
    assert set(org["status_replayed"]) <= {"ok", "blocked"}  # blocked: too big for its window
    assert (others["status_replayed"] == "ok").all() and not others["degraded_replayed"].any()
    assert result.cost_replayed < result.cost_actual


def test_spend_before_the_period_is_carried_into_the_window(
    reader: Reader, catalog: Catalog
) -> None:
    month = datetime(2026, 5, 1, tzinfo=UTC)
    before = int(reader.totals(Filters(start=month, end=START, org="globex"))["cost_picousd"])
    assert before > 0

    def monthly(limit: int) -> list[Budget]:
        return [
            Budget(
                id="globex-month",
                name="globex",
                scope="org",
                scope_value="globex",
                limit_usd=usd(limit),
                action="block",
            )
        ]

    full = replay(reader, START, END, monthly(before), catalog=catalog)
    d = replayed(full)
    globex = d[d["org"] == "globex"]
    assert len(globex) > 10 and (globex["status_replayed"] == "blocked").all()
    room = replay(
        reader, START, END, monthly(before + day_spend(reader, org="globex") * 2), catalog=catalog
    )
    assert room.blocked == 0


def test_an_invalid_proposal_raises_naming_the_field(reader: Reader, catalog: Catalog) -> None:
    with pytest.raises(ConfigError) as bad_model:
        replay(reader, START, END, [], [RoutingPolicy("chat", "gpt-9-imaginary")], catalog=catalog)
    assert bad_model.value.field == "primary_model"
    with pytest.raises(ConfigError) as negative:
        replay(
            reader, START, END, [Budget(id="b", name="b", limit_usd=Decimal(-1))], catalog=catalog
        )
    assert negative.value.field == "limit_usd"


def test_a_long_period_is_capped_with_a_note(reader: Reader, catalog: Catalog) -> None:
    result = replay(reader, START, END, [], catalog=catalog, max_calls=200)
    assert result.calls == 200 and "first 200" in result.note
    assert replay(reader, START, START + timedelta(hours=1), [], catalog=catalog).note == ""


# ---- a scenario small enough to compute by hand ---------------------------------------------


def test_a_hand_computed_scenario(catalog: Catalog) -> None:
    """Eight gpt-4o-mini calls of 1,000 input + 500 output tokens: $0.15 and $0.60 per 1M, so
    each costs 150,000,000 + 300,000,000 = 450,000,000 pUSD ($0.00045), reserved exactly.

    acme, a $0.001/day block budget: calls 1 and 2 fit ($0.0009), call 3 would make $0.00135:
    blocked. globex, a $0.0005/day degrade budget: call 1 fits, call 2 would make $0.0009, over
    the soft limit: degraded to the $0 model. bob (initech, no budget), 2 calls per hour: his
    3rd call is rate-limited. Replayed spend: 5 calls at full price, 1 at $0."""
    call = 450_000_000
    plan = [  # (minute, org, user)
        (0, "acme", "ann"),
        (1, "acme", "ann"),
        (2, "acme", "ann"),
        (3, "globex", "gus"),
        (4, "globex", "gus"),
        (10, "initech", "bob"),
        (11, "initech", "bob"),
        (12, "initech", "bob"),
    ]
    at = datetime(2026, 5, 19, 10, 0, tzinfo=UTC)
    events = [
        UsageEvent(
            request_id=f"hand-{i}",
            ts=at + timedelta(minutes=minute),
            org=org,
            user=user,
            provider="openai",
            model="gpt-4o-mini",
            requested_model="gpt-4o-mini",
            status="ok",
            input_tokens=1_000,
            output_tokens=500,
            cost_picousd=call,
            cost_input_picousd=150_000_000,
            cost_output_picousd=300_000_000,
        )
        for i, (minute, org, user) in enumerate(plan)
    ]
    budgets = [
        Budget(
            id="acme",
            name="acme",
            scope="org",
            scope_value="acme",
            period="day",
            limit_usd=Decimal("0.001"),
            action="block",
        ),
        Budget(
            id="globex",
            name="globex",
            scope="org",
            scope_value="globex",
            period="day",
            limit_usd=Decimal("0.0005"),
            action="degrade",
            degrade_to=FREE,
        ),
    ]
    bob = RateLimit(id="bob", scope="user", scope_value="bob", limit=2, window_s=3600)
    result = replay(events, START, END, budgets, catalog=catalog, rate_limits=[bob])
    assert (result.calls, result.replayed) == (8, 8)
    assert (result.blocked, result.degraded, result.rate_limited, result.errors) == (1, 1, 1, 0)
    d = result.details.set_index("request_id")
    assert list(d["status_replayed"]) == [
        "ok",
        "ok",
        "blocked",
        "ok",
        "ok",
        "ok",
        "ok",
        "rate_limited",
    ]
    assert d.loc["hand-4", "model_replayed"] == FREE and bool(d.loc["hand-4", "degraded_replayed"])
    assert result.cost_actual == Decimal("0.0036")  # 8 x $0.00045
    assert result.cost_replayed == Decimal("0.00225")  # 5 x $0.00045 + $0
    assert [int(v) for v in d["cost_replayed_picousd"]] == [call, call, 0, call, 0, call, call, 0]
