"""GET /spend and /usage over real HTTP: the same numbers as the console's Overview and a
raw DuckDB query over the segment files, to the cent, before and after retention."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from test_usage_support import event

from core import reports
from core.usage import Filters, Reader, rows_to_table, segments_dir, write_segment
from core.usage._prune import prune
from core.usage._schema import event_row
from tests.servers.api import ApiServer

N = 1400  # event(i): one every 37 minutes from 2024-12-20, about 36 days
RANGE = {"start": "2024-12-01", "end": "2025-02-01"}
T0 = datetime(2024, 12, 20, tzinfo=UTC)


@pytest.fixture
def api(costline_home: Path) -> Iterator[tuple[ApiServer, str]]:
    sdir = segments_dir(costline_home)
    for name, ids in (("a", range(0, 500)), ("b", range(500, 1000)), ("c", range(1000, N))):
        write_segment(rows_to_table([event_row(event(i)) for i in ids]), sdir, name)
    with ApiServer(costline_home) as server:
        yield server, server.user("fin", "viewer")


def usd(pico: int) -> str:
    """Hand formatting of exact dollars, independent of the API's own helper."""
    text = f"{Decimal(pico) / Decimal(10**12):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def raw_duckdb(home: Path) -> dict[tuple[str, str], int]:
    files = str(segments_dir(home) / "*.parquet")
    rows = duckdb.sql(
        "SELECT strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%d') AS day, model,"
        f" CAST(sum(cost_picousd) AS VARCHAR) FROM read_parquet('{files}') GROUP BY ALL"
    ).fetchall()
    return {(d, m): int(c) for d, m, c in rows}


def api_rows(client: object, **params: str) -> dict[tuple[str, str], str]:
    r = client.get("/spend", params={**RANGE, "group_by": "day,model", **params})  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return {(row["period"], row["model"]): row["cost_usd"] for row in r.json()["rows"]}


def test_spend_equals_the_console_and_raw_duckdb_to_the_cent(
    api: tuple[ApiServer, str], costline_home: Path
) -> None:
    server, token = api
    client = server.client(token)
    raw = raw_duckdb(costline_home)
    assert api_rows(client) == {k: usd(v) for k, v in raw.items()}
    body = client.get("/spend", params={**RANGE, "group_by": "model"}).json()
    total = sum(event(i).cost_picousd for i in range(N))
    assert body["totals"]["cost_usd"] == usd(total)
    assert body["totals"]["requests"] == N
    assert body["note"] is None
    # the console's Overview function, on the same range
    f = Filters(start=datetime(2024, 12, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
    with Reader(costline_home) as reader:
        console = reports.spend(reader, f, "model", "day", "UTC")
    assert usd(console.totals.cost) == body["totals"]["cost_usd"]
    assert console.totals.requests == body["totals"]["requests"]
    assert usd(console.totals.saved) == body["totals"]["saved_usd"]
    by_key: dict[tuple[str, str], int] = defaultdict(int)
    for p, k, c in zip(
        console.series["period"], console.series["key"], console.series["cost_picousd"], strict=True
    ):
        by_key[(p.strftime("%Y-%m-%d"), k)] += int(c)
    assert {k: usd(v) for k, v in by_key.items()} == api_rows(client)
    # a filter and the configured time zone
    acme = [i for i in range(N) if event(i).org == "acme"]
    body = client.get("/spend", params={**RANGE, "org": "acme"}).json()
    assert body["totals"]["cost_usd"] == usd(sum(event(i).cost_picousd for i in acme))


def test_spend_stays_exact_after_pruning_and_says_so(
    api: tuple[ApiServer, str], costline_home: Path
) -> None:
    server, token = api
    client = server.client(token)
    before = api_rows(client)
    totals_before = client.get("/spend", params=RANGE).json()["totals"]
    assert prune(costline_home, 20, now=T0 + timedelta(days=40)).segments == 1
    assert api_rows(client) == before
    after = client.get("/spend", params=RANGE).json()
    assert after["totals"] == totals_before
    assert "removed by retention" in after["note"]
    listing = client.get("/usage", params={**RANGE, "limit": 1000}).json()
    assert len(listing["data"]) == 900  # the raw rows of the pruned segment are gone...
    assert "removed by retention" in listing["note"]  # ...and the answer says so


def test_usage_pages_walk_every_event_once(api: tuple[ApiServer, str]) -> None:
    server, token = api
    client = server.client(token)
    want = [event(i).request_id for i in sorted(range(N), key=lambda i: event(i).ts, reverse=True)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {**RANGE, "limit": "97", **({"cursor": cursor} if cursor else {})}
        body = client.get("/usage", params=params).json()
        seen += [e["request_id"] for e in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == want
    first = client.get("/usage", params={**RANGE, "limit": "1", "status": "error"}).json()
    newest_error = max(
        (i for i in range(N) if event(i).status == "error"), key=lambda i: event(i).ts
    )
    e = event(newest_error)
    assert first["data"][0]["request_id"] == e.request_id
    assert first["data"][0]["cost_usd"] == usd(e.cost_picousd)
    assert first["data"][0]["ts"] == e.ts.isoformat()


def test_one_event_by_id_and_unknown_ids(api: tuple[ApiServer, str]) -> None:
    server, token = api
    client = server.client(token)
    e = event(123)
    body = client.get(f"/usage/{e.request_id}").json()
    assert (body["model"], body["cost_usd"], body["input_tokens"]) == (
        e.model,
        usd(e.cost_picousd),
        e.input_tokens,
    )
    missing = client.get("/usage/req_nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"type": "not_found", "message": "no request 'req_nope'", "field": None}
    }


def test_bad_parameters_name_the_parameter(api: tuple[ApiServer, str]) -> None:
    server, token = api
    client = server.client(token)
    for params, field in (
        ({"group_by": "day,week"}, "group_by"),
        ({"group_by": "colour"}, "group_by"),
        ({"start": "last tuesday"}, "start"),
        ({"range": "forever"}, "range"),
        ({"start": "2025-01-02", "end": "2025-01-01"}, "end"),
    ):
        r = client.get("/spend", params=params)
        assert r.status_code == 400, params
        assert r.json()["error"]["field"] == field
    assert client.get("/usage", params={"cursor": "garbage!"}).json()["error"]["field"] == "cursor"
    assert client.get("/usage", params={"limit": "0"}).status_code == 400


def test_top_spenders_and_kpis(api: tuple[ApiServer, str]) -> None:
    server, token = api
    client = server.client(token)
    body = client.get("/spend/top", params={**RANGE, "who": "user", "n": "2"}).json()
    by_user: dict[str, int] = defaultdict(int)
    for i in range(N):
        by_user[str(event(i).user)] += event(i).cost_picousd
    best = sorted(by_user.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    assert [(d["name"], d["cost_usd"]) for d in body["data"]] == [(u, usd(c)) for u, c in best]
    kpis = client.get("/spend", params={**RANGE, "kpis": "true"}).json()["kpis"]
    assert set(kpis) == {"today", "yesterday", "mtd", "prev_mtd", "last30", "prev30"}
    assert kpis["today"] == "0"  # the seeded events are long past


def test_unpriced_calls_are_in_the_totals_and_a_call_counts_once_by_tag(
    costline_home: Path,
) -> None:
    """GET /spend's totals count the unpriced calls; the Overview's totals stacked by tag
    count a call with two tags once: both against a raw DuckDB query."""

    def call(i: int):  # type: ignore[no-untyped-def]
        unpriced = i % 5 == 0
        return event(
            i,
            tags=[["a"], ["a", "b"], []][i % 3],
            unpriced=unpriced,
            cost_picousd=0 if unpriced else event(i).cost_picousd,
        )

    calls = [call(i) for i in range(300)]
    write_segment(rows_to_table([event_row(e) for e in calls]), segments_dir(costline_home), "t")
    files = str(segments_dir(costline_home) / "*.parquet")
    with duckdb.connect() as con:
        requests, cost, unpriced = con.execute(
            "SELECT count(*), CAST(sum(cost_picousd) AS VARCHAR), count_if(unpriced)"
            " FROM read_parquet(?)",
            [files],
        ).fetchall()[0]
    assert unpriced == sum(e.unpriced for e in calls) > 0
    with ApiServer(costline_home) as server:
        client = server.client(server.user("fin", "viewer"))
        body = client.get("/spend", params={**RANGE, "group_by": "day,model"}).json()
    assert body["totals"]["requests"] == requests == 300
    assert body["totals"]["cost_usd"] == usd(int(cost))
    assert body["totals"]["unpriced"] == unpriced
    f = Filters(start=datetime(2024, 12, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
    with Reader(costline_home) as reader:
        by_tag = reports.spend(reader, f, "tag", "day", "UTC")
    assert sum(by_tag.series["requests"]) == 400  # the two-tag calls under both tags...
    got = by_tag.totals  # ...and once in the totals
    assert (got.requests, usd(got.cost), got.unpriced) == (300, usd(int(cost)), unpriced)


def test_top_spenders_with_a_user_of_unpriced_calls_only(costline_home: Path) -> None:
    """A user whose calls were all logged without a cost (unpriced, or errors) is a top
    spender of $0, not a crash (sum over NULLs); the order matches a raw DuckDB query."""
    calls = [
        event(1, user="costed"),
        event(2, user="nocost", unpriced=True, cost_picousd=None),
        event(3, user="nocost", status="error", cost_picousd=None),
    ]
    write_segment(rows_to_table([event_row(e) for e in calls]), segments_dir(costline_home), "t")
    files = str(segments_dir(costline_home) / "*.parquet")
    with duckdb.connect() as con:
        raw = con.execute(
            "SELECT user, CAST(coalesce(sum(cost_picousd), 0) AS VARCHAR), count(*)"
            " FROM read_parquet(?) GROUP BY 1 ORDER BY 2 DESC",
            [files],
        ).fetchall()
    assert raw[1] == ("nocost", "0", 2)
    f = Filters(start=datetime(2024, 12, 1, tzinfo=UTC), end=datetime(2025, 2, 1, tzinfo=UTC))
    with Reader(costline_home) as reader:
        top = reports.top_spenders(reader, f, "user")
    assert list(zip(top["name"], top["cost_picousd"], top["requests"], strict=True)) == [
        (u, int(c), n) for u, c, n in raw
    ]


def test_spend_by_minute_names_each_minute(api: tuple[ApiServer, str]) -> None:
    """group_by=minute: every row is one minute (named to the minute), so no two rows share
    a period and model, and the rows equal a hand count of the events per minute."""
    server, token = api
    client = server.client(token)
    start, end = "2024-12-20T00:00:00", "2024-12-21T00:00:00"
    r = client.get("/spend", params={"start": start, "end": end, "group_by": "minute,model"})
    assert r.status_code == 200, r.text
    got = {(row["period"], row["model"]): row["cost_usd"] for row in r.json()["rows"]}
    assert len(got) == len(r.json()["rows"])
    want: dict[tuple[str, str], int] = defaultdict(int)
    for i in range(N):
        e = event(i)
        if e.ts < datetime(2024, 12, 21, tzinfo=UTC):
            want[(e.ts.strftime("%Y-%m-%dT%H:%M+00:00"), str(e.model))] += e.cost_picousd
    assert got == {k: usd(v) for k, v in want.items()}


def test_a_retried_call_by_id_is_its_last_attempt(costline_home: Path) -> None:
    """Each attempt of a retried call is logged under its request id; GET /usage/{id}
    answers the last one (the outcome and its cost), not whichever the scan met first."""
    first = event(7, request_id="req_retry", status="error", attempt=1, cost_picousd=0)
    last = event(
        7, request_id="req_retry", status="ok", attempt=2, ts=first.ts + timedelta(seconds=2)
    )
    write_segment(
        rows_to_table([event_row(first), event_row(last)]), segments_dir(costline_home), "a"
    )
    with ApiServer(costline_home) as server:
        client = server.client(server.user("fin", "viewer"))
        body = client.get("/usage/req_retry").json()
        listed = client.get("/usage", params=RANGE).json()["data"]
    assert (body["status"], body["attempt"], body["cost_usd"]) == ("ok", 2, usd(last.cost_picousd))
    assert [(e["status"], e["attempt"]) for e in listed] == [("ok", 2), ("error", 1)]


def test_an_unpriced_call_by_id_has_no_cost_rather_than_a_500(costline_home: Path) -> None:
    """Its cost is unknown: cost_usd null, as the list shows it, and whole numbers stay whole."""
    e = event(5, request_id="req_unpriced", cost_picousd=None, unpriced=True, latency_ms=None)
    write_segment(
        rows_to_table([event_row(e), event_row(event(6))]), segments_dir(costline_home), "a"
    )
    with ApiServer(costline_home) as server:
        client = server.client(server.user("fin", "viewer"))
        one = client.get("/usage/req_unpriced")
        listed = client.get("/usage", params=RANGE).json()["data"]
        other = client.get(f"/usage/{event(6).request_id}").json()
    assert one.status_code == 200, one.text
    body = one.json()
    assert (body["cost_usd"], body["latency_ms"], body["unpriced"]) == (None, None, True)
    assert {k: v for k, v in body.items() if k not in ("prompt", "response")} == next(
        x for x in listed if x["request_id"] == "req_unpriced"
    )
    assert other["input_tokens"] == event(6).input_tokens and isinstance(other["attempt"], int)


def test_a_spend_row_of_unpriced_calls_says_so(costline_home: Path) -> None:
    """A model whose calls were all logged unpriced reads cost_usd "0" with unpriced 3 (not
    a silent $0); the rows' unpriced counts add up to the totals'."""
    evs = [event(i) for i in range(20)]
    evs += [event(100 + i, model="mystery", cost_picousd=None, unpriced=True) for i in range(3)]
    write_segment(rows_to_table([event_row(e) for e in evs]), segments_dir(costline_home), "a")
    with ApiServer(costline_home) as server:
        client = server.client(server.user("fin", "viewer"))
        for group in ("model", "day,model", "user"):
            body = client.get("/spend", params={**RANGE, "group_by": group}).json()
            assert sum(r["unpriced"] for r in body["rows"]) == body["totals"]["unpriced"] == 3
        rows = client.get("/spend", params={**RANGE, "group_by": "model"}).json()["rows"]
    (mystery,) = [r for r in rows if r["model"] == "mystery"]
    assert (mystery["cost_usd"], mystery["requests"], mystery["unpriced"]) == ("0", 3, 3)


def test_an_unpriced_call_reads_no_cost_in_usage_not_zero(costline_home: Path) -> None:
    """GET /usage and /usage/{id}: a call logged unpriced has cost_usd null (its cost is
    unknown), as the CSV export and the console's request log show it, never "0"; a priced
    call keeps its exact cost, and a saving is still a figure."""
    calls = [event(1), event(2, unpriced=True, cost_picousd=0, model="mystery")]
    write_segment(rows_to_table([event_row(e) for e in calls]), segments_dir(costline_home), "t")
    with ApiServer(costline_home) as server:
        client = server.client(server.user("fin", "viewer"))
        listed = client.get("/usage", params=RANGE).json()["data"]
        one = client.get(f"/usage/{calls[1].request_id}").json()
    got = {row["request_id"]: (row["cost_usd"], row["unpriced"]) for row in listed}
    assert got == {
        calls[0].request_id: (usd(calls[0].cost_picousd), False),
        calls[1].request_id: (None, True),
    }
    assert (one["cost_usd"], one["unpriced"]) == (None, True) and one["saved_usd"] == "0"
