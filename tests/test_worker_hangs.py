"""The alert worker against receivers that are slow or hang (real local webhook servers):
no alert is posted twice, and one process delivers at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.control import SYSTEM, ControlPlane
from core.worker import Worker
from tests.child_death import python_m
from tests.servers.sinks import WebhookServer


@pytest.fixture
def plane(costline_home: Path) -> Iterator[ControlPlane]:
    with ControlPlane() as p:
        yield p


def test_an_alert_slower_to_send_than_its_claim_is_not_sent_twice(
    costline_home: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One alert, three webhooks that each take 1 s to answer, a claim of 1.5 s: the
    sender renews its claim before each channel, so a second worker that looks after the
    first claim would have run out finds nothing to claim. The claim ran out mid-delivery,
    and the second worker posted the alert again to the webhooks the first was still on."""
    from core.worker import _delivery
    from core.worker._settings import load_settings

    monkeypatch.setattr(_delivery, "CLAIM_LEASE", timedelta(seconds=1.5))
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with (
        WebhookServer(delay_s=1.0) as a,
        WebhookServer(delay_s=1.0) as b,
        WebhookServer(delay_s=1.0) as c,
    ):
        plane.set_setting("notifications", {"webhook_urls": [a.url, b.url, c.url]}, SYSTEM)
        settings = load_settings(plane)
        other = ControlPlane()
        first = threading.Thread(target=_delivery.deliver_due, args=(plane, settings))
        first.start()
        time.sleep(1.75)  # the first is posting to b; its first claim ran out at 1.5 s
        second = _delivery.deliver_due(other, settings).attempted
        first.join(30)
        other.close()
        posts = (len(a.posts), len(b.posts), len(c.posts))
    assert second == 0
    assert posts == (1, 1, 1), posts
    (alert,) = plane.alerts()
    assert (alert.notify_state, alert.notify_attempts) == ("sent", 1)


def test_a_worker_slowed_by_a_receiver_keeps_its_lease_and_its_scans(
    costline_home: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five alerts to a webhook that takes 1 s to answer, a worker lease of 2 s: the holder
    renews the lease between alerts, so a second worker at 2.6 s neither scans nor delivers
    (the lease ran out after 2 s and both delivered at once), and each alert is posted once.
    Then a scan due 1.5 s into a tick: the tick stops delivering for it (it delivered all
    five first, so one slow receiver held every scan up by as long as its alerts took)."""
    from core.worker import _worker

    monkeypatch.setattr(_worker, "LEASE_S", 2.0)
    monkeypatch.setattr(_worker, "TICK_S", 0.5)
    plane.set_setting("alert_thresholds", {"anomalies": False}, SYSTEM)
    for i in range(5):
        plane.record_alert(f"b{i}", "w", 50, message=f"alert {i}")
    with WebhookServer(delay_s=1.0) as hook:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        first = Worker(costline_home, name="first")
        first._next_scan = float("inf")  # deliveries only
        second = Worker(costline_home, name="second")
        thread = threading.Thread(target=first.tick)
        thread.start()
        time.sleep(2.6)
        taken = second.tick()
        thread.join(30)
        assert taken is None and second.scans == 0
        assert sorted(hook.texts()) == sorted(set(hook.texts())) and len(hook.texts()) == 5
        for i in range(5, 10):
            plane.record_alert(f"b{i}", "w", 50, message=f"alert {i}")
        first._next_scan = time.monotonic() + 1.5
        started = time.monotonic()
        first.tick()
        elapsed = time.monotonic() - started
        second.close()
        first.close()
        posted = len(hook.texts())
    assert elapsed < 3.5 and 6 <= posted < 10, (elapsed, posted)
    assert {a.notify_state for a in plane.alerts() if a.subject in ("b8", "b9")} == {"pending"}


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_sigterm_stops_the_worker_after_the_alert_it_is_sending(
    costline_home: Path, plane: ControlPlane, signame: str
) -> None:
    """`costline worker` sending six alerts to a webhook that takes 1 s each gets SIGTERM
    after the first post: it finishes that alert, gives the lease back and exits, leaving
    the rest pending for the next worker. It sent all six first (a gateway's shutdown,
    which waits 10 s for its worker thread, cut such a delivery off mid-alert)."""
    import signal
    import subprocess

    from core.worker import LEASE

    sig = getattr(signal, signame)  # Ctrl+C interrupted the post mid-way, the lease kept
    plane.set_setting("alert_thresholds", {"anomalies": False}, SYSTEM)
    plane.set_setting("alert_scan_interval_s", 60, SYSTEM)
    for i in range(6):
        plane.record_alert(f"b{i}", "w", 50, message=f"alert {i}")
    repo = Path(__file__).resolve().parents[1]
    with WebhookServer(delay_s=1.0) as hook:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        proc = subprocess.Popen(
            [*python_m("core.cli"), "worker"],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not hook.hits and time.monotonic() < deadline:
                time.sleep(0.05)
            assert hook.hits, "the worker never posted"
            proc.send_signal(sig)
            termed = time.monotonic()
            proc.communicate(timeout=30)
            took = time.monotonic() - termed
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        posted = len(hook.texts())
    assert proc.returncode == 0
    # the post in flight (1 s) and the exit: far from the 10 s a gateway's shutdown waits
    # for its worker thread, and from the 4-5 s the rest of the batch takes (posted <= 2);
    # (it took 4.2 s with two test workers on a loaded 2-core machine)
    assert took < 8.0 and 1 <= posted <= 2, (took, posted)
    states = sorted(a.notify_state for a in plane.alerts())
    assert states == ["pending"] * (6 - posted) + ["sent"] * posted, states
    assert plane.lease_holder(LEASE) is None


class Trickler:
    """A webhook receiver that answers one byte every ``every_s`` (headers, then a body):
    each read gets a byte, so no per-read timeout ever ends the post."""

    def __init__(self, every_s: float = 0.1, headers_too: bool = False) -> None:
        import socket

        self.every_s, self.headers_too = every_s, headers_too
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.posts = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        with conn:
            try:
                conn.recv(65536)  # the request (small: one recv)
                self.posts += 1
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                if not self.headers_too:
                    conn.sendall(head)
                for byte in (head if self.headers_too else b"") + b"x" * 100:
                    if self._stop.wait(self.every_s):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.mark.parametrize("headers_too", [False, True])
def test_a_receiver_that_trickles_its_answer_is_cut_at_the_post_deadline(
    costline_home: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, headers_too: bool
) -> None:
    """A receiver sending a byte every 0.1 s held a post for as long as it liked (10 s
    here): httpx's 10 s timeout bounds each read, not the post. Each post now ends at the
    deadline (1 s here) and the channel fails as a timeout, to be retried later."""
    from core.worker import _delivery
    from core.worker._settings import load_settings

    monkeypatch.setattr(_delivery, "POST_DEADLINE_S", 1.0, raising=False)
    monkeypatch.setattr(_delivery, "QUICK_TRIES", 1)
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    slow = Trickler(headers_too=headers_too)
    try:
        plane.set_setting("notifications", {"webhook_urls": [slow.url]}, SYSTEM)
        t0 = time.monotonic()
        done = _delivery.deliver_due(plane, load_settings(plane))
        took = time.monotonic() - t0
    finally:
        slow.close()
    assert slow.posts == 1 and done.attempted == 1
    assert took < 5.0, took
    (alert,) = plane.alerts()
    assert alert.notify_state != "sent"
    assert "within 1 s" in (alert.notify_error or ""), alert.notify_error
