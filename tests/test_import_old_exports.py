"""Usage exports written before a column was added still import: Costline's own export gained
``cache_write_1h_tokens`` and ``price_flags`` (pricing), ``key`` (the gateway) and ``refund``
(refunds round-trip) over time. A file of an older format (a real export with those columns
dropped) imports every row with the same totals, refund false on each; only a file that is
truly malformed (a required column missing, a cell that is not a value) is an error."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.errors import ConfigError
from core.export import export
from core.importer import BadRow, import_csv, read_preview
from core.usage import Reader, UsageEvent, UsageLog

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
ADDED = ("cache_write_1h_tokens", "price_flags", "key", "refund")  # git log -p core/export.py


def _events() -> list[UsageEvent]:
    return [
        UsageEvent(
            request_id="c1",
            ts=datetime(2026, 11, 1, 9, tzinfo=UTC),
            org="acme",
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=377,
            cached_input_tokens=100,
            output_tokens=10,
            cost_picousd=71_550_000,
            cost_input_picousd=56_550_000,
            cost_cached_input_picousd=9_000_000,
            cost_output_picousd=6_000_000,
            key="team-a",
        ),
        UsageEvent(
            request_id="c2",
            ts=datetime(2026, 11, 1, 10, tzinfo=UTC),
            org="acme",
            provider="anthropic",
            model="claude-sonnet-4",
            input_tokens=1_000,
            cache_write_tokens=300,
            cache_write_1h_tokens=300,
            output_tokens=200,
            cost_picousd=6_750_000_000,
            cost_input_picousd=3_000_000_000,
            cost_cache_write_picousd=750_000_000,
            cost_output_picousd=3_000_000_000,
            price_flags=("over_context_window",),
        ),
        UsageEvent(  # logged unpriced: its cost stays unknown
            request_id="c3",
            ts=datetime(2026, 11, 2, tzinfo=UTC),
            org="globex",
            provider="acme-ai",
            model="my-finetune",
            input_tokens=50,
            output_tokens=5,
            unpriced=True,
        ),
    ]


def _csv_without(data: bytes, drop: tuple[str, ...]) -> bytes:
    header, *rows = csv.reader(io.StringIO(data.decode()))
    keep = [i for i, name in enumerate(header) if name not in drop]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([[r[i] for i in keep] for r in [header, *rows]])
    return buf.getvalue().encode()


def _parquet_without(data: bytes, drop: tuple[str, ...]) -> bytes:
    table = pq.read_table(io.BytesIO(data))
    buf = io.BytesIO()
    pq.write_table(table.drop_columns([c for c in drop if c in table.column_names]), buf)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("drop", [("refund",), ("key",), ADDED])
def test_an_export_of_an_older_format_imports_with_the_same_totals(
    fmt: str, drop: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UsageLog() as log:
        log.append_many(_events())
    before = Reader().totals()
    data = export(fmt=fmt)
    old = _csv_without(data, drop) if fmt == "csv" else _parquet_without(data, drop)
    assert old != data
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    monkeypatch.setenv("COSTLINE_HOME", str(fresh))  # another install
    preview = read_preview(old)
    assert not set(drop) & set(preview.mapping.values())
    r = import_csv(old, preview.mapping, tokens_inclusive=False, now=NOW)
    assert not r.bad_rows and r.imported == 3
    assert r.cost_total == before["cost_usd"]
    after = Reader().totals()
    for k in ("requests", "cost_picousd", "input_tokens", "output_tokens", "unpriced"):
        assert after[k] == before[k], k
    back = {e.request_id: e for e in Reader().fetch()}
    assert back["c3"].unpriced and back["c3"].cost_picousd == 0
    if "key" not in drop:
        assert back["c1"].key == "team-a"
    # the file written today, imported after it, adds nothing: the same rows
    assert import_csv(data, read_preview(data).mapping, now=NOW).imported == 0


def test_a_truly_malformed_old_export_is_a_clear_error() -> None:
    with UsageLog() as log:
        log.append_many(_events())
    old = _csv_without(export(fmt="csv"), ADDED)
    no_model = _csv_without(old, ("model",))
    with pytest.raises(ConfigError, match="model"):
        import_csv(no_model, read_preview(no_model).mapping, dry_run=True, now=NOW)
    header, *rows = csv.reader(io.StringIO(old.decode()))
    rows[1][header.index("input_tokens")] = "lots"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    bad = buf.getvalue().encode()
    r = import_csv(bad, read_preview(bad).mapping, dry_run=True, now=NOW)
    assert [b.line for b in r.bad_rows] == [3] and "input_tokens" in r.bad_rows[0].reason
    assert isinstance(r.bad_rows[0], BadRow)


def test_an_export_from_before_unpriced_costs_were_left_empty_keeps_them_unpriced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before empty cost cells, a call logged unpriced exported $0 costs: imported back it
    is still unpriced (its cost unknown), not a priced $0 call."""
    with UsageLog() as log:
        log.append_many(_events())
    before = Reader().totals()
    header, *rows = csv.reader(io.StringIO(_csv_without(export(fmt="csv"), ADDED).decode()))
    for name in header:
        if name.startswith("cost_") and name.endswith("_usd"):
            rows[2][header.index(name)] = "0.000000000000"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    old = buf.getvalue().encode()
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    monkeypatch.setenv("COSTLINE_HOME", str(fresh))
    r = import_csv(old, read_preview(old).mapping, tokens_inclusive=False, now=NOW)
    assert not r.bad_rows and r.imported == 3
    after = Reader().totals()
    assert (after["cost_picousd"], after["unpriced"]) == (
        before["cost_picousd"],
        before["unpriced"],
    )
