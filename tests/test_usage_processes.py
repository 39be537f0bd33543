"""Real processes: concurrent writers with a live reader, SIGKILL, fork, exit."""

from __future__ import annotations

import os
import signal
import struct
import time
from pathlib import Path

from test_usage_support import event, finish, python

from core.usage import Reader, UsageLog, recover

WRITER = """
import sys
from core.usage import UsageLog
from test_usage_support import event
w = int(sys.argv[1])
with UsageLog(flush_every=1000, flush_interval_s=0.2) as log:
    for i in range(10_000):
        log.append(event(w * 1_000_000 + i))
"""

READER = """
import sys
from pathlib import Path
from core.usage import Reader
reader, stop, counts = Reader(), Path(sys.argv[1]), []
while not stop.exists():
    counts.append(reader.count())
assert counts == sorted(counts), "a row disappeared"
print(len(counts), max(counts))
"""


def test_four_writers_and_a_reader_at_once(costline_home: Path, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    reader = python(READER, costline_home, str(stop))
    writers = [python(WRITER, costline_home, str(w)) for w in range(4)]
    for w in writers:
        finish(w)
    stop.touch()
    reads, seen_max = map(int, finish(reader).split())
    assert reads > 0 and seen_max <= 40_000
    r = Reader()
    assert r.count() == 40_000
    ids = r.sql("SELECT count(DISTINCT request_id) AS n FROM events")["n"].iloc[0]
    assert ids == 40_000
    assert os.listdir(costline_home / "events" / "journal") == []


APPEND_FOREVER = """
import os, struct, sys
from core.usage import UsageLog
from test_usage_support import event
counter, base = os.open(sys.argv[1], os.O_RDWR), int(sys.argv[2])
log = UsageLog(flush_every=1500, flush_interval_s=3600)
i = 0
while True:
    log.append(event(base + i))
    i += 1
    os.pwrite(counter, struct.pack("<q", i), 0)  # after append() returned
"""


def _appended(counter: Path) -> int:
    return int(struct.unpack("<q", counter.read_bytes())[0])


def test_sigkill_loses_no_completed_append(costline_home: Path, tmp_path: Path) -> None:
    expected: set[str] = set()
    for run, threshold in enumerate((2_000, 4_700, 6_001)):
        counter = tmp_path / f"counter{run}"
        counter.write_bytes(bytes(8))
        base = run * 1_000_000
        proc = python(APPEND_FOREVER, costline_home, str(counter), str(base))
        deadline = time.monotonic() + 60
        while _appended(counter) < threshold:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = _appended(counter)
        recover()
        ids = set(Reader().events(columns=["request_id"])["request_id"]) - expected
        # Every completed append is there; at most the one in flight is there too.
        assert {event(base + i).request_id for i in range(done)} <= ids
        assert len(ids) in (done, done + 1)
        expected |= ids
    assert Reader().count() == len(expected)
    assert os.listdir(costline_home / "events" / "journal") == []


def test_exit_without_close_flushes_and_leaves_no_journal(costline_home: Path) -> None:
    finish(
        python(
            """
            from core.usage import UsageLog
            from test_usage_support import event
            log = UsageLog()
            for i in range(7):
                log.append(event(i))
            """,
            costline_home,
        )
    )
    assert os.listdir(costline_home / "events" / "journal") == []
    assert Reader().count() == 7


def test_forked_child_writes_its_own_journal(costline_home: Path) -> None:
    finish(
        python(
            """
            import os
            from core.usage import UsageLog
            from test_usage_support import event
            log = UsageLog()
            for i in range(3):
                log.append(event(i))  # buffered in the parent when it forks
            pid = os.fork()
            if pid == 0:
                log.append(event(100))
                log.append(event(101))
                log.close()
                os._exit(0)
            os.waitpid(pid, 0)
            log.append(event(200))
            log.close()
            """,
            costline_home,
        )
    )
    ids = sorted(Reader().events(columns=["request_id"])["request_id"])
    assert ids == sorted(event(i).request_id for i in (0, 1, 2, 100, 101, 200))


def _eventually(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_flush_every_and_flush_interval(costline_home: Path) -> None:
    reader = Reader()
    log = UsageLog(flush_every=10, flush_interval_s=3600)
    for i in range(25):
        log.append(event(i))
    assert log.pending == 5
    _eventually(lambda: reader.count() == 20)  # two sealed journals, converted in background
    log.flush()
    assert log.pending == 0 and reader.count() == 25
    log.close()

    log = UsageLog(flush_every=1000, flush_interval_s=0.05)
    log.append(event(100))
    _eventually(lambda: log.pending == 0)  # sealed by the timer, with no further append
    _eventually(lambda: reader.count() == 26)
    log.append(event(101))
    _eventually(lambda: reader.count() == 27)  # and again: the timer re-arms
    log.close()
    assert os.listdir(costline_home / "events" / "journal") == []


def test_writers_import_neither_pandas_nor_the_reader(costline_home: Path) -> None:
    out = finish(
        python(
            """
            import sys
            from core.usage import UsageLog
            from test_usage_support import event
            with UsageLog(flush_every=3) as log:
                log.append_many(event(i) for i in range(10))
            print(sorted(m for m in ("pandas", "core.usage._reader") if m in sys.modules))
            """,
            costline_home,
        )
    )
    assert out.strip() == "[]"
    assert Reader().count() == 10


def test_failed_conversion_keeps_the_journal_for_recovery(costline_home: Path) -> None:
    out = finish(
        python(
            """
            import os, shutil
            from core.usage import UsageLog
            from test_usage_support import event
            log = UsageLog()
            log.append_many(event(i) for i in range(5))
            segments = log.home / "events" / "segments"
            shutil.rmtree(segments)
            segments.write_text("not a directory")  # every segment write now fails
            try:
                log.flush()
            except OSError as exc:
                print(type(exc).__name__)
            os._exit(0)
            """,
            costline_home,
        )
    )
    assert out.strip() in ("NotADirectoryError", "FileExistsError")
    segments = costline_home / "events" / "segments"
    segments.unlink()
    assert recover() == 5
    assert Reader().count() == 5
