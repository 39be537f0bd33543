"""Export: money as exact decimal strings (CSV) and decimal128 (Parquet), filters respected,
and a CSV round trip through the importer that keeps every total to the picodollar."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.demo import load_demo
from core.errors import ConfigError
from core.export import export, frame_to_bytes
from core.importer import import_csv, read_preview
from core.usage import Filters, Reader, UsageEvent, UsageLog

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
BIG = 2**62 + 7  # picodollars a float64 cannot hold


def _events() -> list[UsageEvent]:
    return [
        UsageEvent(
            request_id="r1",
            ts=datetime(2026, 11, 1, 9, 30, 0, 250000, tzinfo=UTC),
            org="acme",
            user="alice",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=377,
            output_tokens=0,
            cost_picousd=56_550_000,
            cost_input_picousd=56_550_000,
            tags=("a", "b"),
            metadata={"k": "v"},
        ),
        UsageEvent(
            request_id="r2",
            ts=datetime(2026, 11, 2, tzinfo=UTC),
            org="globex",
            provider="openai",
            model="gpt-4o",
            cost_picousd=BIG,
            saved_picousd=5,
        ),
        UsageEvent(
            request_id="r3",
            ts=datetime(2026, 11, 3, tzinfo=UTC),
            org="acme",
            provider="x",
            model="m",
            status="error",
            error_type="RateLimited",
        ),
    ]


def _write(events: list[UsageEvent]) -> None:
    with UsageLog() as log:
        log.append_many(events)


def test_csv_money_is_exact_decimal_text() -> None:
    _write(_events())
    rows = list(csv.DictReader(io.StringIO(export(fmt="csv").decode())))
    assert [r["request_id"] for r in rows] == ["r1", "r2", "r3"]  # oldest first
    assert rows[0]["cost_usd"] == "0.000056550000"
    assert rows[0]["cost_input_usd"] == "0.000056550000"
    assert rows[1]["cost_usd"] == str(Decimal(BIG).scaleb(-12)) == "4611686.018427387911"
    assert rows[1]["saved_usd"] == "0.000000000005"
    assert rows[2]["cost_usd"] == "0.000000000000"
    assert rows[0]["ts"] == "2026-11-01T09:30:00.250000Z"
    assert rows[0]["tags"] == "a;b" and rows[0]["metadata"] == '{"k":"v"}'
    assert "cost_picousd" not in rows[0]


def test_a_row_with_a_negative_cost_is_marked_refund_in_the_last_column() -> None:
    refund = UsageEvent(
        request_id="r4",
        ts=datetime(2026, 11, 4, tzinfo=UTC),
        provider="openai",
        model="gpt-4o",
        cost_picousd=-56_550_000,
        cost_input_picousd=-56_550_000,
    )
    credit = UsageEvent(  # a token class's cost alone below zero
        request_id="r5",
        ts=datetime(2026, 11, 5, tzinfo=UTC),
        provider="openai",
        model="gpt-4o",
        cost_output_picousd=-1,
        cost_input_picousd=1,
    )
    _write([*_events(), refund, credit])
    rows = list(csv.DictReader(io.StringIO(export(fmt="csv").decode())))
    assert list(rows[0])[-1] == "refund"
    assert [r["refund"] for r in rows] == ["false", "false", "false", "true", "true"]
    assert rows[3]["cost_usd"] == "-0.000056550000"
    table = pq.read_table(io.BytesIO(export(fmt="parquet")))
    assert table.column("refund").to_pylist() == [False, False, False, True, True]


def test_parquet_money_is_decimal128_and_filters_apply() -> None:
    _write(_events())
    table = pq.read_table(io.BytesIO(export(Reader(), Filters(org="acme"), "parquet")))
    assert table.schema.field("cost_usd").type == pa.decimal128(38, 12)
    assert table.column("request_id").to_pylist() == ["r1", "r3"]
    assert table.column("cost_usd").to_pylist() == [Decimal("0.000056550000"), Decimal(0)]
    assert table.column("tags").to_pylist() == [["a", "b"], []]


def test_any_frame_exports_with_exact_money() -> None:
    _write(_events())
    spend = Reader().spend_by(["org"], None)
    rows = list(csv.DictReader(io.StringIO(frame_to_bytes(spend, "csv").decode())))
    assert {r["org"]: r["cost_usd"] for r in rows} == {
        "acme": "0.000056550000",
        "globex": "4611686.018427387911",
    }
    huge = pd.DataFrame({"x_picousd": pd.Series([4 * BIG, None], dtype=object)})
    table = pq.read_table(io.BytesIO(frame_to_bytes(huge, "parquet")))
    assert table.column("x_usd").to_pylist() == [Decimal(4 * BIG).scaleb(-12), None]
    delta = pd.DataFrame({"delta_picousd": [-5, -BIG, 3]})  # e.g. a what-if saving
    assert frame_to_bytes(delta, "csv").decode().split() == [
        '"delta_usd"',
        '"-0.000000000005"',
        '"-4611686.018427387911"',
        '"0.000000000003"',
    ]
    table = pq.read_table(io.BytesIO(frame_to_bytes(delta, "parquet")))
    assert table.column("delta_usd").to_pylist() == [Decimal(v).scaleb(-12) for v in (-5, -BIG, 3)]
    with pytest.raises(ConfigError, match="format"):
        frame_to_bytes(huge, "xlsx")


def test_csv_round_trip_through_the_importer_keeps_totals(
    tmp_path: Path, costline_home: Path
) -> None:
    load_demo(days=5, now=NOW)
    demo = Filters(source="demo")
    want = Reader().totals(demo)
    data = export(costline_home, demo, "csv")
    preview = read_preview(data)
    assert not preview.tokens_inclusive
    other = tmp_path / "other-home"
    result = import_csv(
        data, preview.mapping, home=other, now=NOW, tokens_inclusive=preview.tokens_inclusive
    )
    assert not result.bad_rows and result.imported == want["requests"]
    got = Reader(other).totals()
    for key in (
        "requests",
        "cost_picousd",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
    ):
        assert got[key] == want[key], key
    assert result.cost_total == want["cost_usd"]
    by_model = Reader(other).spend_by(["model", "org"], "day")
    mine = Reader().spend_by(["model", "org"], "day", demo)
    assert by_model["cost_picousd"].tolist() == mine["cost_picousd"].tolist()


def test_an_unpriced_call_exports_an_empty_cost_and_imports_back_unpriced(
    tmp_path: Path,
) -> None:
    """Costline's CSV of an unpriced call imported into another log (a restore, a second
    instance) stays unpriced: its cost cells said '0.000000000000', read back as a priced $0."""
    text = "ts,model,input_tokens,output_tokens\n2026-11-01T10:00:00Z,my-finetune,100,10\n"
    import_csv(text.encode(), read_preview(text.encode()).mapping, now=NOW)
    data = export(fmt="csv")
    (row,) = csv.DictReader(io.StringIO(data.decode()))
    assert (row["unpriced"], row["cost_usd"], row["cost_input_usd"]) == ("true", "", "")
    parquet = pq.read_table(io.BytesIO(export(fmt="parquet")))
    assert parquet.column("cost_usd").to_pylist() == [None]
    other = tmp_path / "other-home"
    back = import_csv(data, read_preview(data).mapping, tokens_inclusive=False, home=other, now=NOW)
    assert back.unpriced_models == {"my-finetune": 1}
    (event,) = Reader(other).fetch()
    assert event.unpriced and event.input_tokens == 100


def test_parquet_files_import_like_the_csv_of_the_same_table(tmp_path: Path) -> None:
    """A Parquet file is read as the CSV of its table, whatever its dtypes (int32 and float
    tokens, a zoned millisecond time, dictionary strings, float and decimal costs): every
    row, token and picodollar as the CSV's; the CSV next to it, and Costline's own Parquet
    export, add nothing twice (a Parquet file was refused: 'a carriage return ...')."""
    text = (
        "ts,model,input_tokens,output_tokens,cost,user\n"
        "2024-01-01T00:00:00.123Z,gpt-4o-mini,1000,10,0.001,=a\n"
        "2024-01-01T23:00:00Z,my-finetune,50,5,,\n"
        "2024-01-02T00:00:00Z,gpt-4o,7,3,,bob\n"
    )
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                ["2024-01-01T00:00:00.123Z", "2024-01-01T23:00:00Z", "2024-01-02T00:00:00Z"],
                utc=True,
                format="ISO8601",
            ).tz_convert("Europe/Paris"),
            "model": pd.Categorical(["gpt-4o-mini", "my-finetune", "gpt-4o"]),
            "input_tokens": pd.array([1000, 50, 7], dtype="int32"),
            "output_tokens": [10.0, 5.0, 3.0],
            "cost": [0.001, None, None],
            "user": ["=a", None, "bob"],
        }
    )
    path = tmp_path / "usage.parquet"
    frame.to_parquet(path)
    preview = read_preview(path)
    assert preview.columns == list(frame.columns)
    first = import_csv(path, preview.mapping, tokens_inclusive=False, now=NOW)
    assert first.imported == 3 and first.unpriced_models == {"my-finetune": 1}
    got = [
        (e.ts, e.model, e.input_tokens, e.output_tokens, e.cost_picousd, e.unpriced, e.user)
        for e in sorted(Reader().fetch(), key=lambda e: e.ts)
    ]
    other = tmp_path / "csv-home"
    import_csv(text.encode(), preview.mapping, tokens_inclusive=False, home=other, now=NOW)
    want = [
        (e.ts, e.model, e.input_tokens, e.output_tokens, e.cost_picousd, e.unpriced, e.user)
        for e in sorted(Reader(other).fetch(), key=lambda e: e.ts)
    ]
    assert got == want and got[0][4] == 10**9 and got[0][6] == "=a"
    again = import_csv(text.encode(), preview.mapping, tokens_inclusive=False, now=NOW)
    assert (again.imported, again.duplicates) == (0, 3)
    own = export(fmt="parquet")
    back = import_csv(own, read_preview(own).mapping, tokens_inclusive=False, now=NOW)
    assert (back.imported, back.duplicates) == (0, 3)
    fresh = tmp_path / "fresh-home"
    moved = import_csv(own, read_preview(own).mapping, tokens_inclusive=False, home=fresh, now=NOW)
    assert moved.imported == 3 and moved.unpriced_models == {"my-finetune": 1}
    assert Reader(fresh).totals() == Reader().totals()
