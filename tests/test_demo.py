"""Demo data: deterministic, realistic (every feature the console shows is in it), priced
exactly like price() per event, idempotent to load, and removable without touching real data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from core.control import SYSTEM, Actor, Budget, ControlPlane, RoutingPolicy
from core.demo import generate_demo, has_demo, load_demo, remove_demo, world
from core.errors import PermissionDenied
from core.pricing import load_catalog, price
from core.types import Usage
from core.usage import Filters, Reader, UsageEvent, UsageLog, compact

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo() -> pa.Table:
    return generate_demo(90, 7, now=NOW)


@pytest.fixture(scope="module")
def frame(demo: pa.Table) -> pd.DataFrame:
    df = demo.to_pandas()
    df["day"] = df["ts"].dt.floor("D")
    return df


def test_same_seed_same_data_other_seed_other_data(demo: pa.Table) -> None:
    assert generate_demo(90, 7, now=NOW).equals(demo)
    other = generate_demo(90, 8, now=NOW)
    assert not other.equals(demo)
    assert pa.compute.sum(other["cost_picousd"]) != pa.compute.sum(demo["cost_picousd"])


def test_shape_of_the_company(frame: pd.DataFrame) -> None:
    assert sorted(frame["org"].unique()) == ["acme", "globex", "initech"]
    assert frame["project"].nunique() == 8
    assert 38 <= frame["user"].nunique() <= 40
    assert set(frame["task"]) == {
        "chat",
        "summarize",
        "search",
        "translate",
        "classify",
        "extract",
        "agent",
    }
    catalog = load_catalog()
    models = set(frame["model"])
    assert len(models) >= 8 and all(catalog.has(m) for m in models)
    assert {"openai", "anthropic", "google", "groq", "deepseek", "mistral"} <= set(
        frame["provider"]
    )
    assert (frame["source"] == "demo").all() and frame["request_id"].str.startswith("demo-").all()
    assert frame["ts"].max() < NOW and frame["ts"].min() >= NOW - timedelta(days=90)
    per_day = frame.groupby("day").size()
    assert 150_000 <= len(frame) <= 400_000 and len(per_day) == 90
    weekday = per_day[per_day.index.day_of_week < 5]
    weekend = per_day[per_day.index.day_of_week >= 5]
    assert weekend.mean() < 0.6 * weekday.mean()  # quieter weekends
    assert 2_000 <= weekday.median() <= 5_000
    assert weekday.iloc[-20:].mean() > 1.3 * weekday.iloc[:20].mean()  # growth


def test_the_runaway_agent_loop(frame: pd.DataFrame) -> None:
    mine = frame[(frame["user"] == world.INCIDENT_USER) & (frame["model"] == world.INCIDENT_MODEL)]
    daily = mine.groupby("day")["cost_picousd"].sum()
    worst = daily.idxmax()
    assert worst.date() == (NOW - timedelta(days=11)).date()  # a Thursday, 11 days ago
    assert 6 <= daily[worst] / daily.drop(worst).median() <= 16
    others = frame[frame["day"] == worst].groupby("user")["cost_picousd"].sum()
    assert others.idxmax() == world.INCIDENT_USER


def test_cache_hits_skips_errors_retries_and_streams(frame: pd.DataFrame) -> None:
    hits = frame[frame["cache_hit"]]
    assert len(hits) > 1000 and (hits["cost_picousd"] == 0).all()
    assert (hits["saved_picousd"] > 0).all() and (hits["latency_ms"] < 20).all()
    skipped = frame[frame["status"] == "skipped"]
    assert len(skipped) > 1000 and not skipped["ai_called"].any()
    assert (skipped["saved_picousd"] > 0).all() and (skipped["cost_picousd"] == 0).all()
    assert set(skipped["task"]) == {"classify", "agent"}
    errors = frame[frame["status"] == "error"]
    assert set(errors["error_type"]) == {"RateLimited", "ProviderServerError", "ProviderTimeout"}
    assert (errors["cost_picousd"] == 0).all() and errors["error_message"].notna().all()
    retried = frame[frame["request_id"].isin(errors["request_id"]) & (frame["status"] == "ok")]
    assert len(retried) > 500 and (retried["attempt"] >= 2).all()
    first = errors[errors["request_id"] == retried["request_id"].iloc[0]]
    assert (first["ts"] < retried["ts"].iloc[0]).all() and (first["attempt"] == 1).any()
    assert (errors.groupby("request_id")["attempt"].max() == 3).sum() > 10  # gave up
    limited = frame[frame["status"] == "rate_limited"]
    assert len(limited) > 20 and (limited["error_type"] == "RateLimitExceeded").all()
    streamed = frame[frame["ttft_ms"].notna()]
    assert len(streamed) > 10_000 and (streamed["ttft_ms"] <= streamed["latency_ms"]).all()
    estimated = frame[frame["usage_estimated"]]
    assert len(estimated) > 100 and estimated["ttft_ms"].notna().all()


def test_budget_degrades_then_blocks(frame: pd.DataFrame) -> None:
    degraded = frame[frame["degraded"]]
    assert len(degraded) > 100 and (degraded["org"] == "globex").all()
    assert (degraded["model"] == "gpt-4o-mini").all()
    assert (degraded["requested_model"] != "gpt-4o-mini").all()
    # The budget guard's semantics and wording: degrade past 100%, block past the 125% cap.
    pattern = re.compile(
        r"^gpt-4o-mini: org=globex at (\d+)% of monthly budget "
        r"'Demo: globex monthly', degraded from (\S+)$"
    )
    for reason, requested in zip(
        degraded["route_reason"], degraded["requested_model"], strict=True
    ):
        m = pattern.match(reason)
        assert m is not None and m.group(2) == requested
        assert 100 <= int(m.group(1)) < 125
    blocked = frame[frame["status"] == "blocked"]
    assert len(blocked) > 100 and (blocked["org"] == "globex").all()
    assert (blocked["error_type"] == "BudgetExceeded").all()
    assert (blocked["cost_picousd"] == 0).all() and not blocked["ai_called"].any()
    assert blocked["ts"].min() > degraded["ts"].min()  # degraded first, then blocked
    head = "budget 'Demo: globex monthly' (org=globex): spent $"
    assert blocked["error_message"].str.startswith(head).all()
    assert blocked["error_message"].str.contains(r"critical requests may reach \$").all()
    assert blocked["error_message"].str.contains("past the hard cap").all()


def test_costs_equal_price_per_event(frame: pd.DataFrame) -> None:
    catalog = load_catalog()
    billed = frame[(frame["status"] == "ok") & ~frame["cache_hit"]]
    hits = frame[frame["cache_hit"]]
    sample = pd.concat(
        [
            billed.sample(1500, random_state=1),
            hits.sample(300, random_state=1),
            billed[billed["input_tokens"] > 200_000],
        ]
    )
    for e in sample.itertuples():
        usage = Usage(
            e.input_tokens,
            e.cached_input_tokens,
            e.cache_write_tokens,
            e.output_tokens,
            e.reasoning_tokens,
        )
        cost = price(usage, catalog.lookup(e.model, e.ts.date(), usage.prompt_tokens))
        if e.cache_hit:
            assert (e.cost_picousd, e.saved_picousd) == (0, cost.total)
            continue
        assert (
            e.cost_input_picousd,
            e.cost_cached_input_picousd,
            e.cost_cache_write_picousd,
            e.cost_output_picousd,
            e.cost_reasoning_picousd,
        ) == (cost.input, cost.cached_input, cost.cache_write, cost.output, cost.reasoning)
        assert e.cost_picousd == cost.total > 0
    parts = [c for c in frame.columns if c.startswith("cost_") and c != "cost_picousd"]
    assert (frame[parts].sum(axis=1) == frame["cost_picousd"]).all()


def _app_events(n: int) -> list[UsageEvent]:
    t0 = NOW - timedelta(days=3)
    return [
        UsageEvent(
            request_id=f"app-{i}",
            ts=t0 + timedelta(minutes=i),
            org="acme",
            user="real-user",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=100 + i,
            output_tokens=10,
            cost_picousd=1_000_003 * i,
        )
        for i in range(n)
    ]


def test_load_is_idempotent_and_removal_keeps_real_data(costline_home: Path) -> None:
    with UsageLog() as log:
        log.append_many(_app_events(300))
    real = Reader().totals()
    plane = ControlPlane(model_exists=load_catalog().has)
    plane.upsert_policy(RoutingPolicy("chat", "gpt-4o"), SYSTEM)  # a real policy for "chat"
    plane.upsert_budget(Budget(id="real-budget", name="Real", limit_usd=1), SYSTEM)

    first = load_demo(days=20, now=NOW)
    assert first.loaded and has_demo()
    assert Reader().count(Filters(source="demo")) == first.events > 40_000
    again = load_demo(days=20, now=NOW)
    assert not again.loaded and again.events == first.events
    assert Reader().count() == real["requests"] + first.events
    policies = {p.task: p for p in plane.policies()}
    assert policies["chat"].primary_model == "gpt-4o"  # the real one was not replaced
    assert set(policies) == set(world.TASK_NAMES)
    budgets = {b.id: b for b in plane.budgets()}
    assert budgets["demo-org-globex-monthly"].action == "degrade"
    assert {b.scope for b in budgets.values() if b.id.startswith("demo-")} == {
        "org",
        "project",
        "user",
        "model",
    }
    assert {r.id for r in plane.rate_limits()} == {"demo-user-rpm", "demo-org-tpm"}
    assert {s.key for s in plane.sampling()} == {"classify", "agent"}
    edited = policies["extract"]  # someone tunes a demo policy: it becomes theirs
    plane.upsert_policy(RoutingPolicy("extract", edited.primary_model, max_tokens=500), SYSTEM)

    compact(costline_home)  # demo rows now share segments with real ones
    assert Reader().count() == real["requests"] + first.events
    removed = remove_demo()
    assert removed == first.events and not has_demo()
    after = Reader().totals()
    assert after == real
    assert {e.request_id for e in Reader().fetch()} == {f"app-{i}" for i in range(300)}
    assert {b.id for b in plane.budgets()} == {"real-budget"}
    assert {p.task for p in plane.policies()} == {"chat", "extract"}
    assert plane.rate_limits() == [] and plane.sampling() == []
    assert any(a.action == "data_load.delete" for a in plane.audit(limit=50))


def test_refresh_regenerates_without_duplicates() -> None:
    first = load_demo(days=10, now=NOW)
    later = load_demo(days=10, now=NOW + timedelta(days=1), refresh=True)
    assert later.loaded and later.end == first.end + timedelta(days=1)
    assert Reader().count() == later.events
    totals = Reader().totals()
    assert totals["last_ts"].date() == later.end
    assert totals["cost_usd"] == later.cost_usd


def test_viewers_may_not_load_the_demo() -> None:
    ControlPlane().close()
    with pytest.raises(PermissionDenied):
        load_demo(days=3, now=NOW, actor=Actor("finance", "viewer"))
    assert Reader().count() == 0 and not has_demo()


def test_budget_alerts_of_the_history_are_seeded_and_removed_with_it(costline_home: Path) -> None:
    """Each demo budget's thresholds fired once per window, at the call that crossed them,
    as the guard would have; removing the demo removes them and the anomaly alerts of its
    days (audited); other alerts stay."""
    plane = ControlPlane(model_exists=load_catalog().has)
    plane.upsert_budget(Budget(id="real-budget", name="Real", limit_usd=1), SYSTEM)
    plane.record_alert("real-budget", "2026-05", 50, message="real")
    load_demo(days=90, now=NOW)
    budgets = {b.id: b for b in plane.budgets()}
    alerts = [a for a in plane.alerts(limit=10_000) if a.budget_id.startswith("demo-")]
    assert len(alerts) > 10
    with Reader() as reader:
        for a in alerts:
            b = budgets[a.budget_id]
            start, end = b.window_bounds(a.ts)
            assert b.window_key(a.ts) == a.window_key and start <= a.ts < end
            scope = {} if b.scope == "global" else {b.scope: b.scope_value}
            at = reader.totals(Filters(start=start, end=a.ts + timedelta(microseconds=1), **scope))[
                "cost_picousd"
            ]  # type: ignore[arg-type]
            before = reader.totals(Filters(start=start, end=a.ts, **scope))["cost_picousd"]  # type: ignore[arg-type]
            limit = b.limit_picousd or 0
            assert a.spent_picousd == at and at * 100 >= a.threshold_pct * limit
            assert before * 100 < a.threshold_pct * limit  # the first call to cross it
            assert a.message.startswith(f"budget '{b.name}'")
    globex = {
        a.threshold_pct
        for a in alerts
        if a.budget_id == "demo-org-globex-monthly"
        and a.window_key == budgets["demo-org-globex-monthly"].window_key(NOW)
    }
    assert globex == {50, 75, 90, 100}  # it is degrading now
    inside = (NOW - timedelta(days=3)).date().isoformat()  # an anomaly found in demo data
    plane.record_alert("org=initech", inside, 0, kind="anomaly", message="in the demo")
    plane.record_alert("org=initech", "2020-01-06", 0, kind="anomaly", message="before it")
    assert remove_demo() > 0
    assert sorted((a.kind, a.window_key) for a in plane.alerts()) == [
        ("anomaly", "2020-01-06"),
        ("budget", "2026-05"),
    ]
    deleted = [e for e in plane.audit(limit=1_000) if e.action == "alert.delete"]
    assert len(deleted) == len(alerts) + 1


def test_demo_history_alerts_sum_exactly_past_int64(costline_home: Path) -> None:
    """A window spending more than ~$92,234 (100 x its picodollars pass 2**63): the alerts
    the demo history derives fire at the call that reached each threshold, with the exact
    spend. The int64 cumsum * 100 wrapped and fired (or missed) them at the wrong call."""
    from decimal import Decimal

    from core.demo._alerts import history_alerts

    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    costs = [50_000 * 10**12 + 7, 50_000 * 10**12 + 11, 50_000 * 10**12 + 13, 1]
    with UsageLog(costline_home, compact_threshold=0) as log:
        log.append_many(
            [
                UsageEvent(request_id=f"big{i}", ts=t0 + timedelta(hours=i), org="acme",
                           project="p", user="u", model="gpt-4o", provider="openai",
                           cost_picousd=c, source="test")
                for i, c in enumerate(costs)
            ]
        )  # fmt: skip
    with Reader(costline_home) as reader:
        table = reader.table(
            "SELECT ts, org, project, user, model, cost_picousd FROM events ORDER BY ts"
        )
    b = Budget(id="acme", name="acme", scope="org", scope_value="acme",
               limit_usd=Decimal(200_000), thresholds=(50, 75, 90))  # fmt: skip
    got = [(a.pct, a.ts, a.spent_picousd) for a in history_alerts(table, [b])]
    assert (
        got
        == [
            (50, t0 + timedelta(hours=1), sum(costs[:2])),  # $100,000.000000000018 >= $100,000
            (75, t0 + timedelta(hours=2), sum(costs[:3])),
        ]
    )
