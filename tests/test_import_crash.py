"""An import killed half-way (SIGKILL: no cleanup runs) and run again imports every row
exactly once; two overlapping files imported at the same moment count their common rows
once. Real files, the real usage log and control plane, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import core.importer as importer
from core.importer import import_csv, read_preview
from core.types import PICO
from core.usage import Reader
from tests.servers.ports import free_port

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
START = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def rows(first: int, last: int) -> list[tuple[datetime, int, int]]:
    """(ts, prompt tokens, cost pUSD) of calls first..last-1, one a minute."""
    return [(START + timedelta(minutes=i), 100 + i, (i + 1) * 10**7) for i in range(first, last)]


def write(path: Path, calls: list[tuple[datetime, int, int]]) -> Path:
    lines = [
        f"{ts:%Y-%m-%dT%H:%M:%SZ},gpt-4o-mini,{p},7,{Decimal(c).scaleb(-12)}" for ts, p, c in calls
    ]
    path.write_text("\n".join(["time,model,prompt_tokens,completion_tokens,cost", *lines]) + "\n")
    return path


def logged() -> list[tuple[datetime, int, int]]:
    return sorted((e.ts, e.input_tokens, int(e.cost_usd * PICO)) for e in Reader().fetch())


def killed_in(step: str, path: Path) -> int:
    """Import ``path`` in a child process that SIGKILLs itself when it reaches ``step``."""
    child = f"""
import os, signal
import core.importer as imp
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
{step} = die
from datetime import datetime, UTC
imp.import_csv({str(path)!r}, imp.read_preview({str(path)!r}).mapping,
               now=datetime(2026, 11, 23, 12, tzinfo=UTC))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", child], env=env, timeout=120).returncode


@pytest.mark.parametrize("step", ["imp.write_segment", "imp._loads.mark_written"])
def test_an_import_killed_half_way_and_run_again_imports_every_row_once(
    tmp_path: Path, step: str
) -> None:
    """Killed after claiming the file, before its rows were written (the retry said 'already
    imported; nothing was added' and the rows were never imported), or after writing them."""
    calls = rows(0, 40)
    path = write(tmp_path / "usage.csv", calls)
    assert killed_in(step, path) == -9
    again = import_csv(path, read_preview(path).mapping, now=NOW)
    assert not again.skipped_duplicate_file
    assert logged() == calls
    third = import_csv(path, read_preview(path).mapping, now=NOW)
    assert third.skipped_duplicate_file and third.imported == 0
    assert logged() == calls


def test_two_overlapping_files_imported_at_once_count_the_common_rows_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A is about to write its rows when B checks for duplicates: B must wait for A (B
    found A's rows absent, and both wrote the 20 common rows)."""
    a = write(tmp_path / "a.csv", rows(0, 60))
    b = write(tmp_path / "b.csv", rows(40, 100))
    a_writing, go, b_checked = threading.Event(), threading.Event(), threading.Event()
    real_write, real_dups = importer.write_segment, importer._duplicates

    def slow_write(*args: Any, **kw: Any) -> Any:
        if threading.current_thread().name == "A":
            a_writing.set()
            go.wait(10)
        return real_write(*args, **kw)

    def watched_dups(*args: Any, **kw: Any) -> Any:
        found = real_dups(*args, **kw)
        if threading.current_thread().name == "B":
            b_checked.set()
        return found

    monkeypatch.setattr(importer, "write_segment", slow_write)
    monkeypatch.setattr(importer, "_duplicates", watched_dups)
    mapping = read_preview(a).mapping
    results: dict[str, Any] = {}

    def run(path: Path) -> None:
        results[threading.current_thread().name] = import_csv(path, mapping, now=NOW)

    ta = threading.Thread(target=run, args=(a,), name="A")
    ta.start()
    assert a_writing.wait(60)
    tb = threading.Thread(target=run, args=(b,), name="B")
    tb.start()
    b_checked.wait(1.5)  # B has checked by now, unless it waits for A
    go.set()
    ta.join(60)
    tb.join(60)
    assert (results["A"].imported, results["B"].imported, results["B"].duplicates) == (60, 40, 20)
    assert logged() == rows(0, 100)


def test_overlapping_files_imported_while_the_bucket_is_away_count_the_common_rows_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With COSTLINE_EVENTS_URL an import's segment waits in the outbox until the bucket
    takes it, and the duplicate check read only the bucket's segments: on main a second,
    overlapping file imported on the same host before the upload (here: the bucket away)
    wrote its 20 common rows again."""
    import pyarrow.parquet as pq

    from core.usage import segments_dir

    port = free_port()  # a port nobody listens on: the bucket is away
    monkeypatch.setenv("COSTLINE_EVENTS_URL", "s3://away/usage")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "costline")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "costline-secret")
    a = write(tmp_path / "a.csv", rows(0, 60))
    b = write(tmp_path / "b.csv", rows(40, 100))
    mapping = read_preview(a).mapping
    first = import_csv(a, mapping, now=NOW)
    second = import_csv(b, mapping, now=NOW)
    assert (first.imported, second.imported, second.duplicates) == (60, 40, 20)
    home = Path(os.environ["COSTLINE_HOME"])
    queued = [
        ts
        for p in segments_dir(home).glob("*.parquet")
        for ts in pq.read_table(p, columns=["ts"])["ts"].to_pylist()
    ]
    assert len(queued) == len(set(queued)) == 100  # each call once in what will be uploaded
