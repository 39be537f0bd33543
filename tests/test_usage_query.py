"""Reader queries checked against sums computed by hand in Python."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_usage_support import T0, event

from core.errors import ConfigError
from core.usage import Filters, Reader, UsageEvent, UsageLog

N = 600  # 37 minutes apart: crosses a month, a year and an ISO-week boundary


@pytest.fixture
def events(costline_home: Path) -> list[UsageEvent]:
    evs = [event(i) for i in range(N)]
    with UsageLog(flush_every=250) as log:  # several segments
        log.append_many(evs)
    return evs


def period(ts: datetime, grain: str, tz: str = "UTC") -> datetime:
    local = ts.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    if grain == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())  # ISO week starts on Monday
    return day.replace(day=1)


def expected(evs: Iterable[UsageEvent], dims: list[str], grain: str | None, tz: str = "UTC"):
    out: dict[tuple, list[int]] = defaultdict(lambda: [0] * 6)
    for e in evs:
        key = ((period(e.ts, grain, tz),) if grain else ()) + tuple(getattr(e, d) for d in dims)
        acc = out[key]
        acc[0] += 1
        acc[1] += e.input_tokens
        acc[2] += e.cost_picousd
        acc[3] += e.saved_picousd
        acc[4] += e.status not in ("ok", "skipped")
        acc[5] += e.cache_hit
    return dict(out)


def actual(df, dims: list[str], grain: str | None):
    keys = (["period"] if grain else []) + dims
    cols = ["requests", "input_tokens", "cost_picousd", "saved_picousd", "errors", "cache_hits"]
    out = {}
    for rec in df.to_dict("records"):
        key = tuple(rec[k].to_pydatetime() if k == "period" else rec[k] for k in keys)
        out[key] = [int(rec[c]) for c in cols]
    return out


@pytest.mark.parametrize("grain", ["hour", "day", "week", "month", None])
def test_spend_by_grain_and_dims_matches_hand_sums(events: list[UsageEvent], grain) -> None:
    dims = ["model", "org"]
    df = Reader().spend_by(dims, grain)
    assert actual(df, dims, grain) == expected(events, dims, grain)
    assert (
        list(df.columns[: len(dims) + (1 if grain else 0)]) == (["period"] if grain else []) + dims
    )
    assert df["cost_usd"].sum() == pytest.approx(sum(e.cost_picousd for e in events) / 1e12)


def test_iso_week_of_new_year_starts_on_monday(events: list[UsageEvent]) -> None:
    periods = set(Reader().spend_by([], "week")["period"].dt.to_pydatetime())
    assert datetime(2024, 12, 30) in periods  # ISO week 1 of 2025 begins in 2024
    assert all(p.weekday() == 0 for p in periods)


@pytest.mark.parametrize(
    "tz", ["Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"]
)
def test_spend_by_in_a_time_zone(costline_home: Path, tz: str) -> None:
    # Hourly events across the 2025 DST changes of London and Newfoundland.
    start = datetime(2025, 3, 8, tzinfo=UTC)
    evs = [event(i, ts=start + timedelta(minutes=50 * i)) for i in range(800)]
    with UsageLog() as log:
        log.append_many(evs)
    for grain in ("hour", "day", "week", "month"):
        df = Reader().spend_by(["model"], grain, tz=tz)
        assert actual(df, ["model"], grain) == expected(evs, ["model"], grain, tz), grain


def test_filters_match_hand_filtering(events: list[UsageEvent]) -> None:
    reader = Reader()
    start, end = T0 + timedelta(days=3), T0 + timedelta(days=9)
    cases = [
        (Filters(), lambda e: True),
        (Filters(start=start), lambda e: e.ts >= start),
        (Filters(end=end), lambda e: e.ts < end),
        (Filters(start=start.replace(tzinfo=None), end=end), lambda e: start <= e.ts < end),
        (Filters(org="acme"), lambda e: e.org == "acme"),
        (Filters(model=["gpt-4o", "claude-3-5-haiku"]), lambda e: e.model != "gpt-4o-mini"),
        (
            Filters(status="error", provider="openai"),
            lambda e: e.status == "error" and e.provider == "openai",
        ),
        (
            Filters(user=("u1", "u2"), project="p0", task="chat"),
            lambda e: e.user in ("u1", "u2") and e.project == "p0" and e.task == "chat",
        ),
        (Filters(source="app"), lambda e: False),
        (Filters(model=[]), lambda e: False),
    ]
    for f, keep in cases:
        want = [e for e in events if keep(e)]
        assert reader.count(f) == len(want), f
        assert reader.totals(f)["cost_picousd"] == sum(e.cost_picousd for e in want), f
        got = actual(reader.spend_by(["user"], "day", f), ["user"], "day")
        assert got == expected(want, ["user"], "day"), f


def test_events_listing_order_limit_offset_and_columns(events: list[UsageEvent]) -> None:
    reader = Reader()
    df = reader.events(
        Filters(org="globex"), columns=["request_id", "ts", "cost_picousd"], limit=5, offset=2
    )
    want = sorted((e for e in events if e.org == "globex"), key=lambda e: e.ts, reverse=True)[2:7]
    assert list(df.columns) == ["request_id", "ts", "cost_picousd"]
    assert list(df["request_id"]) == [e.request_id for e in want]
    assert str(df["ts"].dt.tz) == "UTC"
    asc = reader.events(order_by="cost_picousd", descending=False, limit=3)
    assert list(asc["cost_picousd"]) == sorted(e.cost_picousd for e in events)[:3]
    assert len(reader.events()) == N


def test_totals_are_exact_and_complete(events: list[UsageEvent]) -> None:
    t = Reader().totals()
    assert t["requests"] == N
    assert t["cost_picousd"] == sum(e.cost_picousd for e in events)
    assert t["cost_usd"] == Decimal(sum(e.cost_picousd for e in events)) / 10**12
    assert t["errors"] == sum(e.status in ("error", "blocked", "rate_limited") for e in events)
    assert t["cache_hits"] == sum(e.cache_hit for e in events)
    assert t["first_ts"] == min(e.ts for e in events) and t["last_ts"] == max(e.ts for e in events)
    empty = Reader().totals(Filters(org="nobody"))
    assert empty["requests"] == 0 and empty["cost_usd"] == 0 and empty["first_ts"] is None


def test_daily_series_fills_missing_days_with_zero(costline_home: Path) -> None:
    days = [0, 0, 3, 5]
    with UsageLog() as log:
        for i, d in enumerate(days):
            log.append(
                event(i, ts=T0 + timedelta(days=d, hours=1), model="m1", cost_picousd=10**12)
            )
        log.append(event(9, ts=T0 + timedelta(days=1), model="m2", cost_picousd=5 * 10**11))
    df = Reader().daily_series(Filters(end=T0 + timedelta(days=7)), by="model")
    m1 = df[df["key"] == "m1"]
    assert list(m1["cost_usd"]) == [2.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert list(m1["requests"]) == [2, 0, 0, 1, 0, 1, 0]
    assert len(df[df["key"] == "m2"]) == 7 and df[df["key"] == "m2"]["cost_usd"].sum() == 0.5
    assert list(Reader().daily_series()["key"].unique()) == ["all"]


@pytest.mark.parametrize("dims", [["bogus"], ["model", "model; DROP TABLE x"], ["prompt"]])
def test_unknown_dimension_is_a_config_error_naming_it(events, dims: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Reader().spend_by(dims, "day")
    assert info.value.field == dims[-1] and repr(dims[-1]) in str(info.value)


def test_bad_grain_column_and_tz_are_config_errors(events) -> None:
    reader = Reader()
    with pytest.raises(ConfigError):
        reader.spend_by(["model"], "fortnight")
    with pytest.raises(ConfigError):
        reader.spend_by(["model"], "day", tz="Mars/Olympus")
    with pytest.raises(ConfigError):
        reader.events(columns=["request_id", "nope"])
    with pytest.raises(ConfigError):
        reader.events(order_by="ts DESC; --")


def test_sql_runs_one_parameterised_select_and_nothing_else(events) -> None:
    reader = Reader()
    df = reader.sql(
        "SELECT model, count(*) AS n FROM events WHERE org = ? GROUP BY model ORDER BY model",
        ["acme"],
    )
    assert dict(zip(df["model"], df["n"], strict=True)) == {
        m: sum(
            1
            for i in range(N)
            if i % 2 == 0 and ["gpt-4o", "gpt-4o-mini", "claude-3-5-haiku"][i % 3] == m
        )
        for m in ("claude-3-5-haiku", "gpt-4o", "gpt-4o-mini")
    }
    for bad in [
        "DROP VIEW events",
        "SELECT 1; SELECT 2",
        "COPY events TO 'x.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELEC nonsense",
    ]:
        with pytest.raises(ConfigError):
            reader.sql(bad)
    assert reader.count() == N


def test_data_version_changes_only_when_segments_change(costline_home: Path) -> None:
    reader = Reader()
    v0 = reader.data_version()
    assert reader.data_version() == v0
    with UsageLog() as log:
        log.append(event(1))
    v1 = reader.data_version()
    assert v1 != v0 and reader.data_version() == v1
    assert reader.count() == 1
