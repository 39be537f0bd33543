"""One answer to "will we exceed": the Budgets page, the Forecast outlook and the Playground's
headroom show the same spend, projection and run-out date for a budget (demo data), read
from the usage log; budgets carry a severity; the Overview's two 30-day figures agree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from console.frames import budgets as budget_frames
from console.selection import Money
from core import clock
from core.control import ControlPlane
from core.demo import load_demo
from core.reports import utilisation
from core.usage import Reader
from tests.console_support import ADMIN_PASSWORD, app, choose, make_users

ORGS = ("acme", "globex", "initech")


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("projection-demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COSTLINE_HOME", str(home))
        mp.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        load_demo(home)
        make_users(home)
    yield home


@pytest.fixture
def demo(demo_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_HOME", str(demo_home))
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    return demo_home


def table(at, column: str, key: str | None = None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    found = [
        d.value
        for d in at.dataframe
        if column in d.value.columns and (key is None or getattr(d, "key", None) == key)
    ]
    assert found, f"no table with {column!r}"
    return found[0]


def org_budgets() -> dict[str, str]:
    """Monthly org budgets of the demo, org -> budget name."""
    with ControlPlane() as plane:
        return {
            b.scope_value: b.name
            for b in plane.budgets()
            if b.scope == "org" and b.period == "month" and b.scope_value
        }


@pytest.fixture
def one_minute() -> Iterator[None]:
    """The pages project to "now", which moves on a minute boundary: under load the renders
    below can straddle one, so the clock stands still while they run."""
    with clock.frozen(clock.now().replace(second=30, microsecond=0)):
        yield


def test_budgets_forecast_and_playground_agree_on_demo_data(demo: Path, one_minute: None) -> None:
    named = org_budgets()
    assert len(named) >= 2
    budgets = app("engineer", timeout=120).run()
    budgets.switch_page("app_pages/budgets.py").run()
    assert not budgets.exception
    status = table(budgets, "runs out").set_index("name")

    forecast = app("engineer", timeout=300).run()
    forecast.switch_page("app_pages/forecast.py").run()
    assert not forecast.exception
    outlook = table(forecast, "projected at window end").set_index("budget")

    for org, name in named.items():
        pg = app("engineer", timeout=120).run()
        pg.switch_page("app_pages/playground.py").run()
        pg.multiselect(key="pg_models").set_value(["dryrun-small"])
        choose(pg, "pg_org", org)
        pg.run()
        assert not pg.exception
        head = table(pg, "remaining").set_index("budget")
        row, out, room = status.loc[name], outlook.loc[name], head.loc[name]
        # the same spend, projection and run-out date on all three pages
        assert row["spent"] == out["spent"] == room["spent"], name
        projected = row["projected"].removesuffix(" (capped)")
        assert projected == out["projected at window end"] == room["projected at window end"]
        assert row["runs out"] == out["runs out"] == room["runs out"], name
        assert row["outlook"] == out["outlook"] == room["outlook"], name
        if row["spent"] == "$0.00":  # the first minutes of a window (00:03 on the 1st)
            assert projected == "$0.00", name  # nothing spent yet: nothing to project
        else:
            assert projected != "$0.00", name


def test_headroom_is_read_from_the_usage_log_not_process_counters(demo: Path) -> None:
    """The console process has made no call: its counters are zero, the log is not."""
    named = org_budgets()
    org, name = next(iter(named.items()))
    pg = app("engineer", timeout=120).run()
    pg.switch_page("app_pages/playground.py").run()
    pg.multiselect(key="pg_models").set_value(["dryrun-small"])
    choose(pg, "pg_org", org)
    pg.run()
    row = table(pg, "remaining").set_index("budget").loc[name]
    with ControlPlane() as plane, Reader(demo) as reader:
        b = next(b for b in plane.budgets() if b.name == name)
        u = utilisation(reader, plane, [b], clock.now())[0]
    assert u.spent_picousd > 0
    assert row["spent"] != "$0.00"
    assert row["spent"] == budget_frames.cents(u.spent_picousd)


def test_budget_cards_show_severity_colour_and_run_out_date(demo: Path) -> None:
    at = app("viewer", timeout=120).run()
    at.switch_page("app_pages/budgets.py").run()
    assert not at.exception
    marks = [m.value for m in at.markdown if "runs out:" in m.value]
    with ControlPlane() as plane:
        assert len(marks) == len(plane.budgets())
    assert all(m.startswith((":green[", ":orange[", ":red[")) for m in marks)
    status = table(at, "outlook")
    assert set(status["outlook"]) <= {"on track", "near the limit", "over the limit"}
    for text, share in zip(status["outlook"], status["projected share"], strict=True):
        pct = int(share.rstrip("%").replace(",", ""))
        expected = "over the limit" if pct >= 100 else "near the limit" if pct >= 80 else None
        if expected is not None:
            assert text == expected or text == "over the limit"


def test_last_30_days_and_spend_in_range_agree(demo: Path) -> None:
    at = app("viewer", timeout=120).run()
    assert not at.exception
    figures = {m.label: m.value for m in at.metric}
    assert figures["Spend in range"] != "$0.00"
    assert figures["Last 30 days"] == figures["Spend in range"]


def test_a_daily_budget_in_the_last_minute_of_its_day_is_that_day(costline_home: Path) -> None:
    """The pages pass now rounded up to the next minute: at 23:59:30 the next midnight. The
    budget's window is still the day that is ending, with its spend (not the empty next day)."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from core.control import SYSTEM, Budget
    from core.types import PICO
    from core.usage import UsageEvent, UsageLog

    log = UsageLog(costline_home)
    log.append(
        UsageEvent(
            request_id="late",
            ts=datetime(2026, 3, 31, 23, 59, 10, tzinfo=UTC),
            org="acme",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=10,
            output_tokens=1,
            cost_picousd=3 * PICO,
            source="test",
        )
    )
    log.close()
    daily = Budget(
        id="d",
        name="acme daily",
        scope="org",
        scope_value="acme",
        period="day",
        limit_usd=Decimal(4),
    )
    with ControlPlane() as plane, Reader(costline_home) as reader:
        plane.upsert_budget(daily, SYSTEM)
        (u,) = utilisation(reader, plane, [daily], datetime(2026, 4, 1, tzinfo=UTC))
    assert (u.start, u.end) == (datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert u.spent_picousd == 3 * PICO and u.projected_picousd == 3 * PICO


@pytest.mark.parametrize("pico", [0, 1, 4_999_999_999, 5_000_000_000, 2_675_000_000_000, 10**18])
def test_table_money_reads_the_same_on_every_budget_table(pico: int) -> None:
    """The Forecast page's outlook (``Money.table``) shows a spend as the Budgets and
    Playground pages do (``cents``): one under half a cent (the first minutes of a month)
    read '$0.00' there and '<$0.01' on the other two."""
    assert Money().table(pico) == budget_frames.cents(pico)
