"""A UsageLog's background work: the flush timer of an idle writer, and auto-compaction."""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_usage_support import event, finish, python

from core.cli import main as cli_main
from core.usage import (
    CompactResult,
    Reader,
    UsageLog,
    _compact,
    compact,
    rows_to_table,
    write_segment,
)
from core.usage._compact import auto_compact
from core.usage._schema import event_row
from core.usage._segments import scan

MARGIN_S = 5.0  # for a loaded machine: conversion, process scheduling


def _eventually(check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _segments(home: Path) -> list[str]:
    """The segments readers read (merged inputs kept for a while are left out)."""
    return sorted(s.name for s in scan(home / "events" / "segments").active)


def _files(home: Path) -> list[str]:
    return sorted(n for n in os.listdir(home / "events" / "segments") if n.endswith(".parquet"))


IDLE_WRITER = """
import sys, time
from core.usage import UsageLog
from test_usage_support import event
log = UsageLog(flush_every=10**6, flush_interval_s=float(sys.argv[1]))
for rnd in range(2):
    first = time.monotonic()
    for i in range(50):
        log.append(event(rnd * 1000 + i))
    print(first, flush=True)
    sys.stdin.readline()  # idle: no append, no flush, no exit until told
"""


def test_idle_writer_is_seen_by_another_process_within_the_interval(costline_home: Path) -> None:
    interval = 0.5
    proc = python(IDLE_WRITER, costline_home, str(interval), stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    reader = Reader()
    try:
        for rnd in range(2):
            first = float(proc.stdout.readline())
            _eventually(lambda n=50 * (rnd + 1): reader.count() == n, interval + MARGIN_S + 1)
            assert time.monotonic() - first <= interval + MARGIN_S
            assert proc.poll() is None  # still alive and idle: its timer flushed, not exit
            proc.stdin.write("\n")
            proc.stdin.flush()
        finish(proc)
    finally:
        proc.kill()
    assert reader.count() == 100


def _thread_cpu_ticks(thread: threading.Thread) -> int:
    fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1]
    return int(fields.split()[11]) + int(fields.split()[12])  # utime + stime


def test_flush_timer_starts_on_first_append_idles_blocked_and_ends_on_close(
    costline_home: Path,
) -> None:
    def new_timers() -> list[threading.Thread]:
        return [t for t in set(threading.enumerate()) - before if t.name == "usage-flush"]

    before = set(threading.enumerate())
    log = UsageLog(flush_interval_s=0.05, compact_threshold=0)
    assert new_timers() == []  # nothing runs before the first append
    log.append(event(1))
    timers = new_timers()
    assert len(timers) == 1
    _eventually(lambda: log.pending == 0)
    ticks = _thread_cpu_ticks(timers[0])
    time.sleep(0.5)  # idle: the timer waits without a timeout
    assert _thread_cpu_ticks(timers[0]) - ticks <= 1
    log.close()
    assert not timers[0].is_alive()
    assert Reader().count() == 1


FORK_IDLE = """
import os, sys, time
from core.usage import UsageLog
from test_usage_support import event
log = UsageLog(flush_every=10**6, flush_interval_s=0.3)
log.append(event(0))  # the parent's timer is armed when it forks
pid = os.fork()
if pid == 0:
    log.append(event(100))
    log.append(event(101))
    time.sleep(60)  # idle until killed: only the child's own timer can flush it
    os._exit(0)
log.append(event(1))
print(pid, flush=True)
sys.stdin.readline()
os.kill(pid, 9)
os.waitpid(pid, 0)
"""


def test_forked_child_flushes_on_its_own_timer(costline_home: Path) -> None:
    proc = python(FORK_IDLE, costline_home, stdin=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        int(proc.stdout.readline())
        reader = Reader()  # both processes alive: recover() takes none of their journals
        want = sorted(event(i).request_id for i in (0, 1, 100, 101))
        _eventually(lambda: reader.count() == 4, 0.3 + MARGIN_S)
        assert sorted(reader.events(columns=["request_id"])["request_id"]) == want
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        finish(proc)
    finally:
        proc.kill()


FORK_DURING_COMPACTION = """
import fcntl, os, sys, threading, time
from core.usage import _compact
entered, release = threading.Event(), threading.Event()
def hold(*args):
    entered.set()
    release.wait()
    return _compact.CompactResult(0, 0)
_compact._compact_locked = hold
worker = threading.Thread(target=_compact.compact)
worker.start()
entered.wait()  # the worker holds compact.lock
started, ready = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(ready, b"x")  # the fork handlers have run
    time.sleep(60)
    os._exit(0)
os.read(started, 1)
release.set()
worker.join()
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("held by the child")
os.kill(pid, 9)
os.waitpid(pid, 0)
"""


def test_a_forked_child_does_not_keep_the_compaction_lock(costline_home: Path) -> None:
    lock = costline_home / "events" / "compact.lock"
    out = finish(python(FORK_DURING_COMPACTION, costline_home, str(lock)))
    assert out.strip() == "free"


def _segment(home: Path, name: str, ids: range) -> None:
    table = rows_to_table([event_row(event(i)) for i in ids])
    write_segment(table, home / "events" / "segments", name)


def test_auto_compaction_merges_size_tiers_only_past_the_threshold(costline_home: Path) -> None:
    for k in range(8):
        _segment(costline_home, f"a{k:02d}", range(k * 10, k * 10 + 10))
    _segment(costline_home, "big", range(1_000, 6_000))
    assert auto_compact(costline_home, threshold=9) == CompactResult(0, 0)  # 9 is not past 9
    assert len(_segments(costline_home)) == 9
    _segment(costline_home, "a08", range(80, 90))
    total = Reader().totals()
    lock = os.open(costline_home / "events" / "compact.lock", os.O_RDWR | os.O_CREAT)
    release = threading.Timer(1.0, os.close, [lock])
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as if another process compacted
        assert auto_compact(costline_home, threshold=8) == CompactResult(0, 0)  # no wait
        assert len(_segments(costline_home)) == 10
        release.start()
        t0 = time.monotonic()
        result = auto_compact(costline_home, threshold=8, lock_wait_s=30)
        assert time.monotonic() - t0 >= 0.9  # it waited for the lock, then did the work
    finally:
        release.join()
    # The nine 10-row segments share a tier and are merged; the 5,000-row one is left alone.
    assert (result.merged, result.written) == (9, 1)
    assert len(_segments(costline_home)) == 2 and "big.parquet" in _segments(costline_home)
    assert len(_files(costline_home)) == 11  # the inputs stay a while, for running queries
    assert Reader().totals() == total and total["requests"] == 5_090
    assert compact().merged == 2  # the manual compaction still merges everything small
    assert _files(costline_home) == _segments(costline_home)  # and deletes every input
    assert _segments(costline_home)[0].startswith("compact-") and Reader().totals() == total


def test_auto_compaction_deletes_merged_inputs_later_and_never_chains(
    costline_home: Path,
) -> None:
    keep = 600.0  # long enough that a loaded machine never crosses it mid-test
    for k in range(9):
        _segment(costline_home, f"a{k:02d}", range(k * 10, k * 10 + 10))
    assert auto_compact(costline_home, 8, keep_replaced_s=keep) == CompactResult(9, 1)
    (first,) = [n for n in _segments(costline_home) if n.startswith("compact-")]
    for k in range(9):  # the merged file's size tier (90 rows) fills up again
        _segment(costline_home, f"c{k:02d}", range(1_000 + k * 90, 1_090 + k * 90))
    # ...but it is not merged while its inputs are present: they would reappear once it
    # was deleted (as an input of the new merge) before them.
    assert auto_compact(costline_home, 8, keep_replaced_s=keep) == CompactResult(9, 1)
    assert first in _segments(costline_home) and len(_files(costline_home)) == 9 + 1 + 9 + 1
    assert Reader().count() == 90 + 810
    # Once the keep window has passed (0 s here) the replaced inputs go, and nothing chains.
    assert auto_compact(costline_home, 8, keep_replaced_s=0) == CompactResult(0, 0)
    assert _files(costline_home) == _segments(costline_home) and len(_files(costline_home)) == 2
    assert Reader().count() == 90 + 810


def test_many_flushes_end_in_few_segments_and_costline_compact_still_works(
    costline_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A merge is not merged again while its inputs linger; with the default 120 s linger a
    # compactor that keeps pace with the flushes leaves more than 12 small merges for minutes.
    monkeypatch.setattr(_compact, "KEEP_REPLACED_S", 0.2)
    n = 600
    with UsageLog(flush_every=10, flush_interval_s=3600, compact_threshold=4) as log:
        for i in range(n):
            log.append(event(i))
        log.flush()
        # 60 flushes; tiers of x4 segments are merged as they fill up.
        _eventually(lambda: len(_segments(costline_home)) <= 12)
    reader = Reader()
    assert reader.count() == n
    assert reader.totals()["cost_picousd"] == sum(event(i).cost_picousd for i in range(n))
    assert cli_main(["compact"]) == 0
    assert "Merged" in capsys.readouterr().out
    assert len(_segments(costline_home)) == 1 and reader.count() == n
    assert os.listdir(costline_home / "events" / "journal") == []


# DuckDB's Python module can abort a process in its static destructors after the
# interpreter has finalised (duckdb-python#531, #601: "terminate called ... exception not
# rethrown", once in CI). These scripts check totals, not exit paths: they end with
# os._exit(0) once everything is written and printed.
WRITER = """
import os, sys
from core.usage import UsageLog, _compact
from test_usage_support import event
w = int(sys.argv[1])
_compact.KEEP_REPLACED_S = 0.2  # merged inputs go soon, so merges can cascade in this run
with UsageLog(flush_every=25, flush_interval_s=3600, compact_threshold=8) as log:
    for i in range(2_000):
        log.append(event(w * 1_000_000 + i))
os._exit(0)  # closed and durable; skip DuckDB's exit-time destructors (see above)
"""

READER = """
import os, sys
from pathlib import Path
from core.usage import Reader
from core.usage._segments import scan
reader, done, want = Reader(), Path(sys.argv[1]), (int(sys.argv[2]), int(sys.argv[3]))
Path(sys.argv[1] + ".ready").touch()
sql = "SELECT count(*) AS n, count(DISTINCT request_id) AS d, sum(cost_picousd)::VARCHAR AS c"
reads = last = most = 0
problems = []
while True:
    final = done.exists()
    n, d, c = reader.sql(sql + " FROM events").iloc[0]
    n, d = int(n), int(d)
    reads += 1
    most = max(most, len(scan(reader._sdir).active))
    if d != n:
        problems.append(f"double counted: {n} rows, {d} ids")
    if n < last:
        problems.append(f"rows lost: {last} -> {n}")
    last = n
    if final:
        if (n, int(c)) != want:
            problems.append(f"final totals {(n, c)} != {want}")
        break
print(reads, most, problems[:3], flush=True)
os._exit(0)  # see the note above WRITER
"""


@pytest.mark.slow
def test_writers_auto_compacting_under_a_reader_keep_exact_totals(
    costline_home: Path, tmp_path: Path
) -> None:
    writers, per_writer = 3, 2_000  # 80 flushes each, with compact_threshold=8
    ids = [w * 1_000_000 + i for w in range(writers) for i in range(per_writer)]
    done = tmp_path / "done"
    reader = python(
        READER,
        costline_home,
        str(done),
        str(len(ids)),
        str(sum(event(i).cost_picousd for i in ids)),
    )
    _eventually(lambda: Path(str(done) + ".ready").exists() or reader.poll() is not None)
    procs = [python(WRITER, costline_home, str(w)) for w in range(writers)]
    for p in procs:
        finish(p)
    done.touch()
    reads, most, problems = finish(reader).split(" ", 2)
    assert problems.strip() == "[]", problems
    assert int(reads) > 1
    # 240 segments written; compaction keeps up (the peak depends on the machine's load).
    assert int(most) < 200, most
    assert len(_segments(costline_home)) <= 30
    assert os.listdir(costline_home / "events" / "journal") == []
