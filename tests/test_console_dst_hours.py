"""At a DST fall-back in the configured zone the repeated wall-clock hour is two periods:
each real hour its own row, labelled with its UTC offset, in the Overview at grain=hour, in
``Reader.spend_by`` and in ``GET /api/v1/spend``; totals reconcile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from console.frames.overview import per_1k_frame, series_frame
from console.selection import Money
from core import clock, reports
from core.types import PICO
from core.usage import Filters, Reader, UsageEvent, UsageLog
from tests.console_support import app, make_users

NY = "America/New_York"
# 2026-11-01 in New York: 00:00 EDT is 04:00 UTC, 01:00 EDT 05:00 UTC, 01:00 EST 06:00 UTC
DAY_START = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 1, 17, 30, tzinfo=UTC)  # 12:30 EST
HOURS = 14  # 04:00-17:59 UTC: local 00:00, 01:00 (twice), 02:00 ... 12:00


@pytest.fixture
def fall_back(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One call per real hour of the local day so far, costing $1, $2, ... in order."""
    monkeypatch.setenv("COSTLINE_TIMEZONE", NY)
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    log = UsageLog(costline_home)
    for i in range(HOURS):
        log.append(
            UsageEvent(
                request_id=f"h{i}",
                ts=DAY_START + timedelta(hours=i, minutes=10),
                org="a",
                provider="openai",
                model="gpt-4o-mini",
                cost_picousd=(i + 1) * PICO,
            )
        )
    log.close()
    make_users(costline_home)
    return costline_home


def test_each_real_hour_is_its_own_period(fall_back: Path) -> None:
    with Reader(fall_back) as reader:
        df = reader.spend_by([], "hour", Filters(start=DAY_START, end=NOW), tz=NY)
        spend = reports.spend(reader, Filters(start=DAY_START, end=NOW), "org", "hour", NY)
    assert len(df) == HOURS
    assert list(df["cost_picousd"]) == [(i + 1) * PICO for i in range(HOURS)]  # real order
    one = df[df["period"] == datetime(2026, 11, 1, 1, 0)]
    assert list(one["utc_offset"]) == [-240, -300]
    assert list(one["requests"]) == [1, 1]
    frame = series_frame(spend.series, Money(), "hour", spend.periods)
    assert frame["label"].is_unique and len(frame) == HOURS
    assert "2026-11-01 01:00 (UTC-04:00)" in set(frame["label"])
    assert "2026-11-01 01:00 (UTC-05:00)" in set(frame["label"])
    assert frame["period"].is_monotonic_increasing  # the two halves of the 01:00 slot
    assert (frame["period_end"].iloc[:-1].to_numpy() <= frame["period"].iloc[1:].to_numpy()).all()
    assert frame["amount"].sum() == pytest.approx(sum(range(1, HOURS + 1)))
    per_1k = per_1k_frame(spend.series, Money(), "hour")
    assert per_1k["label"].is_unique and len(per_1k) == HOURS


def test_overview_by_hour_shows_both_one_oclock_hours(fall_back: Path) -> None:
    with clock.frozen(NOW):
        at = app("viewer").run()
        at.selectbox(key="f_range").set_value("today").run()
        assert not at.exception
        proto = at.get("vega_lite_chart")[0].proto
        rows = [
            r
            for d in proto.datasets
            for r in pa.ipc.open_stream(d.data.data).read_all().to_pylist()
        ]
    bars = [r for r in rows if "period_total" in r]
    assert len(bars) == HOURS
    labels = [r["label"] for r in bars]
    assert len(set(labels)) == HOURS
    assert {"2026-11-01 01:00 (UTC-04:00)", "2026-11-01 01:00 (UTC-05:00)"} <= set(labels)
    total = next(m.value for m in at.metric if m.label == "Spend in range")
    assert total == f"${sum(range(1, HOURS + 1)):,.2f}"
    assert sum(r["amount"] for r in bars) == pytest.approx(sum(range(1, HOURS + 1)))


def test_api_hour_periods_carry_their_offset(fall_back: Path) -> None:
    from tests.servers.api import ApiServer

    with ApiServer(fall_back) as server:
        client = server.client(server.user("fin", "viewer"))
        params = {"start": "2026-11-01", "end": "2026-11-02", "group_by": "hour"}
        body = client.get("/spend", params=params).json()
    periods = [row["period"] for row in body["rows"]]
    assert len(periods) == len(set(periods)) == HOURS
    assert periods[:3] == [
        "2026-11-01T00:00-04:00",
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:00-05:00",
    ]
    assert [row["cost_usd"] for row in body["rows"]] == [str(i + 1) for i in range(HOURS)]
    assert body["totals"]["cost_usd"] == str(sum(range(1, HOURS + 1)))


def test_requests_log_tells_the_two_one_oclock_calls_apart(fall_back: Path) -> None:
    with clock.frozen(NOW):
        at = app("viewer").run()
        at.selectbox(key="f_range").set_value("today").run()
        at.switch_page("app_pages/requests.py").run()
        assert not at.exception
    log = next(d.value for d in at.dataframe if "request id" in d.value.columns)
    times = dict(zip(log["request id"], log["time"], strict=True))
    assert times["h1"] == "2026-11-01 01:10:00 -04:00"
    assert times["h2"] == "2026-11-01 01:10:00 -05:00"
    assert times["h0"] == "2026-11-01 00:10:00" and times["h3"] == "2026-11-01 02:10:00"
