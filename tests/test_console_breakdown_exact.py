"""The Overview's breakdown (below the spend chart) writes each key's spend as the exact sum of
its picodollars, rounded once, half a cent up, as "Spend in range" and the tables do: the
server sums it, for the whole range and for the periods a brush selects. (The browser used to
sum the bars' float dollars and format them with ',.2f': $1.00 + $0.005 read 1.00, not $1.01.)
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from core import clock
from core.periods import local_midnight
from core.types import pico_to_usd, usd_places
from core.usage import UsageEvent, UsageLog
from tests.console_support import app, make_users

# per user: (two days ago, yesterday) in picodollars
COSTS = {
    "ann": (1_000_000_000_000, 5_000_000_000),  # $1.00 + $0.005 = $1.005
    "bob": (2_000_000_000_000, 675_000_000_000),  # $2.00 + $0.675 = $2.675
    "cy": (3_000_000, 1_000_000),  # $0.000004
}


@pytest.fixture
def halves(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    log = UsageLog(costline_home)
    noon = local_midnight(clock.now(), "UTC") + timedelta(hours=12)
    for user, costs in COSTS.items():
        for days, cost in zip((2, 1), costs, strict=True):
            log.append(
                UsageEvent(
                    request_id=f"{user}{days}",
                    ts=noon - timedelta(days=days),
                    org="a",
                    user=user,
                    provider="openai",
                    model="gpt-4o-mini",
                    cost_picousd=cost,
                )
            )
    log.close()
    make_users(costline_home)
    return costline_home


def exact(pico: int) -> str:
    """The text every money figure shows: core.types.usd_places, '<$0.01' under half a cent."""
    text = usd_places(pico_to_usd(pico))
    return "<$0.01" if pico and text == "$0.00" else text


def datasets(at: Any) -> list[list[dict[str, Any]]]:
    proto = at.get("vega_lite_chart")[0].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pylist() for d in proto.datasets]


def breakdown_tooltips(at: Any) -> dict[str, str]:
    """What the breakdown's tooltip shows as "spend" per key: the spec's tooltip field, read
    from the rows its view draws. A browser aggregate (``sum``) is not an exact figure."""
    proto = at.get("vega_lite_chart")[0].proto
    spec = json.loads(proto.spec)
    view = spec["vconcat"][1]
    tip = next(t for t in view["encoding"]["tooltip"] if t.get("title") == "spend")
    assert "aggregate" not in tip and "aggregate" not in view["encoding"]["x"], tip
    assert not view.get("transform"), view.get("transform")  # drawn as sent
    rows = [r for table in datasets(at) for r in table if "period" not in r and "key" in r]
    assert rows, "the breakdown has no rows of its own"
    return {r["key"]: r[tip["field"]] for r in rows}


def test_breakdown_tooltip_is_the_exact_sum_of_the_range(halves: Path) -> None:
    at = app("viewer").run()
    at.selectbox(key="ov_dim").set_value("user").run()
    assert not at.exception
    shown = breakdown_tooltips(at)
    assert shown == {user: exact(sum(c)) for user, c in COSTS.items()}
    assert shown == {"ann": "$1.01", "bob": "$2.68", "cy": "<$0.01"}
    spend = next(m.value for m in at.metric if m.label == "Spend in range")
    assert spend == exact(sum(sum(c) for c in COSTS.values())) == "$3.68"


def test_breakdown_of_brushed_periods_is_summed_on_the_server(halves: Path) -> None:
    """A brush over yesterday's bar only: the breakdown holds yesterday's exact sums (the
    page reads the brush from the chart's selection state, as the browser sends it)."""
    from console.frames.overview import chart_key

    at = app("viewer").run()
    at.selectbox(key="ov_dim").set_value("user").run()
    yesterday = max(pd.Timestamp(r["period"]) for r in datasets(at)[0])
    ms = yesterday.value // 10**6  # the chart's x: naive wall-clock read as UTC, in ms
    key = chart_key(at.session_state["selection"].scope, "user", "day")
    assert at.session_state[key] == {"selection": {"periods": {}}}  # nothing brushed
    at.session_state[key] = {"selection": {"periods": {"period": [ms - 1, ms + 3_600_000]}}}
    at.run()
    assert not at.exception
    assert breakdown_tooltips(at) == {user: exact(c[1]) for user, c in COSTS.items()}
    assert breakdown_tooltips(at) == {"ann": "$0.01", "bob": "$0.68", "cy": "<$0.01"}
