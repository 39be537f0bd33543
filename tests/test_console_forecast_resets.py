"""The Forecast page's budget chart counts a budget's window as the Budgets page does: from
its last reset when it was reset in the window (``POST /budgets/{id}/reset``), at the same
"now", so the chart's cumulative line, the table and the Budgets page agree."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from core import clock
from core.control import SYSTEM, Budget, ControlPlane
from core.types import PICO
from core.usage import UsageLog
from tests.console_support import ADMIN_PASSWORD, app, make_users
from tests.events_support import spend_event

NOW = datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)
RESET = datetime(2026, 11, 12, 15, 0, tzinfo=UTC)


@pytest.fixture
def reset_home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """40 days of $2 at noon for org a, plus $1 on the reset day before the reset (09:00) and
    $3 after it (16:00); a monthly budget of org a reset on 12 Nov at 15:00."""
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    log = UsageLog(costline_home)
    noon = NOW.replace(hour=12, minute=0, second=0)
    for d in range(1, 41):
        log.append(spend_event(f"n{d}", noon - timedelta(days=d), 2.0))
    log.append(spend_event("before", RESET.replace(hour=9), 1.0))
    log.append(spend_event("after", RESET.replace(hour=16), 3.0))
    log.close()
    make_users(costline_home)
    with ControlPlane(f"sqlite:///{costline_home / 'control.db'}") as plane:
        plane.upsert_budget(
            Budget(
                id="org-a",
                name="Org a monthly",
                scope="org",
                scope_value="a",
                limit_usd=Decimal(60),
                timezone="UTC",
            ),
            SYSTEM,
        )
        with clock.frozen(RESET):
            plane.reset_budget("org-a", SYSTEM)
    return costline_home


def chart_tables(at) -> list[pd.DataFrame]:  # type: ignore[no-untyped-def]
    proto = at.get("vega_lite_chart")[0].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]


def test_budget_chart_counts_from_the_last_reset_like_the_table(reset_home: Path) -> None:
    # counted since the reset: $3 on 12 Nov after it (that day's noon call was before), then
    # $2 a day 13..19 Nov
    counted = 3.0 + 2.0 * 7
    with clock.frozen(NOW):
        budgets = app("engineer", timeout=120).run()
        budgets.switch_page("app_pages/budgets.py").run()
        assert not budgets.exception
        at = app("engineer", timeout=300).run()
        at.switch_page("app_pages/forecast.py").run()
        assert not at.exception
        at.selectbox(key="fc_dim").set_value("org").run()
        at.selectbox(key="fc_value_org").set_value("a").run()
        assert at.selectbox(key="fc_budget_org_a").value == "org-a"
        daily = next(t for t in chart_tables(at) if "label" in t.columns and "y" in t.columns)
        at.button_group(key="fc_mode").set_value("Cumulative").run()
        assert not at.exception
    table = next(d.value for d in at.dataframe if "runs out" in d.value.columns)
    assert table["spent"].iloc[0] == f"${counted:,.2f}"
    status = next(d.value for d in budgets.dataframe if "runs out" in d.value.columns)
    assert status["spent"].iloc[0] == f"${counted:,.2f}"
    line = next(t for t in chart_tables(at) if "yhat" in t.columns)
    actual = line.dropna(subset=["actual"])
    # the window counts from the reset day: its first point is what was counted that day
    assert actual["ds"].min() == pd.Timestamp("2026-11-12")
    assert actual["actual"].iloc[0] == pytest.approx(3.0)
    assert actual["actual"].iloc[-1] == pytest.approx(counted)
    assert line["yhat"].dropna().min() == pytest.approx(counted)  # the forecast goes on from there
    # the daily pace spreads the limit over what is left of the window since the reset
    days = (datetime(2026, 12, 1, tzinfo=UTC) - RESET) / timedelta(days=1)
    assert daily["y"].iloc[0] == pytest.approx(60 / days)


def test_outlook_of_a_key_budget_counts_the_key(costline_home: Path) -> None:
    """A budget scoped to a gateway key is forecast like the others (the Forecast page's
    outlook raised 'unknown dimension' for it, and the page failed)."""
    from core import insights
    from core.usage import Reader

    log = UsageLog(costline_home)
    for d in range(1, 20):
        log.append(replace(spend_event(f"k{d}", NOW - timedelta(days=d), 1.5), key="ci-key"))
    log.append(spend_event("other", NOW - timedelta(hours=1), 7.0))
    log.close()
    budget = Budget(
        id="k", name="CI key", scope="key", scope_value="ci-key", limit_usd=Decimal(100)
    )
    with Reader(costline_home) as reader:
        (o,) = insights.budget_outlook(reader, [budget], now=NOW)
    assert o.exhaustion is not None
    assert o.spent_usd == Decimal("1.5") * 19


def test_outlook_counts_the_calls_the_budget_counts(costline_home: Path) -> None:
    """A provider budget in another letter case and a model budget by the catalog's other
    name count what the Budgets page counts (the outlook read $0 and forecast nothing)."""
    from core import insights, reports
    from core.pricing import load_catalog
    from core.usage import Reader

    log = UsageLog(costline_home)
    for d in range(1, 20):
        log.append(spend_event(f"p{d}", NOW - timedelta(days=d), 2.5))
    log.close()
    cat = load_catalog()
    assert cat.canonical("openai/gpt-4o") == "gpt-4o"
    budgets = [
        Budget(id="p", name="P", scope="provider", scope_value="OpenAI", limit_usd=Decimal(90)),
        Budget(id="m", name="M", scope="model", scope_value="openai/gpt-4o", limit_usd=Decimal(90)),
    ]

    def canonical(m: str) -> str:
        return cat.canonical(m) if cat.has(m) else m

    with (
        Reader(costline_home) as reader,
        ControlPlane(f"sqlite:///{costline_home / 'control.db'}") as plane,
    ):
        outlooks = insights.budget_outlook(reader, budgets, now=NOW, canonical=canonical)
        shared = reports.utilisation(reader, plane, budgets, NOW, canonical)
    for o, u in zip(outlooks, shared, strict=True):
        assert o.spent_usd == Decimal(u.spent_picousd) / PICO == Decimal("2.5") * 19, o.budget.id
        assert o.forecast is not None and o.forecast.frame["y"].sum() > 0


def test_run_rate_rounds_half_a_cent_up_like_every_figure(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six days of $1.005: the run-rate reads $1.01 / day (a Decimal's ',.2f' rounds half to
    even: it read $1.00 while the tables and KPIs round half a cent up)."""
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    log = UsageLog(costline_home)
    for d in range(1, 7):
        log.append(spend_event(f"r{d}", NOW.replace(hour=12) - timedelta(days=d), 1.005))
    log.close()
    make_users(costline_home)
    with clock.frozen(NOW):
        at = app("viewer", timeout=120).run()
        at.switch_page("app_pages/forecast.py").run()
    assert not at.exception
    rate = [m.value for m in at.metric if m.label == "Run-rate projection"]
    assert rate == ["$1.01 / day"]
