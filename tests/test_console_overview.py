"""Overview: every figure reconciles to the cent (metric = chart bars = Reader = raw DuckDB)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from console.selection import Money
from core import clock
from core.types import PICO
from core.usage import Reader, segments_dir
from tests.console_support import app, make_users

CENT = Decimal("0.01")


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def metric(at, label: str) -> str:  # type: ignore[no-untyped-def]
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} in {[m.label for m in at.metric]}"
    return found[0]


def money(text: str) -> Decimal:
    return Decimal(text.lstrip("$€£").replace(",", ""))


def chart_tables(at, index: int = 0) -> list[list[dict]]:  # type: ignore[no-untyped-def,type-arg]
    """Each dataset of a chart, as rows, in the spec's order."""
    proto = at.get("vega_lite_chart")[index].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pylist() for d in proto.datasets]


def chart_rows(at, index: int = 0) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """A chart's main dataset: the spend chart's bars (its breakdown is the second one)."""
    tables = chart_tables(at, index)
    assert len(tables) == (2 if index == 0 else 1)
    return tables[0]


def raw_duckdb_cost(home: Path, scope) -> int:  # type: ignore[no-untyped-def]
    """The same sum straight from the Parquet files, without core.usage."""
    files = str(segments_dir(home) / "*.parquet")
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT CAST(sum(cost_picousd) AS VARCHAR), count(*) FROM read_parquet(?)"
            " WHERE ts >= ? AND ts < ?",
            [files, scope.start, scope.end],
        ).fetchall()
    return int(rows[0][0] or 0)


def cents(pico: int, rate: str = "1") -> Decimal:
    return (Decimal(pico) * Decimal(rate) / PICO).quantize(CENT, rounding=ROUND_HALF_UP)


def test_spend_in_range_equals_chart_bars_reader_and_raw_duckdb(home: Path) -> None:
    at = app("admin").run()
    assert not at.exception
    scope = at.session_state["selection"].scope
    with Reader(home) as reader:
        totals = reader.totals(scope.filters())
    raw = raw_duckdb_cost(home, scope)
    assert totals["cost_picousd"] == raw > 0
    shown = money(metric(at, "Spend in range"))
    bars = sum(Decimal(str(r["amount"])) for r in chart_rows(at))
    assert shown == cents(raw) == bars.quantize(CENT, rounding=ROUND_HALF_UP)
    assert metric(at, "Requests") == f"{totals['requests']:,}"
    caption = [c.value for c in at.caption if c.value.startswith("Chart total")]
    assert caption and caption[0].startswith(f"Chart total ${shown:,}")


@pytest.mark.parametrize("grain, dim", [("week", "provider"), ("month", "org"), ("day", "user")])
def test_every_grain_and_dimension_still_adds_up(home: Path, grain: str, dim: str) -> None:
    at = app("viewer").run()
    at.selectbox(key="f_range").set_value("90d")
    at.selectbox(key="ov_dim").set_value(dim)
    at.button_group(key="ov_grain").set_value(grain)
    at.run()
    assert not at.exception
    rows = chart_rows(at)
    assert {r["key"] for r in rows} <= {f"{dim}{i}" for i in range(4)} | {"dryrun"}
    shown = money(metric(at, "Spend in range"))
    assert sum(Decimal(str(r["amount"])) for r in rows).quantize(CENT) == shown
    assert shown == cents(raw_duckdb_cost(home, at.session_state["selection"].scope))


def test_filters_and_currency_apply_to_every_figure(home: Path) -> None:
    at = app("viewer", filters=True).run()
    at.multiselect(key="f_org").set_value(["org0"])
    at.selectbox(key="f_currency").set_value("GBP")
    at.run()
    assert not at.exception
    view = at.session_state["selection"]
    assert view.scope.org == ("org0",) and view.money == Money("GBP", "0.79")
    with Reader(home) as reader:
        org0 = reader.totals(view.scope.filters())["cost_picousd"]
        everyone = reader.totals(view.scope.filters(org=None))["cost_picousd"]
    assert 0 < org0 < everyone
    text = metric(at, "Spend in range")
    assert text.startswith("£") and money(text) == cents(org0, "0.79")
    bars = sum(Decimal(str(r["amount"])) for r in chart_rows(at))
    assert bars.quantize(CENT, rounding=ROUND_HALF_UP) == cents(org0, "0.79")


def test_kpi_windows_match_direct_queries(home: Path) -> None:
    at = app("viewer").run()
    assert not at.exception
    from datetime import timedelta

    now = clock.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    # now is the windows' exclusive end: today is the day of the last instant before it
    midnight = (now - timedelta(microseconds=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    windows = {  # written out by hand, not taken from the console's own kpi_windows
        "today": (midnight, now),
        "mtd": (midnight.replace(day=1), now),
        # the last 30 days, today included (midnight 29 days ago), as the range preset
        "last30": (midnight - timedelta(days=29), now),
    }
    with Reader(home) as reader:

        def spend(name: str) -> int:
            start, end = windows[name]
            return int(reader.totals(reader_filters(start, end))["cost_picousd"])

        for label, name in [
            ("Spend today", "today"),
            ("Month to date", "mtd"),
            ("Last 30 days", "last30"),
        ]:
            assert money(metric(at, label)) == cents(spend(name)), label
        assert spend("today") > 0  # the routed calls of today count


def reader_filters(start, end):  # type: ignore[no-untyped-def]
    from core.usage import Filters

    return Filters(start=start, end=end)


@pytest.mark.parametrize("who", ["user", "project", "org"])
def test_top_spenders_match_a_direct_group_by(home: Path, who: str) -> None:
    at = app("viewer").run()
    at.button_group(key="ov_top").set_value(who).run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 3  # spend over time + breakdown, top, per 1K
    shown = chart_rows(at, 1)
    scope = at.session_state["selection"].scope
    with Reader(home) as reader:
        direct = reader.spend_by([who], None, scope.filters())
    expected = [
        (str(n), cents(int(c))) for n, c in zip(direct[who], direct["cost_picousd"], strict=True)
    ][:10]
    assert [(r["name"], Decimal(str(r["amount"])).quantize(CENT)) for r in shown] == expected


def test_cost_per_1k_requests_is_cost_over_requests(home: Path) -> None:
    at = app("viewer").run()
    rows = chart_rows(at, 2)
    series = chart_rows(at, 0)
    assert sum(r["requests"] for r in rows) == sum(r["requests"] for r in series)
    for r in rows:
        day = [s for s in series if s["label"] == r["label"]]
        cost = sum(Decimal(str(s["amount"])) for s in day)
        assert abs(Decimal(str(r["per_1k"])) - cost * 1000 / r["requests"]) < Decimal("1e-6")


def test_pruning_keeps_the_overview_exact_and_says_so(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from core.usage import UsageEvent, rows_to_table, write_segment
    from core.usage._prune import prune
    from core.usage._schema import event_row

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    make_users(costline_home)
    now = clock.now()

    def day(d: int, k: int) -> UsageEvent:
        return UsageEvent(
            request_id=f"r{d}-{k}",
            ts=now - timedelta(days=d, hours=k),
            org=f"org{k % 2}",
            provider="openai",
            model="gpt-4o-mini",
            cost_picousd=1_234_567_891 * (d + k),
        )

    old = [day(d, k) for d in range(40, 70) for k in range(3)]
    new = [day(d, k) for d in range(1, 20) for k in range(3)]
    for name, events in (("old", old), ("new", new)):
        write_segment(
            rows_to_table([event_row(e) for e in events]), segments_dir(costline_home), name
        )
    at = app("viewer").run()
    at.selectbox(key="f_range").set_value("90d").run()
    before = metric(at, "Spend in range")
    assert money(before) == cents(sum(e.cost_picousd for e in old + new))
    assert not at.info
    assert prune(costline_home, 30).segments == 1
    at.run()
    assert not at.exception
    assert metric(at, "Spend in range") == before
    assert metric(at, "Requests") == f"{len(old) + len(new):,}"
    assert any("removed by retention" in i.value for i in at.info)
    at.switch_page("app_pages/requests.py").run()
    assert any("removed by retention" in w.value for w in at.warning)


def raw_duckdb_unpriced(home: Path, start, end) -> int:  # type: ignore[no-untyped-def]
    """Calls logged unpriced in [start, end), straight from the Parquet files."""
    files = str(segments_dir(home) / "*.parquet")
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT count(*) FROM read_parquet(?, union_by_name = true)"
            " WHERE coalesce(unpriced, false) AND ts >= ? AND ts < ?",
            [files, start, end],
        ).fetchall()
    return int(rows[0][0])


def unpriced_shown(at) -> int:  # type: ignore[no-untyped-def]
    """The count in the 'N unpriced calls not in totals' notice (0 when there is none)."""
    import re

    found = [
        re.search(r"\*\*([\d,]+) unpriced calls? not in totals\*\*", w.value) for w in at.warning
    ]
    counts = [int(m.group(1).replace(",", "")) for m in found if m]
    assert len(counts) <= 1, counts
    return counts[0] if counts else 0


def test_the_unpriced_count_is_exact_from_raw_events_and_from_rollups(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice's count (read by the chart's query, or apart when stacked by tag) equals an
    independent count, over raw events and over hours only rollups still hold."""
    from dataclasses import replace
    from datetime import timedelta

    from core.usage import UsageEvent, rows_to_table, write_segment
    from core.usage._prune import prune
    from core.usage._schema import event_row

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    make_users(costline_home)
    now = clock.now()

    def call(d: int, k: int) -> UsageEvent:
        unpriced = (d + k) % 4 == 0
        return UsageEvent(
            request_id=f"r{d}-{k}",
            ts=now - timedelta(days=d, hours=k),
            org=f"org{k % 2}",
            provider="openai",
            model="mystery" if unpriced else "gpt-4o-mini",
            tags=[["a"], ["a", "b"], []][k],  # a call with two tags, priced and unpriced
            # an unpriced call's cost: 0 as the router logs it, or none at all
            cost_picousd=(None if k else 0) if unpriced else 1_234_567_891 * (d + k),
            unpriced=unpriced,
        )

    def calls(days: range) -> list[UsageEvent]:
        out = [call(d, k) for d in days for k in range(3)]
        # a twin of each unpriced call in its hour: a rollup row then counts two
        return out + [replace(e, request_id=e.request_id + "b") for e in out if e.unpriced]

    old, new = calls(range(40, 70)), calls(range(1, 20))
    for name, events in (("old", old), ("new", new)):
        write_segment(
            rows_to_table([event_row(e) for e in events]), segments_dir(costline_home), name
        )
    at = app("viewer").run()
    at.selectbox(key="f_range").set_value("90d").run()
    assert not at.exception
    scope = at.session_state["selection"].scope
    everything = raw_duckdb_unpriced(costline_home, scope.start, scope.end)
    assert everything == sum(e.unpriced for e in old + new) > sum(e.unpriced for e in new) > 0
    assert unpriced_shown(at) == everything  # raw events
    cost = raw_duckdb_cost(costline_home, scope)
    assert prune(costline_home, 30).segments == 1
    assert raw_duckdb_unpriced(costline_home, scope.start, scope.end) < everything
    at.run()
    assert not at.exception
    assert any("removed by retention" in i.value for i in at.info)
    assert unpriced_shown(at) == everything  # the old hours from their rollups
    for dim in ("org", "tag", "model"):  # by tag: a call with two tags still counts once
        at.selectbox(key="ov_dim").set_value(dim).run()
        assert not at.exception
        assert unpriced_shown(at) == everything, dim
        assert money(metric(at, "Spend in range")) == cents(cost), dim
        assert metric(at, "Requests") == f"{len(old) + len(new):,}", dim
    for page in ("app_pages/requests.py", "app_pages/import_export.py", "app_pages/overview.py"):
        at.switch_page(page).run()  # pages that run no spend query count them apart
        assert not at.exception
        assert unpriced_shown(at) == everything, page
    at.selectbox(key="f_range").set_value("7d").run()  # raw events only
    scope = at.session_state["selection"].scope
    recent = raw_duckdb_unpriced(costline_home, scope.start, scope.end)
    assert 0 < recent < everything
    assert unpriced_shown(at) == recent


def test_the_overview_counts_the_unpriced_calls_without_a_scan_of_their_own(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Overview reads the unpriced count from its spend query (no ``totals``, no
    ``unpriced_calls``), stacked by tag too."""
    from core import reports
    from tests.test_console_links import tagged_events

    tagged_events(home)  # three unpriced calls, one of them tagged
    scans: list[str] = []
    totals, apart = Reader.totals, reports.unpriced_calls
    monkeypatch.setattr(
        Reader, "totals", lambda self, *a, **kw: scans.append("totals") or totals(self, *a, **kw)
    )
    monkeypatch.setattr(
        reports, "unpriced_calls", lambda *a, **kw: scans.append("unpriced") or apart(*a, **kw)
    )
    at = app("viewer").run()
    assert not at.exception
    assert unpriced_shown(at) == 3
    assert scans == []
    at.selectbox(key="ov_dim").set_value("tag").run()
    assert not at.exception
    assert unpriced_shown(at) == 3
    assert scans == []


def test_stacked_by_tag_the_period_totals_and_unit_cost_count_a_call_once(home: Path) -> None:
    """Stacked by tag a call with two tags is in both tags' bars, but the tooltip's period
    total, the chart total and the cost per 1K requests count it once: the same figures as
    stacked by model, and as a raw DuckDB query per local day."""
    from collections import defaultdict
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.test_console_links import tagged_events

    tagged_events(home)  # one priced call with two tags
    at = app("viewer").run()
    seen = {}
    for dim in ("model", "tag"):
        at.selectbox(key="ov_dim").set_value(dim).run()
        assert not at.exception
        charts = [
            pa.ipc.open_stream(d.data.data).read_all().to_pylist()
            for chart in at.get("vega_lite_chart")
            for d in chart.proto.datasets
        ]
        bars = next(rows for rows in charts if rows and "period_total" in rows[0])
        unit = next(rows for rows in charts if rows and "per_1k" in rows[0])
        caption = [c.value for c in at.caption if c.value.startswith("Chart total")]
        seen[dim] = (
            {str(r["period"]): r["period_total"] for r in bars},
            [(str(r["period"]), r["per_1k"], r["requests"]) for r in unit],
            caption[0].split(" · ")[0],
        )
        assert caption[0].startswith(f"Chart total {metric(at, 'Spend in range')}"), dim
    assert seen["tag"] == seen["model"]
    scope = at.session_state["selection"].scope
    files = str(segments_dir(home) / "*.parquet")
    with duckdb.connect() as con:
        raw = con.execute(
            "SELECT ts, cost_picousd FROM read_parquet(?) WHERE ts >= ? AND ts < ?",
            [files, scope.start, scope.end],
        ).fetchall()
    by_day: dict[str, int] = defaultdict(int)
    zone = ZoneInfo(scope.tz)
    for ts, cost in raw:
        local = ts.astimezone(zone).replace(tzinfo=None)
        day = datetime(local.year, local.month, local.day)
        by_day[str(day)] += cost or 0
    want = {d: float(cents(c)) for d, c in by_day.items()}
    got = {d: round(v, 2) for d, v in seen["tag"][0].items()}
    assert got == {d: v for d, v in want.items() if d in got}  # days with calls
    assert {d for d, c in by_day.items() if c} <= set(got)
