"""Forecast page (AppTest): demo data renders chart, backtest, exhaustion, anomalies and advice;
a short history gives the message and the run-rate; every role can view and export."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from console.charts.forecast import mark_anomalies
from console.charts.spend import spend_over_time
from console.frames import forecast as frames
from console.frames.overview import breakdown_frame, series_frame
from console.selection import Money, Scope
from core import clock
from core.control import ControlPlane
from core.demo import DemoSummary, load_demo, world
from core.insights import Anomaly, Backtest, Contributor, Finding, forecast_spend
from core.types import PICO
from core.usage import UsageEvent, UsageLog
from core.worker import Worker
from tests.console_support import ADMIN_PASSWORD, app, make_users

PAGE = "app_pages/forecast.py"
PAGE_DIR = Path(__file__).resolve().parents[1] / "console" / "app_pages"
ROLES = ("viewer", "engineer", "admin")


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, DemoSummary]]:
    home = tmp_path_factory.mktemp("forecast-demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COSTLINE_HOME", str(home))
        mp.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        summary = load_demo(home)
        make_users(home)
    yield home, summary


@pytest.fixture
def demo(
    demo_home: tuple[Path, DemoSummary],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Path, DemoSummary]:
    monkeypatch.setenv("COSTLINE_HOME", str(demo_home[0]))
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    return demo_home


@pytest.fixture
def short(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Six days of calls (every day before today) and the three users."""
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    # noon of each day (UTC, the default zone): the calls of a day stay in that day whatever
    # the time the test runs (a few minutes after midnight, "now - 1 day - 4 min" was 2 days ago)
    noon = clock.now().replace(hour=12, minute=0, second=0, microsecond=0)
    log = UsageLog(costline_home)
    for d in range(1, 7):
        for j in range(5):
            log.append(
                UsageEvent(
                    request_id=f"s{d}-{j}",
                    ts=noon - timedelta(days=d, minutes=j),
                    org="org0",
                    user="u0",
                    task="chat",
                    provider="openai",
                    model="gpt-4o-mini",
                    input_tokens=1000,
                    output_tokens=100,
                    cost_picousd=(2 + j) * PICO // 10,
                    source="test",
                )
            )
    log.close()
    make_users(costline_home)
    return costline_home


def open_page(role: str, timeout: float = 240):  # type: ignore[no-untyped-def]
    at = app(role, timeout=timeout).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def frame_with(at, column: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with {column!r}: {[list(d.value.columns) for d in at.dataframe]}"
    return found[0]


def chart_tables(at) -> list[pd.DataFrame]:  # type: ignore[no-untyped-def]
    proto = at.get("vega_lite_chart")[0].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]


def test_demo_forecast_page_shows_everything(demo: tuple[Path, DemoSummary]) -> None:
    home, summary = demo
    at = open_page("viewer")
    assert [t.value for t in at.title] == ["Forecast"]
    assert len(at.get("vega_lite_chart")) == 1
    tables = chart_tables(at)
    series = next(t for t in tables if "yhat" in t.columns)
    assert series["actual"].notna().sum() >= 80
    assert series["yhat"].notna().sum() == 31  # 30 days + the last actual day
    assert (series["upper"].dropna() >= series["lower"].dropna()).all()
    marks = next(t for t in tables if "culprits" in t.columns)  # the incident is marked
    incident = summary.incident[:10]
    assert world.INCIDENT_USER in " ".join(marks.loc[marks["when"] == incident, "culprits"])
    bt = frame_with(at, "verdict")
    assert {"forecast MAPE", "naive weekly repeat MAPE", "80% interval coverage"} <= set(bt)
    assert re.fullmatch(
        r"the forecast beats a naive weekly repeat by \d+%: trust it|"
        r"it does not beat a naive repeat: treat as indicative",
        bt["verdict"].iloc[0],
    )
    budgets = frame_with(at, "runs out")
    with ControlPlane(f"sqlite:///{home / 'control.db'}") as plane:
        names = {b.name for b in plane.budgets()}
        # opening the page records nothing: the alert worker does, page or no page
        assert [a for a in plane.alerts() if a.kind == "anomaly"] == []
        worker = Worker(home, plane=plane, name="test")
        assert worker.scan().recorded.get("anomaly", 0) >= 1
        worker.close()
        alerts = [a for a in plane.alerts() if a.kind == "anomaly"]
    assert set(budgets["budget"]) == names and len(names) == 6
    assert budgets["runs out"].str.len().gt(0).all()
    found = frame_with(at, "top user")
    row = found[(found["series"] == "org=initech") & (found["when"] == incident)]
    assert len(row) == 1
    assert row["top user"].iloc[0].startswith(world.INCIDENT_USER)
    assert row["top model"].iloc[0].startswith(world.INCIDENT_MODEL)
    assert ("org=initech", incident) in {(a.budget_id, a.window_key) for a in alerts}
    savings = [m for m in at.metric if m.label == "Saving / month"]
    assert savings and all(m.value.startswith("$") for m in savings)
    assert [b.label for b in at.get("download_button")] == ["Download forecast (CSV)"]
    links = {p.proto.label for p in at.get("page_link")}
    if (PAGE_DIR / "routing.py").exists():  # the editor where model switches are applied
        assert "Apply on Routing & Sampling" in links


def test_org_budget_line_and_cumulative_view(demo: tuple[Path, DemoSummary]) -> None:
    at = open_page("engineer")
    at.selectbox(key="fc_dim").set_value("org").run()
    at.selectbox(key="fc_value_org").set_value("globex").run()
    assert not at.exception
    assert at.selectbox(key="fc_budget_org_globex").value == "demo-org-globex-monthly"
    at.button_group(key="fc_mode").set_value("Cumulative").run()
    assert not at.exception
    tables = chart_tables(at)
    budget = next(t for t in tables if "label" in t.columns and "y" in t.columns)
    assert budget["label"].iloc[0].startswith("Demo: globex monthly")
    cumulative = next(t for t in tables if "yhat" in t.columns)
    assert cumulative["actual"].dropna().is_monotonic_increasing
    assert cumulative["yhat"].dropna().is_monotonic_increasing
    at.slider(key="fc_horizon").set_value(90).run()
    assert not at.exception


@pytest.mark.parametrize("role", ROLES)
def test_short_history_gives_message_and_run_rate(short: Path, role: str) -> None:
    at = open_page(role, timeout=60)
    warning = " ".join(w.value for w in at.warning)
    assert "only 6 days with spend" in warning and "run-rate" in warning
    rate = [m.value for m in at.metric if m.label == "Run-rate projection"]
    assert rate and rate[0].endswith("/ day")
    # mean of the last 6 complete days: 5 calls a day at $0.20..$0.60 = $2.00 a day
    assert rate[0] == "$2.00 / day"
    assert "verdict" not in {c for d in at.dataframe for c in d.value.columns}
    assert [b.label for b in at.get("download_button")] == ["Download forecast (CSV)"]


# ---- pure parts ----------------------------------------------------------------------------


def test_verdict_in_plain_words() -> None:
    good = Backtest(14, 0.062, 0.10, {"80": 0.79, "95": 0.93})
    assert frames.verdict(good) == ("the forecast beats a naive weekly repeat by 38%: trust it")
    bad = Backtest(14, 0.12, 0.10, {"80": 0.5})
    assert frames.verdict(bad) == "it does not beat a naive repeat: treat as indicative"
    assert "not enough history" in frames.verdict(None)
    row = frames.backtest_frame(good).iloc[0]
    assert (row["forecast MAPE"], row["naive weekly repeat MAPE"]) == ("6.2%", "10.0%")
    assert (row["80% interval coverage"], row["95% interval coverage"]) == ("79.0%", "93.0%")


def test_csv_export_has_every_day_in_the_display_currency() -> None:
    hist = pd.DataFrame({"ds": pd.date_range("2026-01-01", periods=20), "y": 10.0})
    fc = forecast_spend(hist, 7, backtest=False)
    text = frames.csv_bytes(fc, Money("EUR", "0.5")).decode()
    table = pd.read_csv(io.StringIO(text))
    assert len(table) == 27 and list(table["kind"].unique()) == ["actual", "forecast"]
    assert table["actual_EUR"].iloc[0] == 5.0
    assert {"forecast_EUR", "lower_80_EUR", "upper_95_EUR"} <= set(table.columns)
    assert table["forecast_EUR"].iloc[-1] == pytest.approx(5.0, rel=0.05)


def finding(day: str, usd: float = 30.0) -> Finding:
    a = Anomaly(
        pd.Timestamp(day),
        usd,
        10.0,
        usd / 10,
        usd - 10,
        6.0,
        "mad",
        "initech",
        [
            Contributor("user", "dmitri@initech.com", 18.0, 1.0, 17.0, 0.9),
            Contributor("model", "claude-sonnet-4", 19.0, 1.0, 18.0, 0.95),
        ],
    )
    return Finding(a, "org", "spend", "day")


def test_overview_marks_put_anomalies_on_the_spend_chart() -> None:
    series = pd.DataFrame(
        {
            "period": pd.to_datetime(["2026-11-11", "2026-11-12", "2026-11-12"]),
            "key": ["a", "a", "b"],
            "cost_picousd": [5 * PICO, 7 * PICO, PICO],
            "saved_picousd": [0, 0, 0],
            "requests": [1, 2, 3],
            "errors": [0, 0, 0],
        }
    )
    frame = series_frame(series, Money(), "day")
    marks = frames.overview_marks(frame, [finding("2026-11-12")], Money(), "day")
    assert list(marks["amount"]) == [8.0] and "dmitri@initech.com (90%)" in marks["culprits"][0]
    assert marks["period"][0] == pd.Timestamp("2026-11-12 10:12")  # the middle of its bar
    weeks = series_frame(series.assign(period=pd.Timestamp("2026-11-09")), Money(), "week")
    by_week = frames.overview_marks(
        weeks, [finding("2026-11-12"), finding("2026-11-16")], Money(), "week"
    )
    assert list(by_week["amount"]) == [13.0]  # Monday 9 Nov holds the 12th, not the 16th
    acme = Scope(
        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC), org=("acme",)
    )
    assert frames.overview_marks(frame, [finding("2026-11-12")], Money(), "day", acme).empty
    base = spend_over_time(frame, breakdown_frame(frame, Money()), "key", "day", "$")
    spec = mark_anomalies(base, marks)
    assert "layer" in spec["vconcat"][0] and len(spec["vconcat"]) == 2
    assert mark_anomalies(base, marks.iloc[0:0]) is base
    assert json.dumps({**spec, "datasets": None}).count("diamond") == 1
    assert spec["datasets"]["marks"] is marks
    assert [p["name"] for p in spec["params"]] == ["periods", "pick"]  # brush and legend kept


def test_marks_follow_the_charted_series() -> None:
    scope = Scope(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 15, tzinfo=UTC))
    series = pd.DataFrame({"ds": pd.date_range("2026-11-10", periods=4), "actual": [1.0, 2, 9, 3]})
    found = [finding("2026-11-12"), finding("2026-11-30")]
    total = frames.marks_frame(found, series, Money(), scope, "total", None)
    assert list(total["amount"]) == [9.0] and total["excess"][0] == "+$20.00"
    other = frames.marks_frame(found, series, Money(), scope, "org", "acme")
    assert other.empty
    mine = frames.marks_frame(found, series, Money(), scope, "org", "initech")
    assert len(mine) == 1
    filtered = Scope(scope.start, scope.end, org=("acme",))
    assert frames.marks_frame(found, series, Money(), filtered, "total", None).empty
    assert date(2026, 11, 12) == mine["ds"].iloc[0].date()


def test_apply_from_advice_opens_routing_with_the_proposed_policy(
    demo: tuple[Path, DemoSummary],
) -> None:
    """A model switch replaces the advised model where the task's policy names it: the
    demo's 'chat' calls on gpt-4o came through its fallbacks, so the fallback is replaced
    and the primary (gpt-4o-mini, the cheap one) stays."""
    from core.insights import savings_advice
    from core.pricing import load_catalog
    from core.usage import Reader

    home, _ = demo
    with ControlPlane(f"sqlite:///{home / 'control.db'}") as plane, Reader(home) as reader:
        policies = {p.task: p for p in plane.policies()}
        report = savings_advice(
            reader, load_catalog(), policies=plane.policies(), scores=plane.model_scores()
        )
    switch = next(
        (i, a)
        for i, a in enumerate(report.items)
        if a.kind == "model_switch"
        and a.alternative
        and a.task in policies
        and a.model in policies[a.task].fallbacks
    )
    item = switch[1]
    before = policies[item.task]
    at = open_page("engineer")
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    index = titles.index(f"**{item.title}**")
    at.button(key=f"fc_apply_{index}").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Routing & Sampling"]
    assert at.selectbox(key="rt_pol_pick").value == item.task
    key = f"rt_pol_{item.task}"
    assert at.text_input(key=f"{key}_task").value == item.task
    assert at.selectbox(key=f"{key}_primary_model").value == before.primary_model
    expected = [item.alternative if m == item.model else m for m in before.fallbacks]
    expected = [m for m in dict.fromkeys(expected) if m != before.primary_model]
    assert at.multiselect(key=f"{key}_fallbacks").value == expected
    assert item.model not in expected and item.alternative in expected
    assert any(item.title in i.value for i in at.info)  # says where the values came from


def test_overview_marks_from_the_day_spend_scan_match_the_full_scan(
    demo: tuple[Path, DemoSummary],
) -> None:
    """The Overview scans only daily spend (its marks' grain and metric): same marks as the
    scan of every grain and metric, found in a fraction of the time (bench: console_range_90d_s)."""
    from core.insights import scan_usage
    from core.usage import Reader

    home, summary = demo
    scope = Scope(datetime.combine(summary.start, datetime.min.time(), tzinfo=UTC), clock.now())
    with Reader(home) as reader:
        series = reader.spend_by(["org"], "day", scope.filters(), tz="UTC")
        full = scan_usage(reader, since=scope.start)
        narrow = scan_usage(reader, since=scope.start, grains=("day",), metrics=("spend",))
    frame = series_frame(series.rename(columns={"org": "key"}), Money(), "day")
    wide_marks = frames.overview_marks(frame, full, Money(), "day", scope)
    day_marks = frames.overview_marks(frame, narrow, Money(), "day", scope)
    assert len(day_marks) >= 1
    pd.testing.assert_frame_equal(
        wide_marks.reset_index(drop=True), day_marks.reset_index(drop=True)
    )
