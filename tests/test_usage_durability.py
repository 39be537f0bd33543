"""Issue 12 §2: a completed call never vanishes from the usage log.

Disk full is a real small file system (a tmpfs mounted for the test; skipped where mounting
is not allowed) and RLIMIT_FSIZE in a subprocess (runs everywhere); conversions, huge events
and live writers in other PID namespaces use real files, processes and locks.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_usage_support import event, python

from core.errors import UsageLogUnavailable
from core.usage import Reader, UsageLog
from core.usage._frame import frame, split_records
from core.usage._journal import recover
from core.usage._limits import FLAG_TRUNCATED, MAX_FIELD_CHARS
from core.usage._quarantine import summary
from core.usage._segments import journal_dir, segments_dir


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Subprocesses a test starts: killed and reaped whatever happens."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MB file system (tmpfs), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it (delete it to free space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def ids(home: Path) -> list[str]:
    with Reader(home) as r:
        return sorted(r.events(columns=["request_id"])["request_id"])


def test_disk_full_holds_events_refuses_new_calls_and_writes_them_when_space_returns(
    small_fs: Path,
) -> None:
    home = small_fs / "home"
    log = UsageLog(home, flush_interval_s=3600, compact_threshold=0)
    try:
        for i in range(50):
            log.append(event(i))
        log.check()  # healthy: nothing raised
        filler = fill(small_fs)
        for i in range(50, 120):  # completed calls: the provider was paid
            log.append(event(i))  # never raises: held in memory
        health = log.health()  # the journal's last page had room for a few
        held = health["held_events"]
        assert isinstance(held, int) and 50 < held <= 70 and health["write_failures"] >= 1
        assert "No space left" in str(health["last_error"])
        with pytest.raises(UsageLogUnavailable, match="no provider was called"):
            log.check()  # a new call is refused before any provider is paid
        filler.unlink()  # space returns
        log.check()  # writes the held events at once (free space seen by statvfs)
        assert log.health()["held_events"] == 0 and log.health()["written_late"] == held
        for i in range(120, 130):
            log.append(event(i))
        log.flush()
    finally:
        log.close()
    assert ids(home) == sorted(event(i).request_id for i in range(130))
    assert summary(home).items == ()  # no torn record: failed writes were cut back


def test_failed_conversion_is_retried_while_the_writer_lives(small_fs: Path) -> None:
    home = small_fs / "home"
    log = UsageLog(home, flush_interval_s=3600, compact_threshold=0)
    try:
        for i in range(40):
            log.append(event(i))
        filler = fill(small_fs)
        with pytest.raises(OSError):
            log.flush()  # the segment cannot be written: the journal stays
        assert len(os.listdir(journal_dir(home))) == 1
        filler.unlink()
        deadline = time.monotonic() + 20
        while os.listdir(journal_dir(home)) and time.monotonic() < deadline:
            time.sleep(0.1)  # the writer is alive: its converter tries again (1 s, 2 s, ...)
        assert log.health()["conversion_retries"] >= 1
        assert ids(home) == sorted(event(i).request_id for i in range(40))
    finally:
        log.close()


RLIMIT_WRITER = """
import resource, signal, sys
from core.usage import UsageLog
from test_usage_support import event
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
log = UsageLog(flush_interval_s=3600, compact_threshold=0)
log.append(event(0))
size = log._size
resource.setrlimit(resource.RLIMIT_FSIZE, (size * 3 + size // 2, resource.RLIM_INFINITY))
for i in range(1, 10):  # the 4th is cut mid-record by the limit, later ones fail whole
    log.append(event(i))
print(log.health()["held_events"], flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for i in range(10, 13):
    log.append(event(i))
log.close()
"""


def test_a_write_cut_mid_record_never_merges_two_records(
    costline_home: Path, procs: list[subprocess.Popen[str]]
) -> None:
    procs.append(python(RLIMIT_WRITER, costline_home))
    out, err = procs[0].communicate(timeout=60)
    assert procs[0].returncode == 0, err
    assert int(out) == 7  # events 3..9 held while the file could not grow
    assert ids(costline_home) == sorted(event(i).request_id for i in range(13))
    assert summary(costline_home).items == ()


def test_records_are_framed_so_a_torn_one_is_never_glued_to_the_next() -> None:
    a, b, c = (frame(f'["r{i}", "2024-01-01T00:00:00Z"]'.encode()) for i in range(3))
    torn = a[: len(a) // 2]
    # A writer that could not cut back its torn write starts the next record on a new line.
    payloads, numbers, bad = split_records(torn + b"\n" + b + c)
    assert payloads == [b[17:-1], c[17:-1]] and numbers == [1, 2]
    assert [x.reason for x in bad] == [f"torn record ({len(torn) - 17} of {len(a) - 18} bytes)"]
    flipped = bytearray(b)
    flipped[-3] ^= 0x01
    payloads, _, bad = split_records(a + bytes(flipped) + b'["old", "unframed"]\n')
    assert payloads == [a[17:-1], b'["old", "unframed"]']  # older journals stay readable
    assert [x.reason for x in bad] == ["record checksum mismatch"]


def test_a_huge_event_is_truncated_and_flagged_and_hides_no_other(costline_home: Path) -> None:
    big = "x" * (70 << 20)  # a 70 MB prompt
    with UsageLog(flush_interval_s=3600) as log:
        log.append(event(1, project="alpha", prompt=big, metadata={"k": big[:3_000_000]}))
        log.append(event(2, project="beta"))  # another project's paid call, same journal
        assert log.health()["truncated_events"] == 1
    with Reader() as r:
        got = {e.request_id: e for e in r.fetch()}
    assert set(got) == {event(1).request_id, event(2).request_id}
    huge = got[event(1).request_id]
    assert FLAG_TRUNCATED in huge.price_flags
    assert huge.prompt is not None and MAX_FIELD_CHARS <= len(huge.prompt) < MAX_FIELD_CHARS + 100
    assert huge.cost_picousd == event(1).cost_picousd  # money untouched
    assert got[event(2).request_id].price_flags == ()


def test_an_old_journal_with_a_huge_line_is_converted_not_stuck(costline_home: Path) -> None:
    import orjson

    from core.usage._procid import HOST, ProcId
    from core.usage._schema import event_row

    jdir = journal_dir(costline_home)
    jdir.mkdir(parents=True)
    dead = ProcId(HOST, 2**22 + 17, 1, "0ldf0rma")  # no such pid
    path = jdir / f"{dead}_000000.jsonl"
    opt = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE
    rows = [event_row(event(1, prompt="y" * (40 << 20))), event_row(event(2))]
    path.write_bytes(b"".join(orjson.dumps(r, option=opt) for r in rows))  # unframed
    assert recover(costline_home) == 2
    assert ids(costline_home) == [event(1).request_id, event(2).request_id]
    assert os.listdir(jdir) == []


LIVE_WRITER_ELSEWHERE = """
import sys
from core.usage import UsageLog
from core.usage._procid import HOST, ProcId
from test_usage_support import event
log = UsageLog(flush_interval_s=3600)
# A writer in another PID namespace: same host name, a pid that does not exist here.
log._owner = ProcId(HOST, int(sys.argv[1]), 1, "c0ffee01")
for i in range(5):
    log.append(event(i))
print("ready", flush=True)
sys.stdin.readline()
log.close()
"""


def test_a_live_writers_journal_is_never_recovered_whatever_its_pid(
    costline_home: Path, procs: list[subprocess.Popen[str]]
) -> None:
    no_such_pid = 4_000_000 + os.getpid()  # above any pid_max
    proc = python(LIVE_WRITER_ELSEWHERE, costline_home, str(no_such_pid), stdin=subprocess.PIPE)
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert recover(costline_home) == 0
    with Reader(costline_home) as r:  # a Reader start recovers too
        assert r.count() == 0
    (name,) = os.listdir(journal_dir(costline_home))
    assert str(no_such_pid) in name and ".recovering." not in name
    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    assert ids(costline_home) == sorted(event(i).request_id for i in range(5))
    assert [p.name for p in segments_dir(costline_home).iterdir()] == [
        name.removesuffix(".jsonl") + ".parquet"
    ]


def test_the_router_refuses_a_call_it_could_not_record_before_calling(small_fs: Path) -> None:
    from core.router import Router
    from core.settings import Settings
    from core.types import ChatRequest, Message

    home = small_fs / "home"

    def ask(i: int) -> ChatRequest:
        return ChatRequest(messages=[Message("user", f"q{i}")], model="dryrun-small")

    with Router(Settings.from_env(home=home)) as router:
        router.complete(ask(0))
        filler = fill(small_fs)
        done = []
        with pytest.raises(UsageLogUnavailable) as refused:
            for i in range(1, 200):  # answered until a record is held, then refused
                done.append(router.complete(ask(i)))
        assert refused.value.status_code == 503 and refused.value.held > 0
        assert "no provider was called" in str(refused.value)
        filler.unlink()
        done.append(router.complete(ask(99)))
        router.log.flush()
    with Reader(home) as r:
        logged = set(r.events(columns=["request_id"])["request_id"])
    assert {d.request_id for d in done} <= logged and len(logged) == len(done) + 1
    assert len(done) > 1  # the answered calls whose records were held were all written


def test_gateway_metrics_show_held_events_and_the_quarantine(
    small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.gateway._metrics import Metrics

    home = small_fs / "home"
    monkeypatch.setenv("COSTLINE_HOME", str(home))
    log = UsageLog(home, flush_interval_s=3600)
    try:
        log.append(event(0))
        filler = fill(small_fs)
        for i in range(1, 40):
            log.append(event(i))
        text = Metrics().render()[0].decode()
        held = next(
            ln for ln in text.splitlines() if ln.startswith("costline_usage_log_held_events")
        )
        assert float(held.split()[-1]) > 0
        assert "costline_usage_quarantined_events" in text
        filler.unlink()
        log.flush()
    finally:
        log.close()
    assert len(ids(home)) == 40
