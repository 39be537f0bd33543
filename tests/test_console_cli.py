"""`costline console --demo`: demo data is loaded before Streamlit starts, only into an empty
log; Streamlit's own settings are left to STREAMLIT_* variables."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from core import cli
from core.demo import has_demo
from core.usage import Reader
from tests.child_death import python_m
from tests.console_support import routed_calls
from tests.servers.ports import free_port


def test_demo_flag_and_environment_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def demo(*argv: str) -> bool:
        return cli.wanted(
            cli.build_parser().parse_args(["console", *argv]).demo, "COSTLINE_DEMO", False
        )

    monkeypatch.delenv("COSTLINE_DEMO", raising=False)
    assert demo() is False
    assert demo("--demo") is True
    monkeypatch.setenv("COSTLINE_DEMO", "1")
    assert demo() is True
    assert demo("--no-demo") is False


def test_demo_is_loaded_only_into_an_empty_log(costline_home: Path) -> None:
    assert cli.load_demo_if_empty() is True
    assert has_demo(costline_home)
    with Reader(costline_home) as reader:
        loaded = reader.count()
    assert cli.load_demo_if_empty() is False
    with Reader(costline_home) as reader:
        assert reader.count() == loaded


def test_real_usage_is_never_mixed_with_demo_data(tmp_path: Path) -> None:
    home = tmp_path / "real"
    routed_calls(home, n=2)
    assert cli.load_demo_if_empty(home) is False
    assert not has_demo(home)


def test_console_command_passes_no_streamlit_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """No command-line options; the developer chrome is hidden wherever the console starts
    (config.toml is read from the working directory only), unless STREAMLIT_* says else."""
    seen: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli, "run_forwarding", lambda cmd, env: seen.append((cmd, env)) or 0)
    monkeypatch.delenv("STREAMLIT_CLIENT_TOOLBAR_MODE", raising=False)
    monkeypatch.chdir("/")  # no .streamlit/config.toml here
    assert cli.main(["console", "--no-demo", "--no-worker"]) == 0
    cmd, env = seen[0]
    assert cmd[-3:] == ["streamlit", "run", str(cli.APP)]
    assert env["STREAMLIT_CLIENT_TOOLBAR_MODE"] == "viewer"
    assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    monkeypatch.setenv("STREAMLIT_CLIENT_TOOLBAR_MODE", "developer")
    assert cli.main(["console", "--no-demo", "--no-worker"]) == 0
    assert seen[1][1]["STREAMLIT_CLIENT_TOOLBAR_MODE"] == "developer"  # the user's own wins


def test_console_runs_the_alert_worker_beside_it_and_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []
    started: list[FakeProcess] = []

    class FakeProcess:
        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            self.cmd, self.stopped = cmd, False
            started.append(self)

        def terminate(self) -> None:
            self.stopped = True

        def wait(self, timeout: float) -> int:
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(cli, "run_forwarding", lambda cmd, env: calls.append(cmd) or 0)
    assert cli.main(["console", "--no-demo"]) == 0
    (worker,) = started
    assert worker.cmd[-2:] == ["core.cli", "worker"] and worker.stopped
    assert cli.main(["console", "--no-demo", "--no-worker"]) == 0
    assert len(started) == 1 and len(calls) == 2


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_kill_console_stops_streamlit_and_frees_its_port(tmp_path: Path) -> None:
    """`kill PID` of `costline console` reaches the Streamlit child: the port is free after."""
    port = free_port()
    env = {
        **os.environ,
        "COSTLINE_HOME": str(tmp_path),
        "STREAMLIT_SERVER_PORT": str(port),
        "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
        "STREAMLIT_SERVER_HEADLESS": "true",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    cmd = [*python_m("core.cli", signum=signal.SIGTERM), "console", "--no-demo", "--no-worker"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert proc.poll() is None, "costline console exited before Streamlit listened"
            assert time.monotonic() < deadline, "Streamlit never listened"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) is not None
        deadline = time.monotonic() + 30
        while _listening(port):
            assert time.monotonic() < deadline, "Streamlit still holds the port"
            time.sleep(0.2)
    finally:  # whatever happened, nothing of the console outlives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
