"""Money is written from exact decimals, half a cent (or the last shown digit) up, away from
zero, and a negative amount carries its sign first ('-$1.25', '-<$0.01'): no float is
rounded on the way ($1.005 read $1.00 through a float's '.2f')."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd

from console.charts.spend import cost_per_1k
from console.frames.overview import per_1k_frame
from console.frames.playground import fmt_usd
from console.selection import Money
from core.importer._result import money
from core.insights import exhaustion, forecast_spend
from core.routing import usd_text
from core.types import PICO, usd_places

START = date(2024, 1, 1)


def test_route_reasons_round_half_up_in_exact_arithmetic() -> None:
    assert usd_text(1_005_000_000_000) == "$1.01"  # the float 1.005 is 1.00499...: '$1.00'
    assert usd_text(12_345 * PICO + PICO // 200) == "$12,345.01"
    assert usd_text(1) == "$0.0000000000010"  # fixed notation, never '1.0E-12'
    assert usd_text(-4_000_000_000) == "-$0.0040"  # a negative amount is not '$0'
    assert usd_text(0) == "$0"


def test_forecast_model_total_is_rounded_once_after_the_conversion() -> None:
    hist = pd.DataFrame({"ds": pd.date_range(START, periods=20), "y": 10.0})
    fc = forecast_spend(hist, 30, backtest=False)
    # a window already over: its total is what was spent, $100.004, 150.006 in EUR at 1.5
    ex = exhaustion(
        fc,
        spent_so_far=100.004,
        limit=200.0,
        window_start=START,
        window_end=START + timedelta(days=5),
    )
    assert ex.projected_total_usd == Decimal("100.004")  # not $100.00 before the conversion
    eur = Money("EUR", "1.5")
    assert eur.fmt(int(ex.projected_total_usd * PICO)) == "€150.01"  # it read €150.00


def test_negative_amounts_under_half_a_cent_keep_their_sign() -> None:
    usd = Money()
    assert usd.table(-4_000_000_000) == "-<$0.01"  # a $0.004 credit read '<$0.01'
    assert usd.table(4_000_000_000) == "<$0.01"
    assert usd.table(-1_005 * 10**9) == "-$1.01"
    picos = [-4_000_000_000, 4_000_000_000, -1_005 * 10**9, 0]
    assert usd.tables(picos) == [usd.table(p) for p in picos]
    assert usd_places(Decimal("-1234.565")) == "-$1,234.57"
    assert money(Decimal("-2.5")) == "-$2.50" and money(Decimal("-0.25")) == "-$0.25"
    assert fmt_usd(-1_500_000_000_000) == "-$1.50"  # it read '$-1.50'


def test_cost_per_1k_tooltip_is_exact_text() -> None:
    # $0.00012345 a call over 8 calls: $0.12345 per 1K, which ',.4f' in the browser rounds
    # from the float 0.12344999... to 0.1234
    series = pd.DataFrame(
        {
            "period": pd.to_datetime(["2026-11-01"]),
            "cost_picousd": [8 * 123_450_000],
            "requests": [8],
        }
    )
    frame = per_1k_frame(series, Money(), "day")
    assert list(frame["per_1k_text"]) == ["$0.1235"]
    spec = json.dumps(cost_per_1k(frame, "day", "$")["encoding"]["tooltip"])
    assert ".4f" not in spec and "per_1k_text" in spec


def test_forecast_tooltips_are_exact_text() -> None:
    from console.charts.forecast import forecast_chart

    series = pd.DataFrame(
        {
            "ds": pd.to_datetime(["2026-11-01", "2026-11-02"]),
            "actual": [1.005, None],
            "yhat": [None, 2.675],
            "lower": [None, -0.005],
            "upper": [None, 3.0],
        }
    )
    spec = forecast_chart(series, symbol="$").to_dict()
    assert ",.2f" not in json.dumps(spec)
    rows = next(v for v in spec["datasets"].values() if v and "actual_text" in v[0])
    assert [r["actual_text"] for r in rows] == ["$1.01", ""]
    assert [r["yhat_text"] for r in rows] == ["", "$2.68"]
    assert rows[1]["lower_text"] == "-$0.01"


def test_request_log_costs_round_half_up_to_the_shown_decimals() -> None:
    from console.frames.requests import _costs

    page = pd.DataFrame(
        {"cost_picousd": [12_500_000, -12_500_000, 5 * PICO], "unpriced": [False, False, True]}
    )
    assert _costs(page, Money()) == ["$0.000013", "-$0.000013", None]  # not 0.0000125
