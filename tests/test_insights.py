"""core.insights on real parts: the usage log (journal -> Parquet -> DuckDB), the SQLite control
plane, the shipped price catalog and the demo data with its injected runaway loop."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core import clock, insights
from core.alerts import AlertSink
from core.control import Budget, ControlPlane, ModelScore
from core.demo import load_demo, world
from core.insights import ForecastCache
from core.pricing import load_catalog, price
from core.types import PICO, Usage
from core.usage import Reader, UsageEvent, UsageLog

NOW = datetime(2026, 5, 10, 0, 1, tzinfo=UTC)  # one minute into 10 May (UTC)


def log_events(home: Path, events: Iterable[UsageEvent]) -> None:
    log = UsageLog(home)
    for e in events:
        log.append(e)
    log.close()


def spend_event(i: str, ts: datetime, usd: float, **kw: object) -> UsageEvent:
    fields: dict[str, object] = {
        "org": "a",
        "user": "u1",
        "task": "chat",
        "model": "gpt-4o",
        "provider": "openai",
        "source": "test",
    }
    fields.update(kw)
    return UsageEvent(request_id=i, ts=ts, cost_picousd=int(round(usd * PICO)), **fields)  # type: ignore[arg-type]


def plane_for(home: Path) -> ControlPlane:
    return ControlPlane(f"sqlite:///{home / 'control.db'}")


# ---- anomalies -----------------------------------------------------------------------------


def test_demo_incident_is_found_attributed_and_alerted_once(costline_home: Path) -> None:
    summary = load_demo(costline_home, days=62)  # the incident and its four weeks before
    incident = date.fromisoformat(summary.incident[:10])
    with Reader(costline_home) as reader:
        since = insights.local_midnight(incident, "UTC")  # the incident's day on (keeps it quick)
        found = insights.scan_usage(reader, since=since)
        daily = {
            f.subject: f
            for f in found
            if f.grain == "day" and f.metric == "spend" and f.ts.date() == incident
        }
        # the loop shows in its org and in its model (both true); other series may cross a
        # threshold that day too (noise), which is neither asserted nor allowed to matter
        assert "org=initech" in daily, [f.describe() for f in found]
        for subject in ("org=initech", f"model={world.INCIDENT_MODEL}"):
            if subject in daily:
                assert daily[subject].top("user").value == world.INCIDENT_USER  # type: ignore[union-attr]
        org = daily["org=initech"]
        assert org.anomaly.ratio > 1.5 and org.anomaly.excess_usd > 5
        assert org.top("user").value == world.INCIDENT_USER  # type: ignore[union-attr]
        # the loop is most of the excess (the rest is other users' day-to-day noise)
        assert org.top("user").share > 0.6  # type: ignore[union-attr]
        assert org.top("model").value == world.INCIDENT_MODEL  # type: ignore[union-attr]
        assert org.top("project").value == world.INCIDENT_PROJECT  # type: ignore[union-attr]
        model = f"model={world.INCIDENT_MODEL}"
        hours = [  # the loop's hours (another user's busy hour that day is news of its own)
            f
            for f in found
            if f.grain == "hour"
            and f.subject in ("org=initech", model)
            and f.ts.date() == incident
            and f.top("user").value == world.INCIDENT_USER  # type: ignore[union-attr]
        ]
        assert any(f.subject == model for f in hours), [f.describe() for f in found]
        assert all(8 <= f.ts.hour <= 23 for f in hours)  # the loop ran 08:00-23:30
        with plane_for(costline_home) as plane:
            later = clock.now() + timedelta(days=30)  # old news is not alerted
            assert insights.raise_anomaly_alerts(found, AlertSink(plane), now=later) == []
            first = insights.raise_anomaly_alerts(found, AlertSink(plane))
            assert ("org=initech", incident.isoformat()) in {(f.subject, f.day) for f in first}
            alerts = [a for a in plane.alerts() if a.kind == "anomaly"]
            mine = [
                a
                for a in alerts
                if a.budget_id == "org=initech" and a.window_key == incident.isoformat()
            ]
            assert len(mine) == 1 and world.INCIDENT_USER in mine[0].message
            assert world.INCIDENT_MODEL in mine[0].message
            # the same findings again through another sink (another process or scan)
            assert insights.raise_anomaly_alerts(found, AlertSink(plane)) == []
            assert len([a for a in plane.alerts() if a.kind == "anomaly"]) == len(alerts)


def test_flat_usage_has_no_anomalies_and_records_no_alert(costline_home: Path) -> None:
    start = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    events = [
        spend_event(
            f"f{d}-{org}-{model}-{h}",
            start - timedelta(days=d, hours=-h),
            usd,
            org=org,
            model=model,
            user=f"{org}-user",
        )
        for d in range(1, 46)
        for org, usd in (("a", 40.0), ("b", 25.0))
        for model in ("gpt-4o", "gpt-4o-mini")
        for h in (3, 9, 15, 21)
    ]
    log_events(costline_home, events)
    with Reader(costline_home) as reader, plane_for(costline_home) as plane:
        found = insights.scan_usage(reader, since=start - timedelta(days=40))
        assert found == []
        assert insights.raise_anomaly_alerts(found, AlertSink(plane)) == []
        assert plane.alerts() == []


def test_an_incidents_alert_does_not_depend_on_what_else_crossed_that_day(
    costline_home: Path,
) -> None:
    """A loop in org a shows in its org and in its model (both true), and that day another
    org spikes too, far more for its size. Org a's alert - its text, its attribution, its
    exact spend - is the same whether the scan looks at orgs alone or at models as well, and
    however few findings the scan attributes besides each series' lead."""
    start = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    day = start - timedelta(days=1)
    base = [
        spend_event(f"b{d}-{org}-{h}", start - timedelta(days=d, hours=-h), usd, org=org)
        for d in range(1, 36)
        for org, usd in (("a", 10.0), ("c", 0.5))
        for h in (3, 9, 15, 21)
    ]
    loop = [
        spend_event(f"l{i}", day + timedelta(hours=8, minutes=5 * i), 1.0, model="gpt-4o-mini")
        for i in range(120)  # $120 on a model org a never used, by one user
    ]
    loop = [dataclasses.replace(e, user="looper") for e in loop]
    noise = [
        spend_event(f"n{h}", day + timedelta(hours=h), 25.0, org="c", user="c-user")
        for h in (10, 14)  # org c: $50 against its usual $2, a larger surprise than org a's
    ]
    log_events(costline_home, [*base, *loop, *noise])
    key = ("org=a", day.date().isoformat())
    messages = []
    with Reader(costline_home) as reader:
        for dims, top in ((("org",), 40), (("org", "model"), 40), (("org", "model"), 1)):
            found = insights.scan_usage(reader, dims=dims, since=day, attribute_top=top)
            groups = insights.by_series_day(found)
            assert key in groups, [f.describe() for f in found]
            lead = insights.lead(groups[key])
            assert lead.top("user").value == "looper"  # type: ignore[union-attr]
            assert lead.top("model").value == "gpt-4o-mini"  # type: ignore[union-attr]
            messages.append((insights.alert_message(groups[key]), insights.exact_spent(lead)))
            if dims == ("org", "model"):
                assert ("model=gpt-4o-mini", key[1]) in groups  # the model's finding is true too
                assert ("org=c", key[1]) in groups
    assert messages[1:] == messages[:-1], messages
    assert messages[0][1] == sum(
        e.cost_picousd for e in [*base, *loop] if e.org == "a" and e.ts >= day
    )
    with plane_for(costline_home) as plane:
        assert insights.raise_anomaly_alerts(found, AlertSink(plane))
        mine = [a for a in plane.alerts() if (a.budget_id, a.window_key) == key]
        assert [(a.message, a.spent_picousd) for a in mine] == [messages[0]]


def test_anomaly_alert_stores_the_exact_picodollars_past_2_53(costline_home: Path) -> None:
    """A day's spend above 2**53 pUSD (~$9,007) is stored to the picodollar: the alert's
    spent_picousd and its text come from an integer sum, not from the detector's float."""
    from core.worker import Worker

    start = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    spike = 12_345_678_901_234_567  # odd and > 2**53: no double holds it
    base = [
        UsageEvent(
            request_id=f"b{d}-{h}",
            ts=start - timedelta(days=d, hours=-h),
            cost_picousd=50 * PICO + d,
            org="a",
            user="u1",
            model="gpt-4o",
            provider="openai",
            source="test",
        )
        for d in range(1, 31)
        for h in (6, 18)
    ]
    day = start - timedelta(days=1)
    loud = [
        UsageEvent(
            request_id=f"s{i}",
            ts=day + timedelta(hours=10, minutes=i),
            cost_picousd=part,
            org="a",
            user="looper",
            model="gpt-4o",
            provider="openai",
            source="test",
        )
        for i, part in enumerate((spike - 3, 1, 1, 1))
    ]
    log_events(costline_home, [*base, *loud])
    exact = spike + sum(e.cost_picousd for e in base if e.ts >= day)  # type: ignore[misc]
    assert float(exact) != exact  # the float path cannot store it
    with Reader(costline_home) as reader, plane_for(costline_home) as plane:
        found = insights.scan_usage(reader, dims=("org",), since=day)
        quick = insights.scan_usage(reader, dims=("org",), since=day, exact_spent=False)
        assert quick == [dataclasses.replace(fd, spent_picousd=None) for fd in found]
        assert insights.raise_anomaly_alerts(found, AlertSink(plane))
        (alert,) = [a for a in plane.alerts() if a.kind == "anomaly"]
        assert alert.spent_picousd == exact
        assert f"${Decimal(exact) / PICO:,.2f}" in alert.message, alert.message
    with ControlPlane(f"sqlite:///{costline_home / 'worker.db'}") as plane:
        worker = Worker(costline_home, plane=plane)  # the worker's own anomaly checks
        try:
            worker.tick()
        finally:
            worker.close()
        stored = [a.spent_picousd for a in plane.alerts() if a.budget_id == "org=a"]
        assert stored == [exact]


# ---- forecasts and budgets -----------------------------------------------------------------


def linear(org: str, a: float, b: float, days: int = 60) -> list[UsageEvent]:
    """y_t = a + b t for days t = 0 .. days-1, ending the day before NOW (one event a day)."""
    first = (NOW - timedelta(days=days)).replace(hour=12, minute=0)
    return [
        spend_event(f"{org}-{t}", first + timedelta(days=t), a + b * t, org=org)
        for t in range(days)
    ]


def crossing(spent: float, a: float, b: float, limit: float, t0: int = 60) -> date:
    """First day from NOW on whose end-of-day cumulative spend reaches the limit."""
    total, t = spent, t0
    while True:
        total += a + b * t
        if total >= limit:
            return NOW.date() + timedelta(days=t - t0)
        t += 1


def test_exhaustion_per_budget_on_a_linear_series(costline_home: Path) -> None:
    log_events(costline_home, linear("a", 20.0, 1.0) + linear("b", 10.0, 0.5))
    # 1-9 May are days 51..59 of each series
    spent_a = sum(20.0 + 1.0 * t for t in range(51, 60))
    spent_b = sum(10.0 + 0.5 * t for t in range(51, 60))
    budgets = [
        Budget(id="all", name="All", limit_usd=Decimal(int(spent_a + spent_b + 1500))),
        Budget(
            id="org-a",
            name="Org a",
            scope="org",
            scope_value="a",
            limit_usd=Decimal(int(spent_a + 1000)),
        ),
        Budget(
            id="org-b-small",
            name="Org b small",
            scope="org",
            scope_value="b",
            limit_usd=Decimal(100),
        ),
        Budget(id="tokens", name="Tokens", limit_tokens=1_000_000),
    ]
    with Reader(costline_home) as reader:
        out = {o.budget.id: o for o in insights.budget_outlook(reader, budgets, now=NOW)}
    assert out["org-a"].spent_usd == Decimal(str(spent_a))  # exact, from picodollars
    assert (out["org-a"].start, out["org-a"].end, out["org-a"].window) == (
        date(2026, 5, 1),
        date(2026, 5, 31),
        "2026-05",
    )
    for bid, spent, a, b in (("org-a", spent_a, 20.0, 1.0), ("all", spent_a + spent_b, 30.0, 1.5)):
        o = out[bid]
        ex = o.exhaustion
        assert ex is not None and o.method == "prophet"
        expected = crossing(spent, a, b, float(o.budget.limit_usd))  # type: ignore[arg-type]
        assert ex.date is not None and abs((ex.date - expected).days) <= 1, (bid, ex, expected)
        assert ex.earliest is not None and ex.earliest <= ex.date
        rest = sum(a + b * t for t in range(60, 60 + 22))  # 10..31 May
        assert float(ex.projected_total_usd) == pytest.approx(spent + rest, rel=0.02)
        assert ex.will_exceed and not ex.already_exceeded
    small = out["org-b-small"].exhaustion
    assert small is not None and small.already_exceeded
    assert out["tokens"].exhaustion is None and "token" in out["tokens"].note


def test_forecast_recomputed_only_when_data_version_changes(costline_home: Path) -> None:
    log_events(costline_home, linear("a", 5.0, 0.0, days=10))
    cache = ForecastCache()
    through = NOW.date() - timedelta(days=1)
    with Reader(costline_home) as reader:
        first = insights.forecast(reader, "org", "a", horizon_days=14, through=through, cache=cache)
        assert first.method == "run_rate" and "only 10 days" in first.message
        again = insights.forecast(reader, "org", "a", horizon_days=14, through=through, cache=cache)
        assert again is first and (cache.hits, cache.misses) == (1, 1)
    with Reader(costline_home) as other:  # another reader of the same log: still a hit
        assert (
            insights.forecast(other, "org", "a", horizon_days=14, through=through, cache=cache)
            is first
        )
        version = other.data_version()
    log_events(costline_home, [spend_event("late", NOW - timedelta(hours=2), 50.0)])
    with Reader(costline_home) as reader:
        assert reader.data_version() != version
        changed = insights.forecast(
            reader, "org", "a", horizon_days=14, through=through, cache=cache
        )
        assert changed is not first and cache.misses == 2
        assert changed.frame["y"].max() == pytest.approx(55.0)  # the late event counts
        total = insights.forecast(reader, horizon_days=14, through=through, cache=cache)
        assert total is not changed and cache.misses == 3


def test_daily_history_excludes_today_and_fills_gaps(costline_home: Path) -> None:
    today = clock.now().replace(hour=1, minute=0, second=0, microsecond=0)
    log_events(
        costline_home,
        [
            spend_event("d5", today - timedelta(days=5), 3.0),
            spend_event("d2", today - timedelta(days=2), 4.0, org="b"),
            spend_event("d0", today, 9.0),
        ],
    )
    with Reader(costline_home) as reader:
        hist = insights.daily_history(reader)
        assert list(hist["y"]) == [3.0, 0.0, 0.0, 4.0, 0.0]  # through yesterday, gaps as $0
        assert insights.dimension_values(reader, "org") == ["a", "b"]
        only_a = insights.daily_history(reader, "org", "a")
        assert only_a["y"].sum() == 3.0
        by = insights.forecasts_by(reader, "org", horizon_days=7, backtest=False)
        assert set(by) == {"a", "b"} and all(f.method == "run_rate" for f in by.values())


# ---- savings advice ------------------------------------------------------------------------


def calls(
    model: str,
    n: int,
    start: datetime,
    *,
    prompt: str | None = None,
    gap_s: float = 60.0,
    prefix: str = "",
) -> list[UsageEvent]:
    catalog = load_catalog()
    usage = Usage(input_tokens=3000, output_tokens=300)
    cost = price(usage, catalog.lookup(model, start.date())).total
    return [
        UsageEvent(
            request_id=f"{prefix}{model}-{i}",
            ts=start + timedelta(seconds=gap_s * i),
            org="a",
            user="u1",
            task="chat",
            model=model,
            provider=catalog.provider_of(model),
            input_tokens=3000,
            output_tokens=300,
            cost_picousd=cost,
            latency_ms=900.0,
            prompt=prompt,
        )
        for i in range(n)
    ]


def test_savings_advice_prices_switches_and_caching_with_the_catalog(costline_home: Path) -> None:
    start = clock.now() - timedelta(days=10)
    system = "system: " + "You are a careful assistant. " * 300  # well over 1024 tokens
    log_events(
        costline_home,
        calls("gpt-4o", 200, start, prompt=system + "\nuser: same?")
        + calls("gpt-4o-mini", 200, start + timedelta(days=1)),
    )
    catalog = load_catalog()
    with Reader(costline_home) as reader:
        plain = insights.savings_advice(reader, catalog)
        assert [a.kind for a in plain.items if a.kind == "model_switch"] == []  # quality gate
        scores = [ModelScore("gpt-4o", 0.90), ModelScore("gpt-4o-mini", 0.90)]
        report = insights.savings_advice(reader, catalog, scores=scores)
    kinds = {a.kind: a for a in report.items}
    assert set(kinds) == {"model_switch", "response_cache", "prompt_cache"}, report
    switch = kinds["model_switch"]
    assert (switch.model, switch.alternative, switch.link) == ("gpt-4o", "gpt-4o-mini", "routing")
    tokens = Usage(input_tokens=3000 * 200, output_tokens=300 * 200)
    today = clock.now().date()
    by_hand = (
        price(tokens, catalog.lookup("gpt-4o", today)).total
        - price(tokens, catalog.lookup("gpt-4o-mini", today)).total
    )
    days = report.period_days
    assert switch.monthly_saving_usd == (
        Decimal(by_hand) * 30 / (Decimal(str(days)) * PICO)
    ).quantize(Decimal("0.01"))
    repeats = kinds["response_cache"]
    assert "199 of 400 calls" in repeats.detail
    cached = kinds["prompt_cache"]
    row = catalog.lookup("gpt-4o", today)
    assert f"{row.cached_input / row.input:.0%}" in cached.detail


def test_advice_says_why_caching_was_not_analysed(costline_home: Path) -> None:
    log_events(costline_home, calls("gpt-4o", 30, clock.now() - timedelta(days=3)))
    with Reader(costline_home) as reader:
        report = insights.savings_advice(reader, load_catalog())
    assert "not logged" in report.skipped["response_cache"]
    assert "not logged" in report.skipped["prompt_cache"]


# ---- contracts -----------------------------------------------------------------------------


def test_insights_import_no_ui_package_and_all_is_complete() -> None:
    code = (
        "import sys, core.insights\n"
        "print(','.join(m for m in ('streamlit', 'altair', 'prophet') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    public = {n for n in dir(insights) if not n.startswith("_") and n.isidentifier()}
    assert insights.__all__ == sorted(insights.__all__)
    assert public - {"annotations"} <= set(insights.__all__), public - set(insights.__all__)


def test_day_fraction_left_and_rest_of_today() -> None:
    assert insights.day_fraction_left("UTC", datetime(2026, 5, 10, 0, 0, tzinfo=UTC)) == 1.0
    assert insights.day_fraction_left("UTC", datetime(2026, 5, 10, 18, 0, tzinfo=UTC)) == 0.25
    assert math.isclose(
        insights.day_fraction_left("Europe/Paris", datetime(2026, 5, 10, 10, 0, tzinfo=UTC)), 0.5
    )  # 12:00 in Paris
