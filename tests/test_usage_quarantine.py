"""Issue 12 §3: corruption is never silent. Bad records and segments go to the quarantine
with their reason; doctor and the console say what it holds; compaction and exports go on."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from test_usage_support import event

from core.cli import main
from core.export import export
from core.usage import Reader, UsageLog, compact, quarantine_summary
from core.usage._journal import journal_name
from core.usage._segments import CRC_KEY, segments_dir


def ids(home: Path) -> list[str]:
    with Reader(home) as r:
        return sorted(r.events(columns=["request_id"])["request_id"])


def open_journal(log: UsageLog) -> Path:
    return log._jdir / journal_name(log._owner, log._seq)


def test_a_record_failing_its_checksum_is_quarantined_not_ingested(costline_home: Path) -> None:
    with UsageLog(flush_interval_s=3600) as log:
        for i in range(3):
            log.append(event(i, cost_picousd=111_111))
        path = open_journal(log)
        data = path.read_bytes()
        pos = data.index(b"111111", data.index(b"\n") + 1)  # in the second record
        with open(path, "r+b") as fh:  # bit rot: still valid JSON, a different cost
            fh.seek(pos)
            fh.write(b"999")
        log.flush()
    assert ids(costline_home) == [event(0).request_id, event(2).request_id]
    (item,) = quarantine_summary(costline_home).items
    assert (item.rows, item.reason) == (1, "record checksum mismatch x1")
    assert item.cost_picousd == 999_111  # what the damaged record says, shown, not counted


def test_a_value_of_the_wrong_type_is_quarantined_never_priced_zero(costline_home: Path) -> None:
    with UsageLog(flush_interval_s=3600) as log:
        log.append(event(0))
        log.append(event(1, cost_picousd="12.5 dollars"))  # type: ignore[arg-type]
        log.append(event(2, input_tokens=[1, 2]))  # type: ignore[arg-type]
        log.append(event(3, metadata="not a dict"))  # type: ignore[arg-type]
        log.append(event(4))
    assert ids(costline_home) == [event(0).request_id, event(4).request_id]
    with Reader(costline_home) as r:
        assert r.totals()["cost_picousd"] == event(0).cost_picousd + event(4).cost_picousd
    (item,) = quarantine_summary(costline_home).items
    assert item.rows == 3
    for col in ("cost_picousd", "input_tokens", "metadata"):
        assert f"wrong type in {col} x1" in item.reason


def two_segments(home: Path) -> list[Path]:
    with UsageLog(compact_threshold=0) as log:
        for part in (range(0, 500), range(500, 800)):
            for i in part:
                log.append(event(i, prompt="some text " * (i % 7)))
            log.flush()
    return sorted(segments_dir(home).iterdir(), key=lambda p: p.stat().st_mtime_ns)


def test_random_bytes_in_a_segment_quarantine_it_and_everything_else_goes_on(
    costline_home: Path,
) -> None:
    first, second = two_segments(costline_home)
    import pyarrow.parquet as pq

    assert CRC_KEY in (pq.read_metadata(first).metadata or {})
    size = first.stat().st_size
    rng = random.Random(12)
    with open(first, "r+b") as fh:  # 64 random bytes in the middle of the data pages
        fh.seek(size // 3)
        fh.write(rng.randbytes(64))
    assert ids(costline_home) == [event(i).request_id for i in range(500, 800)]
    assert not first.exists() and second.exists()
    (item,) = quarantine_summary(costline_home).items
    assert item.kind == "segment" and item.rows == 500 and "checksum mismatch" in item.reason
    assert (costline_home / "quarantine" / first.name).stat().st_size == size
    # compaction and exports never read it
    for i in range(800, 810):
        with UsageLog(compact_threshold=0) as log:
            log.append(event(i))
    assert compact(costline_home).merged == 11
    csv = export(costline_home).decode()
    assert csv.count("\n") == 1 + 310 and event(0).request_id not in csv


def test_a_truncated_segment_is_quarantined_of_unknown_size(costline_home: Path) -> None:
    first, _ = two_segments(costline_home)
    os.truncate(first, first.stat().st_size // 2)
    with Reader(costline_home) as r:
        assert r.count() == 300
    q = quarantine_summary(costline_home)
    assert [(i.rows, i.kind) for i in q.items] == [(None, "segment")]
    assert q.banner() == "0+ events in quarantine — totals may be low (see `costline doctor`)"


def test_doctor_lists_what_the_quarantine_holds(
    costline_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor"]) == 0
    assert "quarantine   empty" in capsys.readouterr().out
    first, _ = two_segments(costline_home)
    with open(first, "r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff" * 64)
    with UsageLog(flush_interval_s=3600) as log:
        log.append(event(900, cost_picousd=[5]))  # type: ignore[arg-type]
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "usage log    1 segments, 300 events" in out
    assert "2 items" in out and "501 events" in out
    seg = next(line for line in out.splitlines() if first.name in line)
    assert "segment  500 events  $" in seg and "checksum mismatch" in seg
    rec = next(line for line in out.splitlines() if "journal records" in line)
    assert "1 events  $?  wrong type in cost_picousd x1" in rec


def test_admins_see_the_quarantine_banner(costline_home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from tests.console_support import ADMIN_PASSWORD, app, make_users

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    first, _ = two_segments(costline_home)
    with open(first, "r+b") as fh:
        fh.seek(300)
        fh.write(b"\x00" * 64)
    banner = "500 events in quarantine — totals may be low (see `costline doctor`)"
    at = app("admin", timeout=60).run()
    assert not at.exception
    assert banner in [w.value for w in at.warning]
    at = app("viewer", timeout=60).run()
    assert not at.exception
    assert banner not in [w.value for w in at.warning]


def test_quarantined_files_are_private(costline_home: Path) -> None:
    with UsageLog(flush_interval_s=3600) as log:
        log.append(event(1, cost_picousd="x", prompt="secret"))  # type: ignore[arg-type]
    qdir = costline_home / "quarantine"
    assert qdir.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in qdir.iterdir()} == {0o600}
