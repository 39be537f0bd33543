"""After retention pruning (raw events rolled up into hourly rollups, then deleted): the
sidebar still offers every value whose spend the reports still count, and the retention note
says what is exact and what is not (rollups keep no tags; whole UTC hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core import clock, reports
from core.usage import Reader, UsageEvent, rows_to_table, segments_dir, write_segment
from core.usage._prune import prune
from core.usage._schema import event_row
from tests.console_support import app, make_users


def call(d: int, k: int, org: str, tags: list[str]) -> UsageEvent:
    return UsageEvent(
        request_id=f"r{org}{d}-{k}",
        ts=clock.now() - timedelta(days=d, hours=k),
        org=org,
        project=f"p-{org}",
        user=f"u-{org}",
        key=f"k-{org}",
        provider="openai",
        model="gpt-4o-mini" if org != "old-org" else "gpt-4o",
        task=f"t-{org}",
        tags=tags,
        cost_picousd=1_234_567_891 * (d + k),
    )


@pytest.fixture
def pruned(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An org (and its project, user, key, model, task) that only called 40-70 days ago,
    tagged 'legacy', pruned at 30 days; 'new-org' called in the last 20 days."""
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin-pass-123")
    make_users(costline_home)
    old = [call(d, k, "old-org", ["legacy"]) for d in range(40, 70) for k in range(3)]
    new = [call(d, k, "new-org", ["fresh"]) for d in range(1, 20) for k in range(3)]
    for name, events in (("old", old), ("new", new)):
        write_segment(
            rows_to_table([event_row(e) for e in events]), segments_dir(costline_home), name
        )
    assert prune(costline_home, 30).segments == 1
    return costline_home


def test_filter_options_keep_values_only_rollups_still_count(pruned: Path) -> None:
    at = app("viewer", filters=True).run()
    at.selectbox(key="f_range").set_value("90d").run()
    assert not at.exception
    for dim, value in (
        ("org", "old-org"),
        ("project", "p-old-org"),
        ("user", "u-old-org"),
        ("key", "k-old-org"),
        ("model", "gpt-4o"),
        ("task", "t-old-org"),
    ):
        assert value in at.multiselect(key=f"f_{dim}").options, dim
    # rollups keep no tags: a pruned call's tag is gone, and not offered
    tags = at.multiselect(key="f_tag").options
    assert "fresh" in tags and "legacy" not in tags
    at.multiselect(key="f_org").set_value(["old-org"]).run()
    assert not at.exception
    assert any("removed by retention" in i.value for i in at.info)
    spend = next(m for m in at.metric if m.label == "Spend in range").value
    assert spend not in ("$0.00", "–")  # the option picks spend the totals still count


def test_the_retention_note_is_true_under_a_tag_filter(pruned: Path) -> None:
    at = app("viewer", filters=True).run()
    at.selectbox(key="f_range").set_value("90d").run()
    plain = [i.value for i in at.info if "removed by retention" in i.value]
    assert len(plain) == 1 and "stay exact" in plain[0]
    at.multiselect(key="f_tag").set_value(["fresh"]).run()
    assert not at.exception
    (note,) = [i.value for i in at.info if "removed by retention" in i.value]
    assert "stay exact" not in note
    assert "keep no tags" in note and "leave out that period" in note


def test_the_note_calls_rollup_figures_exact_only_on_whole_utc_hours(pruned: Path) -> None:
    with Reader(pruned) as reader:
        first, until = reader.pruned_span()  # type: ignore[misc]
        mid = first + (until - first) / 2
        hour = mid.replace(minute=0, second=0, microsecond=0)
        end = clock.now()
        assert "stay exact" in (reports.coverage(reader, hour, end).note() or "")
        assert "stay exact" in (
            reports.coverage(reader, hour, end, tz="America/New_York").note() or ""
        )
        half = reports.coverage(reader, hour + timedelta(minutes=30), end).note() or ""
        assert "removed by retention" in half and "stay exact" not in half
        india = reports.coverage(reader, hour, end, tz="Asia/Kolkata").note() or ""
        assert "stay exact" not in india and "approximate" in india
        tagged = reports.coverage(reader, hour, end, tagged=True).note() or ""
        assert "stay exact" not in tagged and "keep no tags" in tagged
        assert reports.coverage(reader, until, end).note() is None
        assert datetime(2000, 1, 1, tzinfo=UTC) < first
