"""The Overview's top spenders write each amount as the tables and the KPIs do: the exact sum
to the cent, an exact half cent up (a float's ',.2f' wrote $1.005 as $1.00 and $2.675 as
$2.67 beside the bars, while "Spend in range" read $1.01)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from core import clock
from core.usage import UsageEvent, UsageLog
from tests.console_support import app, make_users

COSTS = {"ann": 1_005_000_000_000, "bob": 2_675_000_000_000, "cy": 4_000_000}  # $1.005 ...


@pytest.fixture
def halves(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    log = UsageLog(costline_home)
    for i, (user, cost) in enumerate(COSTS.items()):
        log.append(
            UsageEvent(
                request_id=f"c{i}",
                ts=clock.now() - timedelta(days=1),
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


def test_top_spenders_round_half_a_cent_up_like_the_tables(halves: Path) -> None:
    at = app("viewer").run()
    assert not at.exception
    rows = [
        r
        for chart in at.get("vega_lite_chart")
        for d in chart.proto.datasets
        for r in pa.ipc.open_stream(d.data.data).read_all().to_pylist()
        if "shown" in r
    ]
    shown = {r["name"]: r["shown"] for r in rows}
    assert shown == {"ann": "$1.01", "bob": "$2.68", "cy": "<$0.01"}
    spend = next(m.value for m in at.metric if m.label == "Spend in range")
    assert spend == "$3.68"  # 3.684004, the same rounding


def test_spend_tooltip_writes_exact_cents_half_up(halves: Path) -> None:
    """The spend chart's tooltip money is text from the exact sums (the browser's ',.2f' of a
    float wrote a bar of $1.005 as $1.00)."""
    at = app("viewer").run()
    at.selectbox(key="ov_dim").set_value("user").run()
    assert not at.exception
    proto = at.get("vega_lite_chart")[0].proto
    rows = [
        r for d in proto.datasets for r in pa.ipc.open_stream(d.data.data).read_all().to_pylist()
    ]
    bars = {r["key"]: r for r in rows if "total_text" in r}
    assert {k: r["amount_text"] for k, r in bars.items()} == {
        "ann": "$1.01",
        "bob": "$2.68",
        "cy": "<$0.01",
    }
    assert {r["total_text"] for r in bars.values()} == {"$3.68"}
    spec = proto.spec
    assert (
        '"amount_text"' in spec
        and '"total_text"' in spec
        and ",.2f" not in spec.split('"tooltip"')[1].split("]")[0]
    )


def test_anomaly_message_rounds_half_a_cent_up_like_the_anomaly_table() -> None:
    """The anomaly alert's text (Alerts page, webhooks) and the Forecast page's anomaly table
    write the same amounts."""
    import pandas as pd

    from console.frames.forecast import findings_frame
    from console.selection import Money
    from core.insights import Anomaly, Finding

    a = Anomaly(pd.Timestamp("2026-11-12"), 1.005, 0.5, 2.01, 0.505, 6.0, "mad", "acme", [])
    fd = Finding(a, "org", "spend", "day")
    row = findings_frame([fd], Money()).iloc[0]
    assert (row["actual"], row["expected"], row["above expected"]) == ("$1.01", "$0.50", "+$0.51")
    assert "$1.01 vs $0.50 expected (2.0x, +$0.51)" in fd.describe()


def test_advice_text_rounds_half_a_cent_up() -> None:
    from core.insights._advice_base import usd_text

    assert usd_text(1_005_000_000_000) == "$1.01"
    assert usd_text(2_675_000_000_000.0) == "$2.68"
    assert usd_text(1_234_567_000_000_000) == "$1,234.57"
    # a numpy integer (a pandas sum) is exact too: as a float it read $12,345.68
    assert usd_text(np.int64(12_345_674_999_999_999)) == "$12,345.67"


@pytest.mark.parametrize("currency, rate", [("USD", "1"), ("EUR", "0.92"), ("GBP", "0.7913")])
def test_many_amounts_read_as_one_amount_does(currency: str, rate: str) -> None:
    """``Money.tables`` (a chart's tooltips) writes each amount as ``Money.table``."""
    import random

    from console.selection import Money

    rng = random.Random(7)
    picos = [0, 1, -1, 4_999_999_999, 5_000_000_000, -5_000_000_000, *COSTS.values()]
    picos += [rng.randint(-(10**16), 10**16) for _ in range(3000)]
    picos += [rng.randrange(0, 10**14, 5 * 10**9) for _ in range(3000)]  # many half cents
    money = Money(currency, rate)
    assert money.tables(picos) == [money.table(p) for p in picos]


@pytest.mark.parametrize("currency, rate", [("USD", "1"), ("EUR", "0.92"), ("CHF", "0.8813")])
def test_console_money_is_written_by_the_one_formatter(currency: str, rate: str) -> None:
    """Every console amount (KPIs, tables, the charts' tooltips) is core.types.usd_places's
    text in the display currency: one half-up rounding and one layout everywhere."""
    import random

    from console.selection import Money
    from core.types import usd_places

    money = Money(currency, rate)
    rng = random.Random(3)
    picos = [0, 5_000_000_000, -5_000_000_000, *COSTS.values()]
    picos += [rng.randint(-(10**16), 10**16) for _ in range(500)]
    for pico in picos:
        for places in (2, 4):
            assert money.fmt(pico, places) == usd_places(money.amount(pico), places, money.symbol)
    assert Money("CHF", "1").fmt(-1_005_000_000_000) == "-CHF 1.01"
