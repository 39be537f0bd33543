"""Retention: pruning raw segments keeps totals exact through the hourly rollups."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from test_usage_support import event

from core.errors import ConfigError
from core.usage import Filters, Reader, UsageEvent, compact, rows_to_table, write_segment
from core.usage._prune import prune
from core.usage._rollups import pruned_dir, rollups_dir
from core.usage._schema import event_row
from core.usage._segments import scan, segments_dir

T0 = datetime(2024, 12, 20, tzinfo=UTC)  # event(i) is at T0 + 37 min * i
NOW = T0 + timedelta(days=40)


def write(home: Path, name: str, ids: range) -> None:
    write_segment(rows_to_table([event_row(event(i)) for i in ids]), segments_dir(home), name)


def expected_by_day_model(ids: range) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for i in ids:
        e = event(i)
        out[(e.ts.strftime("%Y-%m-%d"), e.model)] += e.cost_picousd
    return dict(out)


def spend_by_day_model(reader: Reader, **kw: object) -> dict[tuple[str, str], int]:
    df = reader.spend_by(["model"], "day", Filters(**kw))  # type: ignore[arg-type]
    return {
        (p.strftime("%Y-%m-%d"), m): int(c)
        for p, m, c in zip(df["period"], df["model"], df["cost_picousd"], strict=True)
    }


def test_prune_removes_old_segments_and_keeps_every_total_exact(costline_home: Path) -> None:
    # 3 segments: events 0-499 (days 0-12), 500-999 (days 12-25), 1000-1399 (days 25-36)
    write(costline_home, "a", range(0, 500))
    write(costline_home, "b", range(500, 1000))
    write(costline_home, "c", range(1000, 1400))
    everything = range(0, 1400)
    want_cost = sum(event(i).cost_picousd for i in everything)
    want_saved = sum(event(i).saved_picousd for i in everything)
    reader = Reader(costline_home)
    assert reader.totals()["cost_picousd"] == want_cost
    assert reader.pruned_span() is None

    # keep 20 days before NOW = T0+40d: cutoff T0+20d; "a" ends at day 12.8, "b" at day 25.7
    result = prune(costline_home, 20, now=NOW)
    assert (result.segments, result.rows) == (1, 500)
    assert [s.name for s in scan(segments_dir(costline_home)).active] == [
        "b.parquet",
        "c.parquet",
    ]
    assert reader.count() == 900  # the raw rows are gone...
    totals = reader.totals()  # ...but every total still counts them
    assert totals["cost_picousd"] == want_cost
    assert totals["saved_picousd"] == want_saved
    assert totals["requests"] == 1400
    assert totals["input_tokens"] == sum(event(i).input_tokens for i in everything)
    assert totals["errors"] == sum(event(i).status not in ("ok", "skipped") for i in everything)
    assert totals["cache_hits"] == sum(event(i).cache_hit for i in everything)
    assert spend_by_day_model(reader) == expected_by_day_model(everything)
    # filtered by org, over a range ending inside the pruned days (an hour boundary)
    end = T0 + timedelta(days=5)
    acme = [i for i in everything if event(i).org == "acme" and event(i).ts < end]
    got = reader.totals(Filters(org="acme", end=end))
    assert got["cost_picousd"] == sum(event(i).cost_picousd for i in acme)
    first, last = reader.pruned_span() or (None, None)
    assert first == T0
    assert last == event(499).ts.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    # a second prune finds nothing more to do and changes nothing
    assert prune(costline_home, 20, now=NOW).segments == 0
    assert reader.totals()["cost_picousd"] == want_cost


def test_a_crash_between_rollup_and_delete_counts_nothing_twice(costline_home: Path) -> None:
    write(costline_home, "a", range(0, 300))
    write(costline_home, "b", range(300, 600))
    want = sum(event(i).cost_picousd for i in range(600))
    prune(costline_home, 20, now=NOW + timedelta(days=30))  # prunes both
    assert Reader(costline_home).count() == 0
    # put "a" back as if the process died after moving its rollup, before deleting it
    write(costline_home, "a", range(0, 300))
    reader = Reader(costline_home)
    assert reader.count() == 300
    assert reader.totals()["cost_picousd"] == want  # the rollup of "a" is not counted
    assert prune(costline_home, 20, now=NOW + timedelta(days=30)).segments == 1
    assert reader.totals()["cost_picousd"] == want


def test_compaction_writes_rollups_and_prune_reuses_them(costline_home: Path) -> None:
    for k in range(4):
        write(costline_home, f"s{k}", range(k * 100, (k + 1) * 100))
    assert compact().merged == 4
    merged = scan(segments_dir(costline_home)).active
    assert len(merged) == 1
    live = sorted(p.name for p in rollups_dir(costline_home).glob("*.parquet"))
    assert live == [merged[0].name]  # the inputs' rollups are gone with them
    prune(costline_home, 1, now=NOW + timedelta(days=30))
    assert not list(rollups_dir(costline_home).glob("*.parquet"))
    assert [p.name for p in pruned_dir(costline_home).glob("*.parquet")] == [merged[0].name]
    reader = Reader(costline_home)
    assert reader.count() == 0
    assert reader.totals()["cost_picousd"] == sum(event(i).cost_picousd for i in range(400))
    assert spend_by_day_model(reader) == expected_by_day_model(range(400))


def test_an_old_segment_without_the_newest_columns_prunes(costline_home: Path) -> None:
    old = rows_to_table([event_row(event(i)) for i in range(50)]).drop_columns(["metadata"])
    sdir = segments_dir(costline_home)
    sdir.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    pq.write_table(old, sdir / "old.parquet")
    prune(costline_home, 1, now=NOW)
    assert Reader(costline_home).totals()["cost_picousd"] == sum(
        event(i).cost_picousd for i in range(50)
    )


def test_retention_days_must_be_a_positive_whole_number(costline_home: Path) -> None:
    for bad in (0, -3, 1.5, True, "30"):
        with pytest.raises(ConfigError, match="retention_days"):
            prune(costline_home, bad, now=NOW)  # type: ignore[arg-type]


def test_removing_the_events_directory_leaves_no_stale_rollup_counted(
    costline_home: Path,
) -> None:
    write(costline_home, "a", range(0, 50))
    prune(costline_home, 1, now=NOW)
    shutil.rmtree(costline_home / "events")
    assert Reader(costline_home).totals()["cost_picousd"] == 0


def test_removing_a_source_also_removes_it_from_pruned_rollups(costline_home: Path) -> None:
    from core.usage._rollups import purge_source

    demo = [event_row(event(i, source="demo")) for i in range(0, 40)]
    real = [event_row(event(i)) for i in range(40, 60)]
    write_segment(rows_to_table(demo + real), segments_dir(costline_home), "mixed")
    prune(costline_home, 1, now=NOW)
    reader = Reader(costline_home)
    assert reader.totals()["requests"] == 60
    assert purge_source(costline_home, "demo") == 40
    totals = reader.totals()
    assert totals["requests"] == 20
    assert totals["cost_picousd"] == sum(event(i).cost_picousd for i in range(40, 60))


def test_spend_by_counts_unpriced_calls_exactly_from_raw_events_and_rollups(
    costline_home: Path,
) -> None:
    """``spend_by``'s ``unpriced`` column (and the Overview totals built on it) against counts
    made by hand, before and after the raw events of the first segment are pruned."""
    from core import reports

    def calls(ids: range) -> list[UsageEvent]:
        out = []
        for i in ids:
            if i % 6 == 0:  # unpriced, twice in its hour: a rollup row counts two
                out += [event(i, unpriced=True, cost_picousd=0)]
                out += [event(i, unpriced=True, cost_picousd=0, request_id=f"twin_{i}")]
            else:
                out.append(event(i))
        return out

    a, b = calls(range(0, 500)), calls(range(500, 1000))
    for name, evs in (("a", a), ("b", b)):
        write_segment(rows_to_table([event_row(e) for e in evs]), segments_dir(costline_home), name)
    want: dict[tuple[str, str], int] = defaultdict(int)
    for e in a + b:
        want[(e.ts.strftime("%Y-%m-%d"), e.model)] += e.unpriced

    def by_day_model(reader: Reader) -> dict[tuple[str, str], int]:
        df = reader.spend_by(["model"], "day")
        got = zip(df["period"], df["model"], df["unpriced_calls"], strict=True)
        return {(p.strftime("%Y-%m-%d"), m): int(n) for p, m, n in got}

    total = sum(e.unpriced for e in a + b)
    reader = Reader(costline_home)
    for pruned in (False, True):
        if pruned:
            assert prune(costline_home, 20, now=NOW).segments == 1
            assert reader.pruned_span() is not None
        assert by_day_model(reader) == dict(want), pruned
        overview = reports.spend(reader, Filters(), "org", "hour", "UTC")
        assert overview.totals.unpriced == reader.totals()["unpriced"] == total, pruned
        assert reports.unpriced_calls(reader, Filters()) == total, pruned
        u0 = sum(e.unpriced for e in a + b if e.user == "u0")
        got = reports.spend(reader, Filters(user="u0"), "model", "day", "UTC").totals
        assert got.unpriced == u0 < total, pruned
        assert reports.unpriced_calls(reader, Filters(user="u0")) == u0, pruned
    raw = reader.spend_by(["cache_hit"], None)  # not a rollup dimension: raw events only
    assert int(raw["unpriced_calls"].sum()) == sum(e.unpriced for e in b)
    flag = reader.spend_by(["unpriced"], None)  # the dimension of the same name
    got = dict(zip(flag["unpriced"], flag["unpriced_calls"], strict=True))
    assert got == {True: sum(e.unpriced for e in b), False: 0}


def test_the_accounting_summary_stays_exact_after_pruning(costline_home: Path) -> None:
    """Month x org/project/model accounting (priced calls and cost, unpriced calls apart) is
    the same before and after pruning, and equals a hand count of the events."""
    from core import reports

    def call(i: int) -> UsageEvent:
        if i % 7 == 3:  # unpriced: logged with cost 0 or none at all
            return event(i, unpriced=True, model="mystery", cost_picousd=None if i % 2 else 0)
        return event(i)

    for name, ids in (("a", range(0, 500)), ("b", range(500, 1000)), ("c", range(1000, 1400))):
        rows = [event_row(call(i)) for i in ids]
        write_segment(rows_to_table(rows), segments_dir(costline_home), name)
    calls = [call(i) for i in range(1400)]
    f = Filters(start=T0 - timedelta(days=30), end=NOW)

    def expected(dim: str) -> tuple[dict[object, object], dict[object, object]]:
        priced: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        unpriced: dict[tuple[str, str, str], int] = defaultdict(int)
        for e in calls:
            value = "(none)" if dim == "tag" else str(getattr(e, dim))  # these have no tags
            month = e.ts.strftime("%Y-%m")
            if e.unpriced:
                unpriced[(month, value, str(e.model))] += 1
            else:
                priced[(month, value)][0] += 1
                priced[(month, value)][1] += e.cost_picousd or 0
        costs = {k: (n, f"{Decimal(c) / 10**12:.12f}") for k, (n, c) in priced.items()}
        return costs, dict(unpriced)

    def shown(dim: str) -> tuple[dict[object, object], dict[object, object]]:
        with Reader(costline_home) as reader:
            acc = reports.accounting(reader, f, dim, "UTC")
        p, u = acc.priced, acc.unpriced
        costs = {
            (m, v): (int(n), c)
            for m, v, n, c in zip(p["month"], p[dim], p["calls"], p["cost_usd"], strict=True)
        }
        listed = {
            (m, v, mo): int(n)
            for m, v, mo, n in zip(u["month"], u[dim], u["model"], u["calls"], strict=True)
        }
        return costs, listed

    dims = ("org", "project", "model")
    for dim in (*dims, "tag"):
        assert shown(dim) == expected(dim), dim
    assert prune(costline_home, 20, now=NOW).segments == 1
    for dim in dims:  # by tag: raw events only (rollups keep no tags)
        assert shown(dim) == expected(dim), dim


def test_an_hour_above_int64_picodollars_prunes_and_reads_exactly(costline_home: Path) -> None:
    """One hour x group holding more than 2**63 pUSD (~$9.22M) prunes (its rollup held
    int64 sums: the prune failed) and every reader - totals, the Overview's spend, the
    accounting summary, GET /api/v1/spend - reads it to the picodollar after; a rollup
    file written before (int64 money) still reads beside it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core import reports
    from core.usage import UsageLog
    from tests.servers.api import ApiServer

    big = [event(i, ts=T0 + timedelta(minutes=5 * i), org="acme", project="p0", user="u0",
                 task="chat", model="gpt-4o", provider="openai", status="ok",
                 cost_picousd=4_000_000 * 10**12 + 1 + i, saved_picousd=3 * 10**18 + i)
           for i in range(3)]  # fmt: skip
    hour = sum(e.cost_picousd or 0 for e in big)
    assert hour > 2**63
    recent = [event(10 + i, ts=NOW - timedelta(days=1, minutes=i)) for i in range(5)]
    old = [event(20 + i, ts=T0 + timedelta(days=2, minutes=i)) for i in range(4)]
    for batch in (big, old, recent):  # the real usage writer: one segment each
        with UsageLog(costline_home, compact_threshold=0) as log:
            log.append_many(batch)
    want = hour + sum(e.cost_picousd or 0 for e in (*old, *recent))
    assert prune(costline_home, 20, now=NOW).segments == 2
    # the smaller pruned rollup as a file written before this change: money as int64
    rewritten = 0
    for path in pruned_dir(costline_home).glob("*.parquet"):
        table = pq.read_table(path)
        if pa.compute.max(table["cost_picousd"]).as_py() < 2**63:
            money = [c for c in table.column_names if c.endswith("_picousd")]
            for c in money:
                i = table.column_names.index(c)
                table = table.set_column(i, c, table[c].cast(pa.int64()))
            pq.write_table(table, path)
            rewritten += 1
    assert rewritten == 1
    f = Filters(start=T0, end=NOW)
    with Reader(costline_home) as reader:
        assert reader.count() == len(recent)
        assert reader.totals()["cost_picousd"] == want
        assert reader.totals()["saved_picousd"] == sum(
            e.saved_picousd or 0 for e in (*big, *old, *recent)
        )
        by_hour = reader.spend_by(["org"], "hour", f)
        assert int(by_hour["cost_picousd"].iloc[0]) == hour
        overview = reports.spend(reader, f, "model", "day", "UTC")
        assert overview.totals.cost == want
        first = overview.series[overview.series["period"] == overview.series["period"].min()]
        assert [int(c) for c in first["cost_picousd"]] == [hour]
        acc = reports.accounting(reader, f, "org", "UTC").priced
        acme = acc[acc["org"] == "acme"]
        assert sum(Decimal(c) for c in acme["cost_usd"]) * 10**12 == hour + sum(
            e.cost_picousd or 0 for e in (*old, *recent) if e.org == "acme"
        )
    with ApiServer(costline_home) as server:
        client = server.client(server.user("fin", "viewer"))
        got = client.get("/spend", params={"start": T0.isoformat(), "end": NOW.isoformat(),
                                           "group_by": "hour"}).json()  # fmt: skip
    assert Decimal(got["totals"]["cost_usd"]) * 10**12 == want, got["totals"]
    assert Decimal(got["rows"][0]["cost_usd"]) * 10**12 == hour
