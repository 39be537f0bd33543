"""The event schema: field order, and a round trip of every field through both write paths."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from test_usage_support import bare_event, finish, full_event, python

import core.usage
from core.usage import SCHEMA, Reader, UsageEvent, UsageLog, recover


def test_dataclass_fields_follow_the_schema_order() -> None:
    assert [f.name for f in fields(UsageEvent)] == SCHEMA.names
    assert SCHEMA.field("ts").type.tz == "UTC" and SCHEMA.field("ts").type.unit == "us"


def test_all_lists_every_public_name() -> None:
    import types

    names = set(core.usage.__all__)
    public = {
        n
        for n, v in vars(core.usage).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    } - {"annotations", "TYPE_CHECKING", "Any"}
    lazy = {"Reader", "events_view_sql", "facts_view_sql"}  # imported on use (DuckDB, pandas)
    assert public | lazy == names
    for name in names:
        assert getattr(core.usage, name) is not None


def test_round_trip_of_every_field_through_a_flushed_segment(costline_home: Path) -> None:
    events = [full_event(), bare_event()]
    with UsageLog() as log:
        log.append_many(events)
    got = sorted(Reader().fetch(), key=lambda e: e.request_id)
    assert got == sorted(events, key=lambda e: e.request_id)
    full = next(e for e in got if e.request_id == "req_full_ü")
    assert full.cost_picousd == 2**63 - 1 and type(full.cost_picousd) is int
    assert full.ts.utcoffset() is not None and full.ts.microsecond == 999_999


def test_round_trip_of_every_field_through_journal_recovery(costline_home: Path) -> None:
    # The writer dies without flushing (os._exit skips atexit): only its journal holds them.
    proc = python(
        """
        import os
        from core.usage import UsageLog
        from test_usage_support import bare_event, full_event
        log = UsageLog()
        log.append(full_event())
        log.append(bare_event())
        os._exit(0)
        """,
        costline_home,
    )
    finish(proc)
    assert recover() == 2
    got = sorted(Reader().fetch(), key=lambda e: e.request_id)
    assert got == sorted([full_event(), bare_event()], key=lambda e: e.request_id)


def test_naive_and_offset_timestamps_are_stored_as_utc_instants(costline_home: Path) -> None:
    from datetime import UTC, datetime, timedelta, timezone

    paris = timezone(timedelta(hours=2))
    with UsageLog() as log:
        log.append(UsageEvent(request_id="a", ts=datetime(2025, 6, 1, 12), provider="p", model="m"))
        log.append(
            UsageEvent(
                request_id="b", ts=datetime(2025, 6, 1, 14, tzinfo=paris), provider="p", model="m"
            )
        )
    got = {e.request_id: e.ts for e in Reader().fetch()}
    assert got == {
        "a": datetime(2025, 6, 1, 12, tzinfo=UTC),
        "b": datetime(2025, 6, 1, 12, tzinfo=UTC),
    }
