"""``costline gateway`` and ``costline api`` print their URL line only once the socket accepts
connections: a script that waits for the line, then connects, is never refused. (The line
came before uvicorn ran the app's startup and bound the socket.)"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.child_death import python_m
from tests.servers.ports import free_port

REPO = Path(__file__).resolve().parents[1]
TRIES = 3


def _connect_at_the_line(command: list[str], path: str, env: dict[str, str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*python_m("core.cli", signum=signal.SIGTERM), *command, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "COSTLINE_GATEWAY_ALERT_WORKER": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)  # at once: no retry
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.parametrize(
    ("command", "path"), [(["api"], "/api/v1/openapi.json"), (["gateway"], "/health/live")]
)
def test_the_url_line_comes_once_the_server_accepts_connections(
    costline_home: Path, command: list[str], path: str
) -> None:
    for _ in range(TRIES):
        _connect_at_the_line(command, path, {})


@pytest.mark.services
def test_the_gateway_line_with_workers_comes_once_one_accepts(
    costline_home: Path, redis_url: str
) -> None:
    env = {"REDIS_URL": redis_url, "COSTLINE_REDIS_PREFIX": os.environ["COSTLINE_TEST_PREFIX"]}
    for _ in range(TRIES):
        _connect_at_the_line(["gateway", "--workers", "2"], "/health/live", env)
