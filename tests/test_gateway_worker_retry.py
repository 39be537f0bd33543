"""A gateway whose alert worker cannot start (PostgreSQL unreachable at that moment) keeps
retrying with backoff, says so in /health/ready, /metrics and its log, and starts alerting
(takes the lease) once the control plane answers again.

A real ``costline gateway`` process and a real PostgreSQL, reached through a TCP relay the
test opens and shuts: it lets through as many connections as a gateway without an alert
worker makes until it serves (its Router's control plane, pooled and reused) and refuses any
more, so the worker's own control plane cannot connect, until the test lets new connections
through again."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from core.control import ControlPlane
from core.worker import LEASE
from tests.gateway_support import GatewayProcess


class Relay:
    """127.0.0.1:<port> -> PostgreSQL; new connections pass while ``admit()`` says so."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open = threading.Event()
        self.accepted = 0
        self.refused = 0
        self.allow = 0  # how many connections pass while not open
        self._closing = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.open.is_set() or self.accepted < self.allow:
                self.accepted += 1
                up = socket.create_connection(self.target)
                for a, b in ((conn, up), (up, conn)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
            else:
                self.refused += 1
                conn.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing = True
        self.sock.close()


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay(("127.0.0.1", 5432))
    yield r
    r.close()


def _ready(gw: GatewayProcess) -> dict[str, object]:
    body: dict[str, object] = httpx.get(gw.url + "/health/ready", timeout=5).json()
    return body


def test_alert_worker_retries_until_the_control_plane_answers(tmp_path, pg_url, relay):
    ControlPlane(pg_url).close()  # migrated: the gateway's Router connects once, quickly
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    assert url != pg_url
    # how many connections a gateway makes until it serves, without its alert worker
    relay.open.set()
    env = {"COSTLINE_CONTROL_URL": url, "COSTLINE_GATEWAY_ALERT_WORKER": "0"}
    with GatewayProcess(tmp_path / "calibrate", env) as gw:
        _ready(gw)
        relay.allow = relay.accepted
    assert relay.allow >= 1
    relay.open.clear()
    relay.accepted = 0
    with GatewayProcess(tmp_path / "gw", {"COSTLINE_CONTROL_URL": url}) as gw:
        # the worker's own control plane is refused: it retries, the gateway serves
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            worker = _ready(gw).get("alert_worker")
            if isinstance(worker, dict) and worker.get("start_failures", 0) >= 2:
                break
            time.sleep(0.2)
        assert isinstance(worker, dict), _ready(gw)
        assert worker["state"] == "retrying", worker
        assert worker["start_failures"] >= 2, (worker, gw.log_tail())
        assert worker["last_error"]
        text = gw.metrics()
        assert "costline_alert_worker_running 0.0" in text
        assert "costline_alert_worker_start_failures" in text
        assert "the alert worker could not start" in gw.log_tail()
        with ControlPlane(pg_url) as plane:
            assert plane.lease_holder(LEASE) is None  # nobody alerts

        relay.open.set()  # PostgreSQL reachable again: the worker starts and takes the lease
        deadline = time.monotonic() + 40
        held = None
        while time.monotonic() < deadline:
            worker = _ready(gw)["alert_worker"]
            with ControlPlane(pg_url) as plane:
                held = plane.lease_holder(LEASE)
            if held is not None and isinstance(worker, dict) and worker["state"] == "running":
                break
            time.sleep(0.3)
        assert held is not None, gw.log_tail()
        assert isinstance(worker, dict) and worker["state"] == "running", worker
        assert "costline_alert_worker_running 1.0" in gw.metrics()
        assert "the alert worker started after" in gw.log_tail()
