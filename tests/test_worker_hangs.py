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
        second = _delivery.deliver_due(other, settings)
        first.join(30)
        other.close()
        posts = (len(a.posts), len(b.posts), len(c.posts))
    assert second == 0
    assert posts == (1, 1, 1), posts
    (alert,) = plane.alerts()
    assert (alert.notify_state, alert.notify_attempts) == ("sent", 1)
