"""recover(): dead writers' journals become segments exactly once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from test_usage_support import event, finish, python

from core.usage import Reader, compact, recover, rows_to_table, write_segment
from core.usage._journal import journal_name
from core.usage._procid import HOST, ProcId, process_start
from core.usage._quarantine import summary as quarantine_summary
from core.usage._schema import event_row

OPT = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_journal(home: Path, owner: ProcId, ids: range, seq: int = 0, tail: bytes = b"") -> Path:
    jdir = home / "events" / "journal"
    jdir.mkdir(parents=True, exist_ok=True)
    path = jdir / journal_name(owner, seq)
    path.write_bytes(b"".join(orjson.dumps(event_row(event(i)), option=OPT) for i in ids) + tail)
    return path


def test_partial_last_line_is_quarantined_with_an_error(
    costline_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner = ProcId(HOST, dead_pid(), 12345, "deadbeef")
    cut = orjson.dumps(event_row(event(3)), option=OPT)[:40]  # killed mid-write
    path = write_journal(costline_home, owner, range(3), tail=cut)  # unframed: older version
    with caplog.at_level(logging.WARNING, logger="costline.usage"):
        assert recover() == 3
    stem = path.name.removesuffix(".jsonl")
    assert any("torn tail" in r.message and stem in r.message for r in caplog.records)
    (item,) = quarantine_summary(costline_home).items
    assert (item.rows, item.kind) == (1, "journal records")
    assert (costline_home / "quarantine" / item.name).read_bytes() == cut + b"\n"
    assert sorted(Reader().events(columns=["request_id"])["request_id"]) == [
        event(i).request_id for i in range(3)
    ]
    assert not path.exists()


def test_reused_pid_is_detected_by_start_time(costline_home: Path) -> None:
    # Our own pid, but a different start time: a dead process whose pid we now hold.
    me = os.getpid()
    reused = write_journal(
        costline_home, ProcId(HOST, me, process_start(me) - 1, "aaaa0001"), range(4)
    )
    alive = write_journal(
        costline_home, ProcId(HOST, me, process_start(me), "aaaa0002"), range(10, 12)
    )
    assert recover() == 4
    assert not reused.exists() and alive.exists()
    assert Reader().count() == 4


def test_journal_whose_segment_exists_is_not_counted_twice(costline_home: Path) -> None:
    # The writer renamed its segment into place, then died before deleting the journal.
    owner = ProcId(HOST, dead_pid(), 1, "bbbb0001")
    journal = write_journal(costline_home, owner, range(5))
    sdir = costline_home / "events" / "segments"
    rows = [event_row(event(i)) for i in range(5)]
    write_segment(rows_to_table(rows), sdir, journal.name.removesuffix(".jsonl"))
    # A second such pair whose segment was then merged away by a compaction.
    journal2 = write_journal(costline_home, owner, range(5, 9), seq=1)
    write_segment(
        rows_to_table([event_row(event(i)) for i in range(5, 9)]),
        sdir,
        journal2.name.removesuffix(".jsonl"),
    )
    write_segment(rows_to_table([event_row(event(50))]), sdir, "other")
    assert compact().merged == 3
    # ...and merged once more: the newest file must still vouch for the journal's segment.
    write_segment(rows_to_table([event_row(event(51))]), sdir, "another")
    assert compact().merged == 2
    assert recover() == 0
    assert not journal.exists() and not journal2.exists()
    assert Reader().count() == 11


def test_concurrent_recoverers_convert_each_journal_once(costline_home: Path) -> None:
    pid = dead_pid()
    for j in range(30):
        write_journal(
            costline_home, ProcId(HOST, pid, 1, f"cccc{j:04d}"), range(j * 100, j * 100 + 100)
        )
    code = "from core.usage import recover; print(recover())"
    procs = [python(code, costline_home) for _ in range(3)]
    recovered = sum(int(finish(p)) for p in procs)
    assert recovered == 3_000
    assert Reader().count() == 3_000
    assert os.listdir(costline_home / "events" / "journal") == []


def test_reader_start_recovers_and_live_writers_are_left_alone(costline_home: Path) -> None:
    write_journal(costline_home, ProcId(HOST, dead_pid(), 1, "dddd0001"), range(6))
    proc = python(
        """
        import sys
        from core.usage import UsageLog
        from test_usage_support import event
        log = UsageLog(flush_every=10**6, flush_interval_s=3600)
        for i in range(100, 103):
            log.append(event(i))
        print("ready", flush=True)
        sys.stdin.readline()  # stay alive, journal open, until told to exit
        """,
        costline_home,
        stdin=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert Reader().count() == 6  # the dead journal, not the live one
    assert len(os.listdir(costline_home / "events" / "journal")) == 1
    proc.communicate("\n", timeout=30)
    assert Reader().count() == 9


def test_unreadable_middle_line_is_quarantined_and_the_rest_kept(
    costline_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    owner = ProcId(HOST, dead_pid(), 1, "eeee0001")
    path = write_journal(costline_home, owner, range(2))
    with path.open("ab") as fh:
        fh.write(b'["half a line", tru\n{"not": "an array"}\n')
        fh.write(b"".join(orjson.dumps(event_row(event(i)), option=OPT) for i in range(2, 4)))
    with caplog.at_level(logging.WARNING, logger="costline.usage"):
        assert recover() == 4
    assert "2 records quarantined" in caplog.text
    (item,) = quarantine_summary(costline_home).items
    assert item.rows == 2 and "unreadable JSON x1" in item.reason
    assert sorted(Reader().events(columns=["request_id"])["request_id"]) == [
        event(i).request_id for i in range(4)
    ]
