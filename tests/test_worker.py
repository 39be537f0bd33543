"""The alert worker, with no console open: scans the usage log, records alerts once, and
delivers them to a real local webhook server and a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core import clock
from core.control import SYSTEM, Budget, CacheSetting, ControlPlane
from core.usage import UsageEvent, UsageLog
from core.worker import Worker, start_background
from tests.servers.sinks import SmtpServer, WebhookServer

PICO = 10**12
ACME_DAY = Budget(
    id="acme-day",
    name="Acme daily",
    scope="org",
    scope_value="acme",
    period="day",
    limit_usd=Decimal(100),
)


def day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def history(now: datetime) -> list[UsageEvent]:
    """30 quiet days for acme ($10 a day in 10 calls), then today's burst ($200)."""
    out = []
    today = day_start(now)
    for d in range(1, 31):
        for k in range(10):
            ts = today - timedelta(days=d) + timedelta(hours=1 + 2 * k)
            out.append(_ev(f"h{d}-{k}", ts, PICO))
    for k in range(10):
        ts = max(today, now - timedelta(seconds=5 * (k + 1)))
        out.append(_ev(f"t{k}", ts, 20 * PICO))
    return out


def _ev(rid: str, ts: datetime, cost: int, **kw: object) -> UsageEvent:
    fields: dict[str, object] = dict(
        request_id=rid,
        ts=ts,
        org="acme",
        user="ann",
        model="gpt-4o-mini",
        provider="openai",
        cost_picousd=cost,
        latency_ms=100.0,
    )
    fields.update(kw)
    return UsageEvent(**fields)  # type: ignore[arg-type]


def write(home: Path, events: list[UsageEvent]) -> None:
    with UsageLog(home, compact_threshold=0) as log:
        log.append_many(events)


def notify(plane: ControlPlane, hook: WebhookServer, smtp: SmtpServer | None, every: int) -> None:
    notes: dict[str, object] = {"webhook_urls": [hook.url]}
    if smtp is not None:
        notes["email_to"] = ["finance@example.com"]
        notes["smtp"] = {"host": "127.0.0.1", "port": smtp.port, "sender": "cl@example.com"}
    plane.set_setting("notifications", notes, SYSTEM)
    plane.set_setting("alert_scan_interval_s", every, SYSTEM)


@pytest.fixture
def plane(costline_home: Path) -> Iterator[ControlPlane]:
    with ControlPlane() as p:
        yield p


def test_worker_delivers_an_anomaly_and_a_budget_alert_within_one_scan(
    costline_home: Path, plane: ControlPlane
) -> None:
    now = clock.now()
    write(costline_home, history(now))
    plane.upsert_budget(
        ACME_DAY,
        SYSTEM,
    )
    interval = 6
    with WebhookServer() as hook, SmtpServer() as smtp:
        notify(plane, hook, smtp, interval)
        started = time.monotonic()
        thread, stop = start_background(costline_home)
        try:
            deadline = started + interval
            while time.monotonic() < deadline:
                texts = " | ".join(hook.texts())
                both = "anomaly · org=acme" in texts and "reached 100%" in texts
                if both and len(smtp.messages) >= 5:
                    break
                time.sleep(0.1)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join(10)
    texts = hook.texts()
    assert elapsed < interval, (elapsed, texts)
    assert any("anomaly · org=acme" in t and "Spend of org=acme" in t for t in texts), texts
    assert any("Acme daily" in t and "reached 100%" in t for t in texts), texts
    subjects = smtp.subjects()
    assert any("anomaly · org=acme" in s for s in subjects), subjects
    assert any("budget · acme-day" in s for s in subjects), subjects
    assert all(m["To"] == "finance@example.com" for m in smtp.messages)
    ids = [m["Message-ID"] for m in smtp.messages]  # RFC 5322: Date; one id per alert
    assert all(m["Date"] is not None and m["Date"].datetime is not None for m in smtp.messages)
    assert len(set(ids)) == len(ids) and all(str(i).endswith("@example.com>") for i in ids), ids
    kinds = sorted((a.kind, a.threshold_pct) for a in plane.alerts())
    assert ("anomaly", 0) in kinds
    assert [p for k, p in kinds if k == "budget"] == [50, 75, 90, 100]
    assert {a.notify_state for a in plane.alerts()} == {"sent"}
    assert all(a.notify.get("email:finance@example.com") == "sent" for a in plane.alerts())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_workers_deliver_each_alert_once(
    costline_home: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    now = clock.now()
    write(costline_home, history(now))
    planes = [ControlPlane(url), ControlPlane(url)]
    planes[0].upsert_budget(
        ACME_DAY,
        SYSTEM,
    )
    with WebhookServer() as hook:
        notify(planes[0], hook, None, 5)
        workers = [Worker(costline_home, plane=p, name=f"w{i}") for i, p in enumerate(planes)]
        barrier = threading.Barrier(2)

        def run(w: Worker) -> None:
            for _ in range(3):
                barrier.wait()
                w.tick()
                w._next_scan = 0.0  # scan again on the next tick

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        alerts = planes[0].alerts()
        texts = hook.texts()
        for w in workers:
            w.close()
    for p in planes:
        p.close()
    assert len(alerts) >= 5  # 4 budget thresholds + the anomaly
    assert len(texts) == len(alerts) == len(set(texts)), texts
    assert sum(w.scans for w in workers) == 3  # only the lease holder scans


def test_two_processes_claim_each_notification_attempt_once(
    costline_home: Path, plane: ControlPlane
) -> None:
    for i in range(40):
        plane.record_alert(f"b{i}", "w", 50, message=f"alert {i}")
    other = ControlPlane()
    got: list[list[int]] = [[], []]

    def claim(k: int, p: ControlPlane) -> None:
        for _ in range(5):
            got[k] += [a.id for a in p.claim_notifications(timedelta(minutes=5), limit=10)]

    threads = [threading.Thread(target=claim, args=(k, p)) for k, p in enumerate((plane, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    other.close()
    assert sorted(got[0] + got[1]) == sorted(a.id for a in plane.alerts())


def test_a_failed_webhook_is_retried_with_backoff_and_its_status_stored(
    costline_home: Path, plane: ControlPlane
) -> None:
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer(fail_first=3) as hook:
        notify(plane, hook, None, 60)
        worker = Worker(costline_home, name="w")
        worker._next_scan = float("inf")  # deliveries only
        worker.tick()
        (a,) = plane.alerts()
        assert (a.notify_state, a.notify_attempts) == ("pending", 1)
        assert a.notify_error is not None and "HTTP 500 from 127.0.0.1" in a.notify_error
        worker.tick()  # not due yet: the backoff is one minute
        assert hook.posts == []
        with clock.offset(timedelta(minutes=2)):
            worker.tick()
        worker.close()
        (a,) = plane.alerts()
        assert (a.notify_state, a.notify_attempts) == ("sent", 2)
        assert len(hook.posts) == 1


def test_operational_alerts_follow_their_editable_thresholds(
    costline_home: Path, plane: ControlPlane
) -> None:
    now = clock.now()
    recent = [now - timedelta(seconds=10 + i) for i in range(40)]
    events = [
        _ev(
            f"e{i}",
            ts,
            PICO // 100,
            status="error" if i < 4 else "ok",
            latency_ms=5_000.0 if i % 2 else 50.0,
            task="faq",
            cache_hit=i >= 30,
        )
        for i, ts in enumerate(recent)
    ]
    write(costline_home, events)
    plane.upsert_cache_setting(CacheSetting(task="faq", ttl_s=60), SYSTEM)
    plane.set_setting("alert_thresholds", {"latency_p95_ms": 1_000, "anomalies": False}, SYSTEM)
    worker = Worker(costline_home, name="w")
    result = worker.scan()
    # 4 of 30 provider calls failed (13% > 5%); 10 of 40 cache hits (25% < 50%); p95 > 1,000
    assert result.recorded == {"error_rate": 1, "cache_hit_rate": 1, "latency": 1}, result
    by_kind = {a.kind: a for a in plane.alerts()}
    assert by_kind["error_rate"].severity == "critical"
    assert "4 of 30 calls" in by_kind["error_rate"].message  # cache hits are not provider calls
    assert by_kind["cache_hit_rate"].subject == "task=faq"
    assert by_kind["latency"].link == "routing"
    with pytest.raises(Exception, match="alert_thresholds.error_rate_pct"):
        plane.set_setting("alert_thresholds", {"error_rate_pct": 150}, SYSTEM)
    worker.close()


def test_the_worker_prunes_by_the_retention_setting(
    costline_home: Path, plane: ControlPlane
) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    write(costline_home, [_ev(f"o{i}", old + timedelta(hours=i), 3 * PICO) for i in range(5)])
    plane.set_setting("retention_days", 30, SYSTEM)
    plane.set_setting("alert_thresholds", {"anomalies": False}, SYSTEM)
    worker = Worker(costline_home, name="w")
    assert worker.scan().pruned_segments == 1
    assert worker.reader.count() == 0
    assert worker.reader.totals()["cost_picousd"] == 15 * PICO
    worker.close()


def test_anomaly_alert_text_rounds_an_exact_half_cent_up(
    costline_home: Path, plane: ControlPlane
) -> None:
    """Today's acme spend is exactly $200.005: the webhook and the e-mail read $200.01, as
    the console's tables do (a float's '{:.2f}' read $200.00)."""
    now = clock.now()
    today = day_start(now)
    events = [
        _ev(f"h{d}-{k}", today - timedelta(days=d) + timedelta(hours=1 + 2 * k), PICO // 10)
        for d in range(1, 31)
        for k in range(10)
    ]
    burst = [20 * PICO] * 9 + [20 * PICO + 5 * PICO // 1000]
    for k, cost in enumerate(burst):
        events.append(_ev(f"t{k}", max(today, now - timedelta(seconds=5 * (k + 1))), cost))
    write(costline_home, events)
    with WebhookServer() as hook, SmtpServer() as smtp:
        notify(plane, hook, smtp, 3600)
        worker = Worker(costline_home, plane=plane)
        try:
            worker.tick()
        finally:
            worker.close()
    texts = [t for t in hook.texts() if "anomaly · org=acme" in t]
    assert texts, hook.texts()
    assert "Spend of org=acme on " in texts[0] and ": $200.01 vs $1.00 expected" in texts[0], texts
    mails = [m.get_content() for m in smtp.messages if "org=acme" in str(m["Subject"])]
    assert mails and "$200.01 vs $1.00 expected" in mails[0], mails


def test_a_slow_receiver_never_gets_an_alert_twice_from_two_workers(
    costline_home: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker claims an alert just before sending it: while the first worker is still
    busy with a slow webhook, a second (which took the lease over) cannot claim alerts the
    first holds but has not sent yet, so each alert is posted once. Batch claims expired
    before their turn came and were sent by both."""
    from core.worker import _delivery
    from core.worker._settings import load_settings

    monkeypatch.setattr(_delivery, "CLAIM_LEASE", timedelta(seconds=2))
    for i in range(6):
        plane.record_alert(f"b{i}", "w", 50, message=f"alert {i}")
    with WebhookServer(delay_s=0.6) as hook:
        notify(plane, hook, None, 60)
        settings = load_settings(plane)
        other = ControlPlane()
        first = threading.Thread(target=_delivery.deliver_due, args=(plane, settings))
        first.start()
        time.sleep(2.3)  # the first is on its 4th alert; the claims of a batch ran out
        _delivery.deliver_due(other, settings)
        first.join(30)
        other.close()
        texts = hook.texts()
    assert sorted(texts) == sorted(set(texts)), texts
    assert len(texts) == 6
    assert {a.notify_state for a in plane.alerts()} == {"sent"}


def test_reordering_the_webhooks_neither_skips_nor_repeats_one(
    costline_home: Path, plane: ControlPlane
) -> None:
    """A channel is its URL, not its place in the list: after A got an alert and B failed,
    the admin lists B first; the retry goes to B only (it went to A again, never to B)."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with WebhookServer() as a, WebhookServer(fail_first=3) as b:
        plane.set_setting("notifications", {"webhook_urls": [a.url, b.url]}, SYSTEM)
        worker = Worker(costline_home, name="w")
        worker._next_scan = float("inf")  # deliveries only
        worker.tick()
        (alert,) = plane.alerts()
        assert alert.notify_state == "pending" and len(a.posts) == 1 and b.posts == []
        plane.set_setting("notifications", {"webhook_urls": [b.url, a.url]}, SYSTEM)
        with clock.offset(timedelta(minutes=2)):
            worker.tick()
        worker.close()
        (alert,) = plane.alerts()
        assert (len(a.posts), len(b.posts)) == (1, 1)
        assert alert.notify_state == "sent"


def test_muting_a_series_stops_the_retries_of_its_pending_alerts(
    costline_home: Path, plane: ControlPlane
) -> None:
    """An alert whose webhook failed waits for a retry; an engineer then mutes its series
    (the Alerts page's or the API's mute): the retry is not sent (the alert is 'skipped')."""
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    plane.record_alert("b2", "w", 90, message="Other at 90%")
    with WebhookServer(fail_first=6) as hook:
        notify(plane, hook, None, 60)
        worker = Worker(costline_home, name="w")
        worker._next_scan = float("inf")  # deliveries only
        worker.tick()
        assert {a.notify_state for a in plane.alerts()} == {"pending"} and hook.posts == []
        plane.mute_series("budget", "b1", clock.now() + timedelta(days=1), SYSTEM)
        with clock.offset(timedelta(minutes=2)):
            worker.tick()
        worker.close()
        texts = hook.texts()
    states = {a.subject: (a.notify_state, a.notify_error) for a in plane.alerts()}
    assert states["b1"] == ("skipped", "series muted"), states
    assert states["b2"][0] == "sent"
    assert [t for t in texts if "b1" in t] == [] and len(texts) == 1, texts


def test_a_worker_killed_mid_delivery_does_not_send_again_what_it_sent(
    costline_home: Path, plane: ControlPlane
) -> None:
    """A worker process posts the webhook, then hangs on an SMTP server that never greets,
    and is killed (SIGKILL). The worker that takes over sends the e-mail only: the webhook
    had it already (it was posted again: the outcome was stored only after every channel)."""
    from test_usage_support import python

    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with socket.socket() as silent, WebhookServer() as hook, SmtpServer() as smtp:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete, and no greeting ever comes
        smtp_at = {"host": "127.0.0.1", "sender": "cl@example.com"}
        notes = {"webhook_urls": [hook.url], "email_to": ["fin@example.com"]}
        port = silent.getsockname()[1]
        plane.set_setting("notifications", {**notes, "smtp": {**smtp_at, "port": port}}, SYSTEM)
        first = python(
            "from core.worker import Worker\n"
            "w = Worker(name='first')\n"
            "w._next_scan = float('inf')\n"
            "w.tick()\n",
            costline_home,
        )
        try:
            deadline = time.monotonic() + 30
            while not hook.posts and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(hook.posts) == 1
            time.sleep(0.5)  # waiting for the SMTP greeting now
        finally:
            first.kill()
            first.communicate(timeout=10)
        plane.set_setting(
            "notifications", {**notes, "smtp": {**smtp_at, "port": smtp.port}}, SYSTEM
        )
        with clock.offset(timedelta(minutes=3)):  # the lease and the claim ran out
            worker = Worker(costline_home, name="second")
            worker._next_scan = float("inf")
            worker.tick()
            worker.close()
        assert len(hook.posts) == 1, hook.texts()
        assert len(smtp.messages) == 1
    (alert,) = plane.alerts()
    assert alert.notify_state == "sent" and alert.notify_attempts == 2


def test_smtp_over_ssl_checks_the_server_certificate(
    costline_home: Path, plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ssl: true`` verifies the server's certificate, as STARTTLS does: an untrusted one
    gets no e-mail (smtplib.SMTP_SSL's default context checks nothing, so the alert - and
    the SMTP login - went to whoever answered); once its CA is trusted, it is delivered."""
    from tests.servers.sinks import self_signed

    cert, server_ctx = self_signed(tmp_path)
    plane.record_alert("b1", "w", 90, message="Ops at 90%")
    with SmtpServer(ssl_context=server_ctx) as smtp:
        notes = {
            "email_to": ["fin@example.com"],
            "smtp": {"host": "127.0.0.1", "port": smtp.port, "sender": "cl@ex.com", "ssl": True},
        }
        plane.set_setting("notifications", notes, SYSTEM)
        worker = Worker(costline_home, name="w")
        worker._next_scan = float("inf")  # deliveries only
        worker.tick()
        (alert,) = plane.alerts()
        assert smtp.messages == []
        assert alert.notify_state == "pending"
        assert alert.notify_error is not None and "SSL" in alert.notify_error, alert.notify_error
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with clock.offset(timedelta(minutes=2)):
            worker.tick()
        worker.close()
        assert len(smtp.messages) == 1
    (alert,) = plane.alerts()
    assert alert.notify_state == "sent"


def test_a_latency_alert_needs_min_requests_answered_calls(
    costline_home: Path, plane: ControlPlane
) -> None:
    """25 calls to one model in the window, 24 of them failed fast and one answered in 20 s:
    the error-rate alert fires; the latency alert does not, its p95 being that one call (it
    fired: min_requests counted the failed calls, which have no latency in the p95)."""
    now = clock.now()
    write(
        costline_home,
        [
            _ev(
                f"e{i}",
                now - timedelta(seconds=10 + i),
                PICO // 100,
                status="ok" if i == 0 else "error",
                latency_ms=20_000.0 if i == 0 else 30.0,
            )
            for i in range(25)
        ],
    )
    plane.set_setting("alert_thresholds", {"latency_p95_ms": 1_000, "anomalies": False}, SYSTEM)
    worker = Worker(costline_home, name="w")
    try:
        result = worker.scan()
    finally:
        worker.close()
    assert result.recorded == {"error_rate": 1}, result


def test_a_shorter_scan_interval_applies_from_the_last_scan(
    costline_home: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scans were daily; an admin sets 5 s: the running worker scans 5 s after its last
    scan (it waited out the day it had planned with the old interval first). The worker's
    monotonic clock is moved 5.2 s on rather than the test sleeping through them."""
    from core.worker import _worker

    class Later:
        """``time`` as the worker reads it, ``ahead`` seconds on."""

        ahead = 0.0

        @classmethod
        def monotonic(cls) -> float:
            return time.monotonic() + cls.ahead

    monkeypatch.setattr(_worker, "time", Later)
    plane.set_setting("alert_thresholds", {"anomalies": False}, SYSTEM)
    plane.set_setting("alert_scan_interval_s", 86_400, SYSTEM)
    worker = Worker(costline_home, name="w")
    try:
        assert worker.tick() is not None  # the first scan
        assert worker.tick() is None
        plane.set_setting("alert_scan_interval_s", 5, SYSTEM)
        Later.ahead = 5.2
        assert worker.tick() is not None
        assert worker.scans == 2
    finally:
        worker.close()
