"""Alert writes (engineer): acknowledge, mute a series for a while, unmute. Each passes the
signed-in Actor to the control plane, which checks the role and audits it."""

from __future__ import annotations

from datetime import timedelta

from console import auth
from core import clock
from core.control import Actor, AlertMute


def ack(actor: Actor, alert_id: int) -> bool:
    return auth.plane().ack_alert(alert_id, actor)


def mute(actor: Actor, kind: str, subject: str, hours: float) -> AlertMute:
    until = clock.now() + timedelta(hours=hours)
    return auth.plane().mute_series(kind, subject, until, actor)


def unmute(actor: Actor, kind: str, subject: str) -> bool:
    return auth.plane().unmute_series(kind, subject, actor)
