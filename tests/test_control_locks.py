"""SQLite's locks are POSIX locks: closing any descriptor of control.db in a process drops
all its connections' locks. Making another engine (ControlPlane) in a process must not do
that, or another process's close deletes the WAL under them and they read stale data."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from core.control import SYSTEM, ControlPlane, RoutingPolicy
from core.private import create_private
from tests.gateway_support import ROOT

WRITE = """
import sys
from core.control import SYSTEM, ControlPlane, RoutingPolicy
with ControlPlane(sys.argv[1]) as plane:
    plane.upsert_policy(RoutingPolicy(task=sys.argv[2], primary_model="dryrun-large"), SYSTEM)
"""


def _write_elsewhere(url: str, task: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", WRITE, url, task], check=True, env=env, timeout=60)


def test_another_engine_in_the_process_keeps_the_readers_view_live(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'control.db'}"
    with ControlPlane(url) as reader:
        reader.upsert_policy(RoutingPolicy(task="first", primary_model="dryrun-small"), SYSTEM)
        before = reader.version()  # its pooled connection holds its WAL locks from here
        for n in range(3):
            ControlPlane(url).close()  # e.g. the API's or the alert worker's plane
            _write_elsewhere(url, f"task-{n}")  # another process writes, then closes
            assert reader.version() == before + n + 1, "the reader no longer sees new writes"
        assert {p.task for p in reader.snapshot().policies} == {
            "first",
            "task-0",
            "task-1",
            "task-2",
        }


def test_create_private_makes_a_new_file_0600_and_leaves_an_existing_one(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    new = d / "new.db"
    create_private(new)
    assert new.read_bytes() == b"" and stat.S_IMODE(new.stat().st_mode) == 0o600
    old = d / "old.db"
    old.write_bytes(b"kept")
    old.chmod(0o644)
    ino = old.stat().st_ino
    create_private(old)
    assert old.read_bytes() == b"kept" and old.stat().st_ino == ino
    assert stat.S_IMODE(old.stat().st_mode) == 0o600  # an older install's file is tightened
    assert sorted(p.name for p in d.iterdir()) == ["new.db", "old.db"]  # no temp left
