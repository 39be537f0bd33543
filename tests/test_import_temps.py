"""An import killed while it writes its segment (SIGKILL: no cleanup runs) left its temp
file in the segments folder forever; it is removed once no import can be writing it (the
next import, or a compaction while the import lock is free), never while one holds the lock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.importer import _replace, import_csv, read_preview
from core.usage import Reader, compact, segments_dir

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
CSV = "time,model,prompt_tokens,completion_tokens\n2026-11-01T10:00:00Z,gpt-4o-mini,100,7\n"


def temps() -> list[str]:
    d = segments_dir()
    return sorted(n for n in os.listdir(d) if n.endswith(".tmp")) if d.is_dir() else []


def killed_while_writing(path: Path) -> int:
    """Import ``path`` in a child that SIGKILLs itself with its segment's rows written to
    the temp file, before the rename."""
    child = f"""
import os, signal
import core.usage._segments as seg
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
seg.file_crc = die
import core.importer as imp
from datetime import datetime, UTC
imp.import_csv({str(path)!r}, imp.read_preview({str(path)!r}).mapping,
               now=datetime(2026, 11, 23, 12, tzinfo=UTC))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", child], env=env, timeout=120).returncode


@pytest.fixture
def left(tmp_path: Path) -> Path:
    path = tmp_path / "a.csv"
    path.write_text(CSV)
    assert killed_while_writing(path) == -9
    (name,) = temps()
    assert name.startswith(".import-")
    return path


def test_the_next_import_removes_a_killed_imports_temp_file(left: Path) -> None:
    r = import_csv(left, read_preview(left).mapping, now=NOW)
    assert r.imported == 1 and temps() == []
    assert len(Reader().fetch()) == 1


def test_compaction_removes_it_only_while_no_import_holds_the_lock(left: Path) -> None:
    with _replace.import_lock(None):  # an import writing now: its temp file may be this one
        compact(wait=True)
        assert len(temps()) == 1
    compact(wait=True)
    assert temps() == []


def test_a_dry_run_leaves_temp_files_alone(left: Path) -> None:
    """A dry run does not take the import lock: a real import may be writing."""
    import_csv(left, read_preview(left).mapping, now=NOW, dry_run=True)
    assert len(temps()) == 1
