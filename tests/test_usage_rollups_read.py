"""Reads over rollup dimensions take a compacted segment's whole UTC hours from its rollup
(rows ~ hours x dimension values, not events), raw rows only for the hours a query splits
and for segments without a rollup; every answer equals a raw DuckDB query to the picodollar."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from test_usage_support import event

from core.reports import window_spend
from core.usage import Filters, Reader, UsageEvent, compact, rows_to_table, write_segment
from core.usage._rollups import rollups_dir, write_rollup
from core.usage._schema import event_row
from core.usage._segments import scan, segments_dir

T0 = datetime(2024, 12, 20, tzinfo=UTC)
N = 4000  # 100 events an hour for 40 hours
KOLKATA = "Asia/Kolkata"  # UTC+5:30: each local midnight splits a UTC hour


def ev(i: int) -> UsageEvent:
    """Few dimension values (rollup rows per hour <= 2 users x 3 models x 2 statuses)."""
    return event(
        i,
        ts=T0 + timedelta(seconds=36 * i, microseconds=i),
        org="acme",
        project="p0",
        user=f"u{i % 2}",
        task="chat",
        provider="openai",
        model=("m-a", "m-b", "m-c")[i % 3],
        status="error" if i % 13 == 0 else "ok",
        cache_hit=i % 9 == 0,
    )


def write(home: Path, name: str, ids: range) -> None:
    write_segment(rows_to_table([event_row(ev(i)) for i in ids]), segments_dir(home), name)


def compacted_log(home: Path) -> None:
    for k in range(4):
        write(home, f"s{k}", range(k * N // 4, (k + 1) * N // 4))
    assert compact(home).merged == 4
    active = scan(segments_dir(home)).active
    assert [s.name for s in active] == sorted(p.name for p in rollups_dir(home).glob("*.parquet"))


def raw(home: Path, sql: str, params: list[object]) -> list[tuple[object, ...]]:
    """An independent DuckDB query over the raw rows of the active segments (``raw``)."""
    files = [str(s.path) for s in scan(segments_dir(home)).active]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE VIEW raw AS SELECT * FROM read_parquet({files!r})")
    rows = con.execute(sql, params).fetchall()
    con.close()
    return rows


def rows_read(reader: Reader, start: datetime, end: datetime) -> tuple[int, int]:
    """(rows of ``facts`` a query over [start, end) aggregates, the requests they hold)."""
    df = reader.sql(
        "SELECT count(*) AS n, sum(requests) AS r FROM facts WHERE ts >= ? AND ts < ?",
        [start, end],
        cuts=(start, end),
    )
    return int(df["n"].iloc[0]), int(df["r"].iloc[0])


def test_long_ranges_read_rollups_and_stay_exact(costline_home: Path) -> None:
    compacted_log(costline_home)
    reader = Reader(costline_home)
    # a range starting at a :30 (Kolkata 09:00) and ending mid-hour (e.g. "now")
    start, end = T0 + timedelta(hours=3, minutes=30), T0 + timedelta(hours=37, minutes=17)
    f = Filters(start=start, end=end)
    n, requests = rows_read(reader, start, end)
    want_requests = raw(
        costline_home, "SELECT count(*) FROM raw WHERE ts >= ? AND ts < ?", [start, end]
    )[0][0]
    assert requests == want_requests
    # cost ~ hours x dimension values: <= 12 rollup rows per whole hour + the 2 split hours'
    # raw rows, instead of 100 raw rows per hour (the raw-only view reads every event)
    whole_hours = 37 - 4
    assert n <= whole_hours * 12 + 2 * 100
    assert n < want_requests / 4

    totals = reader.totals(f)
    want = raw(
        costline_home,
        "SELECT sum(cost_picousd)::VARCHAR, sum(saved_picousd)::VARCHAR, count(*),"
        " sum(input_tokens), count(*) FILTER (WHERE status = 'error'),"
        " count(*) FILTER (WHERE cache_hit), min(ts), max(ts) FROM raw WHERE ts >= ? AND ts < ?",
        [start, end],
    )[0]
    got = (
        str(totals["cost_picousd"]),
        str(totals["saved_picousd"]),
        totals["requests"],
        totals["input_tokens"],
        totals["errors"],
        totals["cache_hits"],
        totals["first_ts"],
        totals["last_ts"],
    )
    assert got == want

    # by local day and model in a :30 zone: each local midnight splits a UTC hour
    df = reader.spend_by(["model"], "day", f, tz=KOLKATA)
    mine = sorted(
        (p.strftime("%Y-%m-%d"), m, int(c), int(r))
        for p, m, c, r in zip(
            df["period"], df["model"], df["cost_picousd"], df["requests"], strict=True
        )
    )
    want_days = raw(
        costline_home,
        "SELECT strftime(timezone(?, ts), '%Y-%m-%d') AS d, model, sum(cost_picousd), count(*)"
        " FROM raw WHERE ts >= ? AND ts < ? GROUP BY ALL ORDER BY ALL",
        [KOLKATA, start, end],
    )
    assert mine == [(d, m, int(c), int(r)) for d, m, c, r in want_days]  # type: ignore[call-overload]
    assert len({d for d, *_ in mine}) == 2  # a local midnight (18:30 UTC) inside the range

    # by UTC hour and user, and a range over nothing but whole hours
    g = Filters(start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=30), user="u1")
    df = reader.spend_by(["user"], "hour", g)
    mine_h = sorted(
        (p.isoformat()[:13], int(c)) for p, c in zip(df["period"], df["cost_picousd"], strict=True)
    )
    want_h = raw(
        costline_home,
        "SELECT strftime(ts, '%Y-%m-%dT%H'), sum(cost_picousd) FROM raw"
        " WHERE ts >= ? AND ts < ? AND \"user\" = 'u1' GROUP BY 1 ORDER BY 1",
        [g.start, g.end],
    )
    assert mine_h == [(h, int(c)) for h, c in want_h]  # type: ignore[call-overload]
    n_whole, _ = rows_read(reader, g.start, g.end)  # type: ignore[arg-type]
    assert n_whole <= 28 * 12  # no raw row at all

    # the Overview's KPI windows (today, last 30 days, ... ending at a mid-hour "now")
    now = T0 + timedelta(hours=39, minutes=41, seconds=7)
    kpis = window_spend(reader, Filters(), KOLKATA, now)
    assert kpis["last30"] == int(
        raw(
            costline_home,
            "SELECT sum(cost_picousd) FROM raw WHERE ts >= ? AND ts < ?",
            [now - timedelta(days=30), now],
        )[0][0]  # type: ignore[arg-type]
    )


def test_a_merge_whose_inputs_remain_counts_each_row_once(costline_home: Path) -> None:
    """The crash window: the merged segment and its rollup are written, the inputs (and
    their own rollups) not yet deleted. Every row counts once, from the rollup."""
    for k in range(4):
        write(costline_home, f"s{k}", range(k * N // 4, (k + 1) * N // 4))
    sdir = segments_dir(costline_home)
    saved = {s.name: s.path.read_bytes() for s in scan(sdir).active}
    assert compact(costline_home).merged == 4
    for name, data in saved.items():  # the inputs are back: the process died before
        (sdir / name).write_bytes(data)  # deleting them (and their rollups)
    for seg in scan(sdir).superseded:
        write_rollup(costline_home, [seg], rollups_dir(costline_home), seg.name)
    snap = scan(sdir)
    assert len(snap.active) == 1 and len(snap.superseded) == 4
    reader = Reader(costline_home)
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=39, minutes=59)
    n, requests = rows_read(reader, start, end)
    want = raw_once(costline_home, start, end)
    assert requests == want[1]
    assert n < want[1] / 4  # from the merged segment's rollup
    assert reader.totals(Filters(start=start, end=end))["cost_picousd"] == want[0]
    assert reader.totals()["cost_picousd"] == sum(ev(i).cost_picousd for i in range(N))
    assert reader.totals()["requests"] == N


def raw_once(home: Path, start: datetime, end: datetime) -> tuple[int, int]:
    rows = [ev(i) for i in range(N) if start <= ev(i).ts < end]
    return sum(e.cost_picousd for e in rows), len(rows)


@pytest.mark.parametrize("hours", [(0, 40), (5, 6)])
def test_segments_without_a_rollup_read_raw(costline_home: Path, hours: tuple[int, int]) -> None:
    """The live tail (segments no compaction wrote) is read raw beside the rollups."""
    compacted_log(costline_home)
    extra = range(N, N + 50)
    write_segment(
        rows_to_table([event_row(ev(i)) for i in extra]), segments_dir(costline_home), "tail"
    )
    start, end = T0 + timedelta(hours=hours[0]), T0 + timedelta(hours=hours[1], minutes=30)
    f = Filters(start=start, end=end)
    rows = [ev(i) for i in range(N + 50) if start <= ev(i).ts < end]
    got = Reader(costline_home).totals(f)
    assert (got["cost_picousd"], got["requests"]) == (sum(e.cost_picousd for e in rows), len(rows))


def test_whole_hours_of_a_compacted_segment_never_read_its_raw_rows(
    costline_home: Path,
) -> None:
    """Drop from the merged segment every raw row of the hours the query does not split
    (its rollup keeps them): the Overview's figures and the API's spend are unchanged, so
    those hours were read from the rollup alone (a raw-only read misses them)."""
    compacted_log(costline_home)
    sdir = segments_dir(costline_home)
    (merged,) = scan(sdir).active
    start, end = T0 + timedelta(hours=1, minutes=30), T0 + timedelta(hours=38, minutes=5)
    split = {start, end, T0 + timedelta(hours=18, minutes=30)}  # + the Kolkata midnight
    split_hours = {t.replace(minute=0, second=0, microsecond=0) for t in split}
    kept = [
        i
        for i in range(N)
        if ev(i).ts.replace(minute=0, second=0, microsecond=0) in split_hours
        or not start <= ev(i).ts < end
    ]
    assert 0 < len(kept) < N / 4
    # the dropped rows move 100 days on, out of the range (the segment keeps its size)
    later = [ev(i) for i in range(N) if i not in set(kept)]
    later = [replace(e, ts=e.ts + timedelta(days=100)) for e in later]
    merged.path.unlink()
    write_segment(
        rows_to_table([event_row(e) for e in [*(ev(i) for i in kept), *later]]),
        sdir,
        merged.name.removesuffix(".parquet"),
        replaces=sorted(merged.replaces),
    )
    reader = Reader(costline_home)
    df = reader.spend_by(["model"], "day", Filters(start=start, end=end), tz=KOLKATA)
    got = sorted(
        (p.strftime("%Y-%m-%d"), m, int(c), int(r))
        for p, m, c, r in zip(
            df["period"], df["model"], df["cost_picousd"], df["requests"], strict=True
        )
    )
    want: dict[tuple[str, str], list[int]] = {}
    for e in (ev(i) for i in range(N)):
        if start <= e.ts < end:
            day = (e.ts + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d")
            cell = want.setdefault((day, e.model), [0, 0])
            cell[0] += e.cost_picousd
            cell[1] += 1
    assert got == sorted((d, m, c, r) for (d, m), (c, r) in want.items())
