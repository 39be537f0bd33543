"""The Forecast page's Daily budget line is drawn on what the budget counts: under a sidebar
filter (a user of the budget's org) the pace line was drawn on the filtered series, while the
budget counts its whole scope; now the chart draws the scope's series and its title says the
sidebar filters are not applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from core import clock
from core.control import SYSTEM, Budget, ControlPlane
from core.usage import UsageLog
from tests.console_support import ADMIN_PASSWORD, app, make_users
from tests.events_support import spend_event

NOW = datetime(2026, 11, 20, 10, 0, 30, tzinfo=UTC)


@pytest.fixture
def two_users(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """40 days of org a: u1 $2 and u2 $8 a day; a monthly budget of org a."""
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    log = UsageLog(costline_home)
    noon = NOW.replace(hour=12, minute=0, second=0)
    for d in range(1, 41):
        log.append(spend_event(f"a{d}", noon - timedelta(days=d), 2, user="u1"))
        log.append(spend_event(f"b{d}", noon - timedelta(days=d), 8, user="u2"))
    log.close()
    make_users(costline_home)
    with ControlPlane(f"sqlite:///{costline_home / 'control.db'}") as plane:
        plane.upsert_budget(
            Budget(
                id="org-a",
                name="Org a monthly",
                scope="org",
                scope_value="a",
                limit_usd=Decimal(300),
                timezone="UTC",
            ),
            SYSTEM,
        )
    return costline_home


def test_daily_budget_pace_is_drawn_on_the_budgets_whole_scope(two_users: Path) -> None:
    with clock.frozen(NOW):
        at = app("engineer", timeout=300)
        at.session_state["f_user"] = ["u1"]  # the sidebar narrows to one user of org a
        at.run()
        at.switch_page("app_pages/forecast.py").run()
        assert not at.exception
        at.selectbox(key="fc_dim").set_value("org").run()
        at.selectbox(key="fc_value_org").set_value("a").run()
        assert at.selectbox(key="fc_budget_org_a").value == "org-a"
        assert not at.exception
    proto = at.get("vega_lite_chart")[0].proto
    tables = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]
    line = next(t for t in tables if "actual" in t.columns)
    actual = line.dropna(subset=["actual"])
    assert actual["actual"].iloc[-1] == pytest.approx(10.0)  # u1 + u2: not u1's $2
    assert pd.Timestamp(actual["ds"].iloc[-1]) < pd.Timestamp("2026-11-20")
    title = json.dumps(json.loads(proto.spec).get("title"))
    assert "whole scope (org=a)" in title and "sidebar filters" in title
