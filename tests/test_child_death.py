"""The Python children the tests' ``python()`` helpers and ``GatewayProcess`` start die with
a killed pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

INNER = """
import time
from pathlib import Path

from tests.gateway_support import GatewayProcess
from tests.test_controls_support import python as controls_python
from tests.test_usage_support import python as usage_python

SPIN = "print('up', flush=True)\\nwhile True: pass"  # busy, as the orphans were


def test_start_children_and_wait(tmp_path):
    kids = [usage_python(SPIN, tmp_path), controls_python(SPIN)]
    for kid in kids:
        assert kid.stdout.readline() == "up\\n"
    (tmp_path / "gw").mkdir()
    kids.append(GatewayProcess(tmp_path / "gw").start().proc)
    Path({pids!r}).write_text(" ".join(str(kid.pid) for kid in kids))
    time.sleep(600)  # until SIGTERM
"""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (killed, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_pytest_killed_by_sigterm(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    inner = tmp_path / "test_inner.py"
    inner.write_text(INNER.format(pids=str(pids_file)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(inner)]
    run = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not pids_file.exists():
            assert run.poll() is None, run.communicate()[0].decode()
            assert time.monotonic() < deadline, "the inner pytest started no children"
            time.sleep(0.05)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert len(pids) == 3 and all(_running(p) for p in pids)
        run.send_signal(signal.SIGTERM)
        assert run.wait(30) == -signal.SIGTERM
        deadline = time.monotonic() + 10  # the gateway gets SIGTERM: it drains, then exits
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if _running(p)] == []
    finally:
        run.kill()
        run.wait(10)
        for pid in pids:  # without the fix they would spin on: end them here
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
