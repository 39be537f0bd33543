"""Alert delivery by the worker against real local receivers: an SMTP server (aiosmtpd)
and webhook HTTP servers. No login in clear, Retry-After honoured, one e-mail channel per
recipient."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core import clock
from core.control import SYSTEM, ControlPlane, tables, write_tx
from core.worker import Worker
from tests.servers.api import ApiServer
from tests.servers.sinks import SmtpServer, WebhookServer


@pytest.fixture
def plane(costline_home: Path) -> Iterator[ControlPlane]:
    with ControlPlane() as p:
        yield p


def store_raw(plane: ControlPlane, key: str, value: object) -> None:
    """A setting as an older version stored it (before validation refused it)."""
    with write_tx(plane.engine) as conn:
        conn.execute(tables.settings.delete().where(tables.settings.c.key == key))
        conn.execute(tables.settings.insert().values(key=key, value_json=json.dumps(value)))


def deliver(costline_home: Path) -> None:
    worker = Worker(costline_home, name="w")
    worker._next_scan = float("inf")  # deliveries only
    try:
        worker.tick()
    finally:
        worker.close()


def test_the_worker_never_sends_the_smtp_password_in_clear(
    costline_home: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A username with neither STARTTLS nor SSL (stored before the setting was refused):
    smtplib logged in over plain text, password and all. The worker refuses to log in, says
    why, and the server sees no login."""
    monkeypatch.setenv("COSTLINE_SMTP_PASSWORD", "hunter2-secret")
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with SmtpServer(auth=True) as smtp:
        smtp_at = {"host": "127.0.0.1", "port": smtp.port, "sender": "cl@example.com"}
        notes = {"email_to": ["fin@example.com"], "smtp": {**smtp_at, "username": "alerts"}}
        store_raw(plane, "notifications", notes)
        deliver(costline_home)
        assert smtp.logins == [] and smtp.messages == []
        (alert,) = plane.alerts()
        assert alert.notify_state == "pending"
        assert alert.notify_error is not None and "in clear" in alert.notify_error
        assert "hunter2" not in alert.notify_error
        # without a username there is nothing secret to send: it is delivered
        store_raw(plane, "notifications", {**notes, "smtp": smtp_at})
        with clock.offset(timedelta(minutes=2)):
            deliver(costline_home)
        assert smtp.logins == [] and len(smtp.messages) == 1


def test_the_api_says_delivered_for_an_alert_the_worker_delivered(
    costline_home: Path, plane: ControlPlane
) -> None:
    """GET /alerts over HTTP: an alert the worker sent to its channels read
    ``delivered: false`` (the field was the router's budget-webhook outcome alone) beside
    ``notify_state: sent``. Now ``delivered`` is true once either path delivered it, and
    the router's own outcome has its own fields."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer(fail_first=3) as hook, ApiServer(costline_home) as api:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        client = api.client(api.user("fin", "viewer"))
        deliver(costline_home)  # the webhook fails 3 times: pending, retried later
        (item,) = client.get("/alerts").json()["data"]
        assert (item["notify_state"], item["delivered"]) == ("pending", False)
        assert "HTTP 500" in item["delivery_error"]
        with clock.offset(timedelta(minutes=2)):
            deliver(costline_home)
        (item,) = client.get("/alerts").json()["data"]
    assert len(hook.posts) == 1
    assert item["notify_state"] == "sent" and item["notified_at"] is not None
    assert item["delivered"] is True and item["delivery_error"] is None
    assert list(item["notify"].values()) == ["sent"]
    assert item["budget_webhook_delivered"] is False and item["budget_webhook_error"] is None


def test_the_worker_honours_retry_after_on_a_webhook_429_or_503(
    costline_home: Path, plane: ControlPlane
) -> None:
    """A receiver answers 429 with ``Retry-After: 2``: the next quick try waits 2 s (it came
    0.5 s later). One that answers 503 with ``Retry-After: 300`` gets no quick tries at all
    and nothing before 5 minutes (it got 3 posts in 1.5 s, then another after 1 minute)."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer(script=[(429, {"Retry-After": "2"})]) as hook:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        deliver(costline_home)
        assert len(hook.hits) == 2 and len(hook.posts) == 1
        assert hook.hits[1] - hook.hits[0] >= 1.9, hook.hits
    (alert,) = plane.alerts()
    assert alert.notify_state == "sent"
    plane.record_alert("b2", "w", 90, message="Other at 90%")
    with WebhookServer(script=[(503, {"Retry-After": "300"})]) as hook:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        deliver(costline_home)
        assert len(hook.hits) == 1, hook.hits  # no quick tries
        (alert,) = [a for a in plane.alerts() if a.subject == "b2"]
        assert alert.notify_state == "pending" and "Retry-After 300 s" in str(alert.notify_error)
        for minutes in (1, 2, 4):
            with clock.offset(timedelta(minutes=minutes)):
                deliver(costline_home)
        assert len(hook.hits) == 1, hook.hits
        with clock.offset(timedelta(minutes=5, seconds=5)):
            deliver(costline_home)
        assert len(hook.hits) == 2 and len(hook.posts) == 1
    (alert,) = [a for a in plane.alerts() if a.subject == "b2"]
    assert alert.notify_state == "sent"


def test_a_recipient_added_while_an_alert_waits_for_a_retry_gets_it(
    costline_home: Path, plane: ControlPlane
) -> None:
    """The e-mail went to ann while the webhook failed; the admin then adds bob. The retry
    e-mails bob only (one 'email' channel was already 'sent', so bob never got it) and posts
    the webhook. Each recipient is its own channel, named by the address."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer(fail_first=3) as hook, SmtpServer() as smtp:
        smtp_at = {"host": "127.0.0.1", "port": smtp.port, "sender": "cl@example.com"}
        notes = {"webhook_urls": [hook.url], "email_to": ["ann@example.com"], "smtp": smtp_at}
        plane.set_setting("notifications", notes, SYSTEM)
        deliver(costline_home)
        (alert,) = plane.alerts()
        assert alert.notify_state == "pending"
        assert alert.notify["email:ann@example.com"] == "sent"
        assert [m["To"] for m in smtp.messages] == ["ann@example.com"]
        both = {**notes, "email_to": ["ann@example.com", "bob@example.com"]}
        plane.set_setting("notifications", both, SYSTEM)
        with clock.offset(timedelta(minutes=2)):
            deliver(costline_home)
        assert len(smtp.messages) == 2 and len(hook.posts) == 1
        envelope_to = smtp.envelopes[1]
        assert envelope_to == ["bob@example.com"]  # ann does not get it twice
    (alert,) = plane.alerts()
    assert alert.notify_state == "sent"
    assert {k: v for k, v in alert.notify.items() if k.startswith("email")} == {
        "email:ann@example.com": "sent",
        "email:bob@example.com": "sent",
    }


def test_an_alert_e_mailed_by_an_older_release_is_not_e_mailed_again(
    costline_home: Path, plane: ControlPlane
) -> None:
    """An alert pending from before the upgrade, its one 'email' channel 'sent': its retry
    posts the webhook and e-mails no one again."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer() as hook, SmtpServer() as smtp:
        smtp_at = {"host": "127.0.0.1", "port": smtp.port, "sender": "cl@example.com"}
        notes = {"webhook_urls": [hook.url], "email_to": ["ann@example.com"], "smtp": smtp_at}
        plane.set_setting("notifications", notes, SYSTEM)
        (alert,) = plane.alerts()
        old = {"email": "sent", "webhook:127.0.0.1#00000000": "HTTP 500 from 127.0.0.1"}
        plane.finish_notification(alert.id, old, sent=False, retry_at=plane.now())
        deliver(costline_home)
        assert smtp.messages == [] and len(hook.posts) == 1
    (alert,) = plane.alerts()
    assert alert.notify_state == "sent"


def test_a_webhook_that_redirects_is_not_retried_at_once_and_says_where_it_points(
    costline_home: Path, plane: ControlPlane
) -> None:
    """A receiver answers 308 to an https URL: one post, and the alert's error names the
    redirect and its target's host (it got three quick posts, each the same 308, and the
    error read only 'HTTP 308 from 127.0.0.1'). The redirect is never followed."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    moved = (308, {"Location": "https://hooks.example.net/services/T0/B0/secret"})
    with WebhookServer(script=[moved] * 3) as hook:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        deliver(costline_home)
        assert len(hook.hits) == 1 and hook.posts == [], hook.hits
    (alert,) = plane.alerts()
    assert alert.notify_state == "pending"
    assert alert.notify_error is not None
    assert "HTTP 308 from 127.0.0.1 redirecting to hooks.example.net: not followed" in (
        alert.notify_error
    ), alert.notify_error
    assert "secret" not in alert.notify_error


def test_an_alert_acknowledged_while_it_waits_for_a_retry_is_not_sent(
    costline_home: Path, plane: ControlPlane
) -> None:
    """The webhook failed, so the alert waits a minute for its retry; an engineer acks it
    on the Alerts page meanwhile: the retry sends nothing (it was posted to the webhook
    once the receiver was back, paging for an alert someone already handled)."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer(fail_first=3) as hook:
        plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
        deliver(costline_home)
        (alert,) = plane.alerts()
        assert alert.notify_state == "pending"
        assert plane.ack_alert(alert.id, SYSTEM)
        with clock.offset(timedelta(minutes=2)):
            deliver(costline_home)
        assert hook.posts == []
    (alert,) = plane.alerts()
    assert (alert.notify_state, alert.notify_error) == ("skipped", "acked by system")
