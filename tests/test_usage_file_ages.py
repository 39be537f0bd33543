"""File ages (merged inputs kept a while, dead writers' temp files, a foreign host's quiet
journal) are measured on the file system's clock, so a process whose clock is moved (a test
travelling in time) judges them as it would at the real date."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import time_machine
from test_usage_support import event

from core.usage import CompactResult, rows_to_table, write_segment
from core.usage._compact import auto_compact
from core.usage._journal import _writer_alive
from core.usage._procid import ProcId
from core.usage._schema import event_row
from core.usage._segments import fs_now_ns, remove_stale_temps, scan

DAY_S = 86_400.0
MOVES = pytest.mark.parametrize("days", [-200, 200], ids=["past", "future"])


def _moved(days: int) -> time_machine.travel:
    return time_machine.travel(time.time() + days * DAY_S, tick=True)


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` ``seconds`` older than it is (on its own clock)."""
    ns = path.stat().st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(ns, ns))


def test_the_file_system_clock_is_the_mtime_a_new_file_gets(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_bytes(b"")
    before = (d / "a").stat().st_mtime_ns
    with _moved(200):
        now = fs_now_ns(d)
    assert before <= now < before + int(60e9)
    assert os.listdir(d) == ["a"]  # nothing left behind
    assert abs(fs_now_ns(tmp_path / "gone") - time.time_ns()) < 60e9  # no directory: time()


@MOVES
def test_merged_inputs_are_kept_for_the_window_whatever_this_process_clock(
    costline_home: Path, days: int
) -> None:
    sdir = costline_home / "events" / "segments"
    for k in range(9):
        table = rows_to_table([event_row(event(i)) for i in range(k * 10, k * 10 + 10)])
        write_segment(table, sdir, f"a{k:02d}")
    with _moved(days):
        assert auto_compact(costline_home, 8, keep_replaced_s=600) == CompactResult(9, 1)
        assert len(os.listdir(sdir)) == 10  # the inputs stay for the window
        assert auto_compact(costline_home, 8, keep_replaced_s=600) == CompactResult(0, 0)
        assert len(os.listdir(sdir)) == 10
        (merged,) = scan(sdir).active
        _age(merged.path, 601)  # merged 601 s ago
        assert auto_compact(costline_home, 8, keep_replaced_s=600) == CompactResult(0, 0)
    assert os.listdir(sdir) == [merged.name]


@MOVES
def test_only_temp_files_an_hour_old_are_removed_whatever_this_process_clock(
    tmp_path: Path, days: int
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    fresh, stale = d / ".fresh.tmp", d / ".stale.tmp"
    fresh.write_bytes(b"x")
    stale.write_bytes(b"x")
    _age(stale, 3601)
    with _moved(days):
        assert remove_stale_temps(d) == 1
    assert os.listdir(d) == [fresh.name]


@MOVES
def test_a_foreign_journal_is_dead_only_once_quiet_whatever_this_process_clock(
    tmp_path: Path, days: int
) -> None:
    owner = ProcId("another-host", 12345, 678, "abcd1234")
    journal = tmp_path / f"{owner}_000001.jsonl"
    journal.write_bytes(b"")
    with _moved(days):
        assert _writer_alive(owner, journal)  # just written: its writer may be running
        _age(journal, 61)
        assert not _writer_alive(owner, journal)  # quiet for over a minute, lock free
