"""Costline's own export imported into a fresh log keeps what a report reads: status and
error, tags, task, app, cache hit and the other flags, attempt, latency, saved, metadata;
and the keys of files imported before these fields were mapped stay the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.export import export
from core.importer import import_csv, read_preview
from core.importer._fields import EVENT_FIELDS
from core.usage import Reader, UsageEvent, UsageLog

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _events() -> list[UsageEvent]:
    return [
        UsageEvent(
            request_id="r1",
            ts=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
            org="acme",
            user="alice",
            task="=sum",
            app="chat",
            provider="openai",
            model="gpt-4o-mini",
            requested_model="fast",
            input_tokens=377,
            output_tokens=10,
            cost_picousd=56_550_000,
            cost_input_picousd=50_000_000,
            cost_output_picousd=6_550_000,
            saved_picousd=-1_000,  # a call that only wrote the cache
            tags=("a", "b"),
            metadata={"k": "v", "import": "old"},
            latency_ms=812.5,
            ttft_ms=120.0,
            cache_hit=True,
            ai_called=False,
            degraded=True,
            route_reason="cheapest",
            criticality="high",
            key="team-a",
            attempt=2,
            usage_estimated=True,
        ),
        UsageEvent(
            request_id="r2",
            ts=datetime(2026, 11, 3, tzinfo=UTC),
            org="acme",
            provider="openai",
            model="gpt-4o",
            status="error",
            error_type="RateLimited",
            error_message="429 slow down",
        ),
    ]


def _fields(e: UsageEvent) -> dict[str, object]:
    keep = [
        "request_id",
        "ts",
        "org",
        "user",
        "task",
        "app",
        "tags",
        "provider",
        "model",
        "requested_model",
        "status",
        "error_type",
        "error_message",
        "attempt",
        "input_tokens",
        "output_tokens",
        "usage_estimated",
        "cost_picousd",
        "saved_picousd",
        "cost_input_picousd",
        "cost_output_picousd",
        "cost_cached_input_picousd",
        "latency_ms",
        "ttft_ms",
        "cache_hit",
        "ai_called",
        "degraded",
        "route_reason",
        "criticality",
        "key",
    ]
    return {k: getattr(e, k) for k in keep}


@pytest.fixture
def exported() -> bytes:
    with UsageLog() as log:
        log.append_many(_events())
    return export(fmt="csv")


def test_own_export_round_trips_everything_a_report_reads(exported: bytes, tmp_path: Path) -> None:
    p = read_preview(exported)
    assert set(EVENT_FIELDS) <= set(p.mapping)
    other = tmp_path / "other"
    r = import_csv(exported, p.mapping, home=other, tokens_inclusive=False, now=NOW)
    assert r.imported == 2 and not r.bad_rows
    back = {e.request_id: e for e in Reader(other).fetch()}
    for e in _events():
        assert _fields(back[e.request_id]) == _fields(e)
    meta = back["r1"].metadata
    assert meta["k"] == "v" and meta["import"] == r.sha256[:12]
    assert back["r2"].metadata == {"import": r.sha256[:12]}
    assert Reader(other).totals()["requests"] == 2


def test_own_parquet_export_round_trips_too(tmp_path: Path) -> None:
    with UsageLog() as log:
        log.append_many(_events())
    data = export(fmt="parquet")
    other = tmp_path / "other"
    r = import_csv(data, read_preview(data).mapping, home=other, tokens_inclusive=False, now=NOW)
    assert r.imported == 2 and not r.bad_rows
    back = {e.request_id: e for e in Reader(other).fetch()}
    for e in _events():
        assert _fields(back[e.request_id]) == _fields(e)


def test_fields_absent_are_not_invented(tmp_path: Path) -> None:
    """A third-party file with a 'status' column is not read as Costline's status."""
    text = "ts,model,input_tokens,output_tokens,status\n2026-11-01T10:00:00Z,gpt-4o,1,1,success\n"
    p = read_preview(text.encode())
    assert "status" not in p.mapping
    import_csv(text.encode(), p.mapping, now=NOW)
    (e,) = Reader().fetch()
    assert (e.status, e.tags, e.cache_hit, e.error_type, e.attempt) == ("ok", (), False, None, 1)


def test_bad_event_cells_are_bad_rows(tmp_path: Path) -> None:
    text = (
        "ts,model,input_tokens,output_tokens,st,hit,meta,lat\n"
        "2026-11-01T10:00:00Z,gpt-4o,1,1,broken,maybe,[1],-3\n"
        "2026-11-01T10:00:01Z,gpt-4o,1,1,error,TRUE,,\n"
    )
    m = {
        "timestamp": "ts",
        "model": "model",
        "input_tokens": "input_tokens",
        "output_tokens": "output_tokens",
        "status": "st",
        "cache_hit": "hit",
        "metadata": "meta",
        "latency_ms": "lat",
    }
    r = import_csv(text.encode(), m, now=NOW, skip_bad_rows=True)
    assert r.imported == 1
    (bad,) = r.bad_rows
    assert bad.line == 2
    for word in ("'broken'", "'maybe'", "'[1]'", "'-3'"):
        assert word in bad.reason
    (e,) = Reader().fetch()
    assert e.status == "error" and e.cache_hit


def test_an_import_before_event_fields_then_again_with_them_adds_nothing(
    exported: bytes, tmp_path: Path
) -> None:
    """Event fields are not part of a row's key: the file imported with only the usage
    fields (as before they existed), then again (other bytes) with them, adds nothing."""
    other = tmp_path / "other"
    p = read_preview(exported)
    old = {f: c for f, c in p.mapping.items() if f not in EVENT_FIELDS}
    for with_ids in (True, False):
        home = other / str(with_ids)
        first = old if with_ids else {f: c for f, c in old.items() if f != "request_id"}
        again = p.mapping if with_ids else {f: c for f, c in p.mapping.items() if f != "request_id"}
        assert import_csv(exported, first, home=home, tokens_inclusive=False, now=NOW).imported == 2
        crlf = exported.replace(b"\n", b"\r\n")
        r = import_csv(crlf, again, home=home, tokens_inclusive=False, now=NOW)
        assert (r.imported, r.duplicates) == (0, 2)


# the row-hash keys main's code (no event fields) gave the export of _events()
EXPORT_KEYS = ["imp-44d7442a31e55c49b4926becc582a2ba", "imp-e6afd6070683f5496977371d39b52b50"]


def test_row_hash_keys_with_event_fields_are_those_main_computed(
    exported: bytes, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    m = {f: c for f, c in read_preview(exported).mapping.items() if f != "request_id"}
    import_csv(exported, m, home=other, tokens_inclusive=False, now=NOW)
    assert sorted(e.request_id for e in Reader(other).fetch()) == EXPORT_KEYS


def test_replace_keeps_rows_with_their_own_metadata(exported: bytes, tmp_path: Path) -> None:
    other = tmp_path / "other"
    p = read_preview(exported)
    import_csv(exported, p.mapping, home=other, tokens_inclusive=False, now=NOW)
    span = ("import", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))
    crlf = exported.replace(b"\n", b"\r\n")
    r = import_csv(crlf, p.mapping, home=other, tokens_inclusive=False, now=NOW, replace=span)
    assert r.imported == 2 and r.replaced_rows == 2
    rows = Reader(other).fetch()
    assert sorted(e.request_id for e in rows) == ["r1", "r2"]
    assert json.loads(json.dumps(rows[0].metadata))["import"] != "old"


NAMES = (
    "ts,model,provider,input_tokens,output_tokens\n"
    "2026-11-01T10:00:00Z,GPT-4o-mini,OpenAI,100,10\n"
    "2026-11-01T10:00:01Z,openai/gpt-4o-mini,,100,10\n"
    "2026-11-01T10:00:02Z,gpt-4o-mini,openai,100,10\n"
    "2026-11-01T10:00:03Z,My-FineTune,Acme,100,10\n"
)
NAME_MAP = {
    "timestamp": "ts",
    "model": "model",
    "provider": "provider",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
}


def test_model_and_provider_names_are_the_catalogs() -> None:
    """'GPT-4o-mini'/'OpenAI' and 'openai/gpt-4o-mini' are one model in a group-by."""
    r = import_csv(NAMES.encode(), NAME_MAP, now=NOW)
    assert r.imported == 4 and not r.unpriced_models.get("gpt-4o-mini")
    by = Reader().spend_by(["model", "provider"], "day")
    pairs = sorted(zip(by["model"], by["provider"], by["requests"], strict=True))
    assert pairs == [("My-FineTune", "acme", 1), ("gpt-4o-mini", "openai", 3)]


# the keys main's code (names stored as written) gave NAMES' rows
OLD_KEYS = [
    "imp-732b668aad4049891d594ef7beb35bbe",
    "imp-c0fcace6e203fdaf22274876517d4a3b",
    "imp-46167cb7e00038197b2316ce9be01d0e",
    "imp-dc47edbd5773155a0e71a5a0aef3699d",
]


def test_names_imported_as_written_before_then_again_add_nothing(tmp_path: Path) -> None:
    """Keys are computed from the names as written, as before: an earlier import's rows
    (their keys) make the same rows, imported now, duplicates."""
    import_csv(NAMES.encode(), NAME_MAP, now=NOW)
    assert [e.request_id for e in sorted(Reader().fetch(), key=lambda e: e.ts)] == OLD_KEYS
    again = NAMES.replace("\n", "\r\n").encode()  # other bytes, same rows
    r = import_csv(again, NAME_MAP, now=NOW)
    assert (r.imported, r.duplicates) == (0, 4)


def test_a_known_model_of_another_provider_keeps_one_name_and_is_counted_under_it() -> None:
    """Groq's 'GPT-4o' (the catalog has no Groq entry for it) is unpriced, stored and
    counted as gpt-4o, the catalog's name of the model."""
    text = "ts,model,provider,input_tokens,output_tokens\n2026-11-01T10:00:00Z,GPT-4o,Groq,1,1\n"
    r = import_csv(text.encode(), NAME_MAP, now=NOW)
    assert r.unpriced_models == {"gpt-4o": 1}
    (e,) = Reader().fetch()
    assert (e.model, e.provider, e.unpriced) == ("gpt-4o", "groq", True)
