"""Requests page: server-side paging and sorting, a detail view, errors by type/provider."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core.usage import Reader
from tests.console_support import ADMIN_PASSWORD, app, make_users, sample_data


@pytest.fixture
def at(costline_home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    sample_data(costline_home)
    make_users(costline_home)
    at = app("viewer").run()
    at.selectbox(key="f_range").set_value("90d")
    at.switch_page("app_pages/requests.py").run()
    assert not at.exception
    return at


def log(at):  # type: ignore[no-untyped-def]
    return at.tabs[0].dataframe[0].value


def test_pages_are_served_by_the_database_in_order(at, costline_home: Path) -> None:  # type: ignore[no-untyped-def]
    with Reader(costline_home) as reader:
        scope = at.session_state["selection"].scope
        total = reader.count(scope.filters())
        newest = reader.events(scope.filters(), ["request_id"], "ts", True, limit=75)
    first = log(at)
    assert len(first) == 50 and f"{total:,} calls" in at.caption[1].value
    assert list(first["request id"]) == list(newest["request_id"][:50])
    at.number_input(key="rq_page").set_value(2).run()
    assert list(log(at)["request id"])[:25] == list(newest["request_id"][50:75])
    at.selectbox(key="rq_sort").set_value("cost_picousd")
    at.selectbox(key="rq_dir").set_value("asc").run()
    assert not at.exception
    costs = [Decimal(c.replace("$", "").replace(",", "")) for c in log(at)["cost"]]
    assert costs == sorted(costs) and len(set(costs)) > 1


def test_status_filter_and_detail_view(at) -> None:  # type: ignore[no-untyped-def]
    at.multiselect(key="rq_status").set_value(["error"]).run()
    rows = log(at)
    assert len(rows) > 0 and set(rows["status"]) == {"error"}
    rid = rows["request id"][0]
    at.text_input(key="rq_lookup").input(rid).run()
    detail = at.json[0].value
    assert f'"request_id": "{rid}"' in detail and '"error_type": "ProviderServerError"' in detail
    assert '"cost_usd": "0.000000000000"' in detail
    at.text_input(key="rq_lookup").input("req_missing").run()
    assert not at.exception
    assert "No request 'req_missing'." in [w.value for w in at.warning]


def test_errors_are_grouped_by_type_and_provider(at, costline_home: Path) -> None:  # type: ignore[no-untyped-def]
    table = at.tabs[1].dataframe[0].value
    scope = at.session_state["selection"].scope
    with Reader(costline_home) as reader:
        failed = reader.count(scope.filters(status=("error", "blocked", "rate_limited")))
    assert list(table[["error type", "provider"]].itertuples(index=False, name=None)) == [
        ("ProviderServerError", "dryrun")
    ]
    assert int(table["errors"].sum()) == failed > 0
    assert at.tabs[1].metric[0].value == f"{failed:,}"


def test_detail_shows_money_in_dollars_not_picodollars(at) -> None:  # type: ignore[no-untyped-def]
    detail = at.json[0].value
    assert "picousd" not in detail
    assert '"cost_usd": "' in detail and '"saved_usd": "' in detail


def test_tables_read_as_words_local_times_and_blank_cells(at) -> None:  # type: ignore[no-untyped-def]
    log = next(d.value for d in at.dataframe if "request id" in d.value.columns)
    assert not [c for c in log.columns if "_" in c]
    times = [str(t) for t in log["time"]]
    assert times and all(len(t) == 19 and "+00:00" not in t for t in times)
    assert not [v for v in log["key"] if v is None or str(v) in ("None", "nan")]
    at.selectbox(key="rq_size").set_value(25).run()
    errors = next((d.value for d in at.dataframe if "error type" in d.value.columns), None)
    assert errors is not None and not [c for c in errors.columns if "_" in c]
    assert all(len(str(t)) == 19 for t in errors["last seen"])


def test_an_unpriced_call_has_a_blank_cost_in_the_log_not_zero(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call logged unpriced (cost 0 as the router logs it, or none) shows no cost in the
    request log, never $0; a priced call shows its exact cost."""
    from datetime import timedelta

    from core import clock
    from core.usage import UsageEvent, UsageLog

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    log_ = UsageLog(costline_home)
    now = clock.now()
    for i, (rid, cost, unpriced) in enumerate(
        (("priced", 1_250_000_000_000, False), ("zero", 0, True), ("none", None, True))
    ):
        log_.append(
            UsageEvent(
                request_id=rid,
                ts=now - timedelta(hours=1 + i),
                provider="dryrun",
                model="dryrun-small" if not unpriced else "mystery",
                status="ok",
                cost_picousd=cost,
                unpriced=unpriced,
            )
        )
    log_.close()
    at = app("viewer").run()
    at.switch_page("app_pages/requests.py").run()
    assert not at.exception
    shown = log(at)
    cost = dict(zip(shown["request id"], shown["cost"], strict=True))
    assert cost["priced"] == "$1.250000"
    assert pd.isna(cost["zero"]) and pd.isna(cost["none"])
    at.text_input(key="rq_lookup").input("zero").run()  # the detail says so too
    detail = at.json[0].value
    assert '"cost_usd": null' in detail and '"unpriced": true' in detail, detail
    at.text_input(key="rq_lookup").input("priced").run()
    assert '"cost_usd": "1.250000000000"' in at.json[0].value


def test_the_detail_shows_the_time_in_the_configured_zone_as_the_log_does(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In America/New_York the log's time column and the detail's ts name the same local
    time (the detail gave UTC, '+00:00', beside a log in New York time). The call is at 03:30
    UTC yesterday, the evening before in New York (EST or EDT, whichever the date has)."""
    from datetime import UTC, timedelta
    from zoneinfo import ZoneInfo

    from core import clock
    from core.usage import UsageEvent, UsageLog

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("COSTLINE_TIMEZONE", "America/New_York")
    make_users(costline_home)
    log_ = UsageLog(costline_home)
    when = (clock.now().astimezone(UTC) - timedelta(days=1)).replace(
        hour=3, minute=30, second=0, microsecond=0
    )
    log_.append(UsageEvent(request_id="late", ts=when, provider="openai", model="gpt-4o"))
    log_.close()
    local = when.astimezone(ZoneInfo("America/New_York"))  # the stdlib's zone rules
    assert local.date() < when.date()  # the evening before, in New York
    at = app("viewer").run()
    at.switch_page("app_pages/requests.py").run()
    at.text_input(key="rq_lookup").input("late").run()
    assert not at.exception
    assert list(log(at)["time"]) == [f"{local:%Y-%m-%d %H:%M:%S}"]
    assert f'"ts": "{local.isoformat()}"' in at.json[0].value, at.json[0].value


def test_a_request_outside_the_range_can_still_be_looked_up_by_id(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id box says "any request": with no call in the selected range (here, one logged
    two years ago) the log is empty, and the lookup is still there and finds it."""
    from datetime import timedelta

    from core import clock
    from core.usage import UsageEvent, UsageLog

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    log_ = UsageLog(costline_home)
    old = clock.now() - timedelta(days=730)
    log_.append(UsageEvent(request_id="req_old", ts=old, provider="openai", model="gpt-4o"))
    log_.close()
    at = app("viewer").run()
    at.switch_page("app_pages/requests.py").run()
    assert not at.exception
    assert any("No calls match these filters" in i.value for i in at.info)
    assert not at.json and not at.warning  # nothing looked up yet: no detail, no warning
    at.text_input(key="rq_lookup").input("req_old").run()
    assert not at.exception
    assert '"request_id": "req_old"' in at.json[0].value, at.json[0].value
    at.text_input(key="rq_lookup").input("req_missing").run()
    assert [w.value for w in at.warning] == ["No request 'req_missing'."]


def test_a_billed_call_under_half_a_millionth_never_reads_as_free(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny embedding call billed $0.0000004 read 0.000000 in the log's six decimals, as a
    free cache hit does: it reads '<$0.000001' (its exact cost in the detail), a free call
    '$0', a call logged unpriced nothing, one of half a millionth '$0.000001' (half up)."""
    from datetime import timedelta

    from core import clock
    from core.usage import UsageEvent, UsageLog

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    log_ = UsageLog(costline_home)
    now = clock.now()
    calls = (
        ("tiny", 400_000, False, False),  # $0.0000004
        ("half", 500_000, False, False),  # $0.0000005
        ("refund", -400_000, False, False),
        ("free", 0, False, True),  # a cache hit
        ("unpriced", 0, True, False),
    )
    for i, (rid, cost, unpriced, hit) in enumerate(calls):
        log_.append(
            UsageEvent(
                request_id=rid,
                ts=now - timedelta(hours=1 + i),
                provider="openai",
                model="text-embedding-3-small" if not unpriced else "mystery",
                status="ok",
                cost_picousd=cost,
                unpriced=unpriced,
                cache_hit=hit,
            )
        )
    log_.close()
    at = app("viewer").run()
    at.switch_page("app_pages/requests.py").run()
    assert not at.exception
    shown = log(at)
    cost = dict(zip(shown["request id"], shown["cost"], strict=True))
    assert cost["tiny"] == "<$0.000001" and cost["free"] == "$0", cost
    assert cost["half"] == "$0.000001" and cost["refund"] == "-<$0.000001", cost
    assert pd.isna(cost["unpriced"]), cost
    at.text_input(key="rq_lookup").input("tiny").run()  # the exact amount
    assert '"cost_usd": "0.000000400000"' in at.json[0].value
