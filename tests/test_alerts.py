"""AlertSink against a real local webhook server: retries, Slack JSON, de-dup, delivery state."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from core.alerts import AlertSink
from core.budgets import BudgetGuard
from core.control import Budget, ControlPlane
from core.state import MemoryState
from core.types import PICO, ChatRequest, Message


class Hook:
    """A webhook on 127.0.0.1 answering with scripted status codes (then 200)."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.bodies: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                hook.gate.wait(10)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/s3cr3t"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Callable[[list[int]], Hook]]:
    made: list[Hook] = []

    def make(statuses: list[int]) -> Hook:
        made.append(Hook(statuses))
        return made[-1]

    yield make
    for h in made:
        h.close()


@pytest.fixture
def hook(hooks: Callable[[list[int]], Hook]) -> Hook:
    return hooks([])


@pytest.fixture
def plane() -> ControlPlane:
    return ControlPlane()


def budget(url: str | None) -> Budget:
    return Budget(
        id="acme",
        name="Acme monthly",
        scope="org",
        scope_value="acme",
        limit_usd=Decimal("100"),
        webhook_url=url,
    )


def sink(plane: ControlPlane | None) -> AlertSink:
    return AlertSink(plane, httpx.Client(), backoff_s=0.01)


def test_fails_twice_then_delivers_once(
    hooks: Callable[[list[int]], Hook], plane: ControlPlane
) -> None:
    hook = hooks([500, 503])
    s = sink(plane)
    assert s.budget_alert(budget(hook.url), "2026-11", 75, "reached 75%", spent_picousd=75)
    assert s.flush(10)
    assert len(hook.bodies) == 3 and hook.bodies[0] == hook.bodies[2]
    body = hook.bodies[0]
    assert body["text"] == "Budget 'Acme monthly' reached 75%: reached 75%"
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "context"]
    assert body["blocks"][1]["text"] == {"type": "mrkdwn", "text": "reached 75%"}
    assert "window 2026-11" in body["blocks"][2]["elements"][0]["text"]
    assert [(d.delivered, d.attempts) for d in s.deliveries] == [(True, 3)]
    (alert,) = plane.alerts()
    assert (alert.delivered, alert.delivery_error, alert.spent_picousd) == (True, None, 75)
    s.close()


def test_gives_up_after_three_attempts_without_leaking_the_url(
    hooks: Callable[[list[int]], Hook], plane: ControlPlane
) -> None:
    hook = hooks([500, 500, 500, 500])
    s = sink(plane)
    s.budget_alert(budget(hook.url), "2026-11", 90, "reached 90%")
    s.close()
    assert len(hook.bodies) == 3
    (alert,) = plane.alerts()
    assert not alert.delivered
    assert alert.delivery_error == "HTTP 500 from 127.0.0.1 after 3 attempt(s)"


def test_client_errors_are_not_retried(
    hooks: Callable[[list[int]], Hook], plane: ControlPlane
) -> None:
    hook = hooks([404])
    s = sink(plane)
    s.budget_alert(budget(hook.url), "2026-11", 50, "reached 50%")
    s.close()
    assert len(hook.bodies) == 1 and s.deliveries[0].attempts == 1


def test_unreachable_webhook_is_recorded(plane: ControlPlane) -> None:
    s = sink(plane)
    s.budget_alert(budget("http://127.0.0.1:9/hook"), "2026-11", 50, "reached 50%")
    s.close()
    (alert,) = plane.alerts()
    assert not alert.delivered and alert.delivery_error is not None
    assert alert.delivery_error.startswith("ConnectError posting to 127.0.0.1")


def test_same_alert_from_two_sinks_fires_once(hook: Hook, plane: ControlPlane) -> None:
    a, b = sink(plane), sink(ControlPlane())  # two processes sharing one database
    assert a.budget_alert(budget(hook.url), "2026-11", 50, "reached 50%") is True
    assert b.budget_alert(budget(hook.url), "2026-11", 50, "reached 50%") is False
    assert a.budget_alert(budget(hook.url), "2026-11", 50, "reached 50%") is False
    assert b.budget_alert(budget(hook.url), "2026-12", 50, "next window") is True
    assert b.budget_alert(budget(hook.url), "2026-12.r1", 50, "after reset") is True
    a.close()
    b.close()
    assert len(hook.bodies) == 3
    assert sorted(x.window_key for x in plane.alerts()) == ["2026-11", "2026-12", "2026-12.r1"]


def test_the_caller_never_waits_for_the_webhook(hook: Hook, plane: ControlPlane) -> None:
    hook.gate.clear()  # the server holds every request until released
    s = sink(plane)
    assert s.budget_alert(budget(hook.url), "2026-11", 50, "reached 50%")
    assert hook.bodies == [] and not plane.alerts()[0].delivered  # returned before delivery
    hook.gate.set()
    assert s.flush(10)
    assert plane.alerts()[0].delivered
    s.close()


def test_no_webhook_no_post_and_no_plane_dedups_locally(hook: Hook) -> None:
    s = sink(None)
    assert s.budget_alert(budget(None), "2026-11", 50, "m") is True
    assert s.budget_alert(budget(None), "2026-11", 50, "m") is False
    assert (
        s.send(
            "anomaly",
            "spend 4x usual",
            subject="org=acme",
            window_key="2026-11-05",
            webhook_url=hook.url,
        )
        is True
    )
    s.close()
    assert len(hook.bodies) == 1
    assert hook.bodies[0]["blocks"][0]["text"]["text"] == "Costline anomaly alert"


def test_anomaly_alerts_share_the_sink(plane: ControlPlane) -> None:
    s = AlertSink(plane)
    assert s.send("anomaly", "spend 4x usual", subject="org=acme", window_key="2026-11-05")
    assert not s.send("anomaly", "again", subject="org=acme", window_key="2026-11-05")
    (alert,) = plane.alerts()
    assert (alert.kind, alert.budget_id, alert.threshold_pct) == ("anomaly", "org=acme", 0)
    s.close()


def test_the_leading_thresholds_memo_is_bounded_like_the_seen_set(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One entry per budget and window (a daily budget: one a day), never more than MAX_SEEN;
    the answers stay right once it was cleared."""
    monkeypatch.setattr("core.alerts.MAX_SEEN", 8)
    s = AlertSink(plane)
    assert s.send("budget", "50%", subject="b", window_key="2026-11-01", threshold_pct=50)
    for day in range(1, 31):
        assert s.leading_seen("budget", "b", f"2026-11-{day:02d}", (50, 75)) == (day == 1)
        assert len(s._leading) <= 8
    assert s.leading_seen("budget", "b", "2026-11-01", (50, 75)) == 1
    s.close()


def test_budget_threshold_reaches_the_webhook_once_from_two_routers(hook: Hook) -> None:
    def now() -> datetime:
        return datetime(2026, 11, 16, tzinfo=UTC)

    state, b = MemoryState("t:"), budget(hook.url)
    sinks = [sink(ControlPlane(now=now)), sink(ControlPlane(now=now))]
    guards = [BudgetGuard(state, clock=now, alerts=s) for s in sinks]
    r = ChatRequest([Message("user", "hi")], org="acme")
    for g in guards * 2:  # 30, 60, 90, 120 dollars
        d = g.admit(r, "gpt-4o", "openai", 30 * PICO, 0, [b], [])
        g.settle(d, 30 * PICO, 0)
    for s in sinks:
        s.close()
    texts = sorted(body["text"] for body in hook.bodies)
    assert len(texts) == 4  # 50, 75, 90, 100: each once
    assert texts[0].startswith(
        "Budget 'Acme monthly' reached 100%: budget 'Acme monthly' "
        "(org=acme) reached 100% in window 2026-11 (month, UTC)"
    )
    assert all(a.delivered for a in ControlPlane().alerts())
