"""A usage log with a refund (negative cost) round-trips through Costline's own export: every
row, token and picodollar comes back and the totals reconcile exactly (a call logged unpriced
stays unpriced); importing it again adds nothing. A negative cost on a row the file does not
mark as a refund is still refused, with its line and column named."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.export import export
from core.importer import BadRow, import_csv, read_preview
from core.usage import Reader, UsageEvent, UsageLog

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
KEEP = (
    "request_id",
    "ts",
    "org",
    "provider",
    "model",
    "status",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_picousd",
    "cost_input_picousd",
    "cost_cached_input_picousd",
    "cost_cache_write_picousd",
    "cost_output_picousd",
    "cost_reasoning_picousd",
    "saved_picousd",
    "unpriced",
)


def _events() -> list[UsageEvent]:
    return [
        UsageEvent(  # an ordinary call
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
        ),
        UsageEvent(  # another, on another model
            request_id="c2",
            ts=datetime(2026, 11, 1, 10, tzinfo=UTC),
            org="acme",
            provider="anthropic",
            model="claude-sonnet-4",
            input_tokens=1_000,
            output_tokens=200,
            reasoning_tokens=50,
            cost_picousd=6_750_000_000,
            cost_input_picousd=3_000_000_000,
            cost_output_picousd=3_000_000_000,
            cost_reasoning_picousd=750_000_000,
        ),
        UsageEvent(  # a model the catalog does not know: cost unknown
            request_id="c3",
            ts=datetime(2026, 11, 2, tzinfo=UTC),
            org="globex",
            provider="acme-ai",
            model="my-finetune",
            input_tokens=50,
            output_tokens=5,
            unpriced=True,
        ),
        UsageEvent(  # logged unpriced: the catalog has gpt-4o now, the cost stays unknown
            request_id="c4",
            ts=datetime(2026, 11, 2, 12, tzinfo=UTC),
            org="globex",
            provider="openai",
            model="gpt-4o",
            input_tokens=100,
            output_tokens=10,
            unpriced=True,
        ),
        UsageEvent(  # the provider refunds the second call's input
            request_id="refund-c2",
            ts=datetime(2026, 11, 3, tzinfo=UTC),
            org="acme",
            provider="anthropic",
            model="claude-sonnet-4",
            cost_picousd=-3_000_000_000,
            cost_input_picousd=-3_000_000_000,
        ),
    ]


def _row(e: UsageEvent) -> tuple[object, ...]:
    return tuple(getattr(e, k) for k in KEEP)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_export_with_a_refund_restores_every_picodollar(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UsageLog() as log:
        log.append_many(_events())
    before = Reader().totals()
    data = export(fmt=fmt)
    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    monkeypatch.setenv("COSTLINE_HOME", str(fresh))  # another install
    mapping = read_preview(data).mapping
    r = import_csv(data, mapping, tokens_inclusive=False, now=NOW)
    assert not r.bad_rows and r.imported == 5
    assert r.cost_total == before["cost_usd"]
    assert r.unpriced_models == {"my-finetune": 1, "gpt-4o": 1}
    back = sorted(Reader().fetch(), key=lambda e: e.ts)
    assert [_row(e) for e in back] == [_row(e) for e in _events()]
    after = Reader().totals()
    for k in ("requests", "cost_picousd", "input_tokens", "output_tokens", "unpriced"):
        assert after[k] == before[k], k
    assert after["cost_picousd"] == 71_550_000 + 6_750_000_000 - 3_000_000_000
    again = import_csv(data.replace(b"\n", b"\r\n") if fmt == "csv" else data, mapping, now=NOW)
    assert again.imported == 0
    assert Reader().totals()["cost_picousd"] == before["cost_picousd"]


def test_a_negative_cost_on_a_row_not_marked_refund_is_refused() -> None:
    with UsageLog() as log:
        log.append_many(_events())
    header, *rows = csv.reader(io.StringIO(export(fmt="csv").decode()))
    cost, refund = header.index("cost_usd"), header.index("refund")
    assert [r[refund] for r in rows] == ["false", "false", "false", "false", "true"]
    rows[0][cost] = "-" + rows[0][cost]  # the first call, its cost made negative
    rows[4][refund] = "false"  # the refund, no longer marked as one
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    data = buf.getvalue().encode()
    r = import_csv(data, read_preview(data).mapping, dry_run=True, now=NOW)
    assert r.bad_rows == [
        BadRow(2, "cost_usd '-0.000071550000' is negative on a row not marked refund"),
        BadRow(
            6,
            "cost_input_usd '-0.003000000000' is negative on a row not marked refund;"
            " cost_usd '-0.003000000000' is negative on a row not marked refund",
        ),
    ]
    rows[0][refund] = "maybe"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    data = buf.getvalue().encode()
    r = import_csv(data, read_preview(data).mapping, dry_run=True, now=NOW)
    assert r.bad_rows[0] == BadRow(
        2,
        "refund 'maybe' is not true or false;"
        " cost_usd '-0.000071550000' is negative on a row not marked refund",
    )
    # a file from elsewhere (no refund column) may hold no negative cost, as before
    text = "ts,model,input_tokens,output_tokens,cost\n2026-11-01T10:00:00Z,gpt-4o,1,1,-1\n"
    r = import_csv(text.encode(), read_preview(text.encode()).mapping, dry_run=True, now=NOW)
    assert r.bad_rows == [BadRow(2, "cost '-1' is negative")]


def test_a_refund_without_a_request_id_has_a_key_of_its_own() -> None:
    """Hashed keys: a refund of 1 pUSD is not the row without a cost imported before."""
    head = "ts,model,input_tokens,output_tokens,cost,refund\n"
    plain = head + "2026-11-01T10:00:00Z,gpt-4o,0,0,,false\n"
    refund = head + "2026-11-01T10:00:00Z,gpt-4o,0,0,-0.000000000001,true\n"
    mapping = {**read_preview(plain.encode()).mapping, "refund": "refund"}
    assert import_csv(plain.encode(), mapping, now=NOW).imported == 1
    r = import_csv(refund.encode(), mapping, now=NOW)
    assert (r.imported, r.duplicates) == (1, 0)
    assert sorted(e.cost_picousd for e in Reader().fetch()) == [-1, 0]
    assert import_csv(refund.replace("\n", "\r\n").encode(), mapping, now=NOW).imported == 0
