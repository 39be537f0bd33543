"""Anomaly alerts through the same channel as budget alerts (``AlertSink.send``).

One alert per series and day: subject ``org=initech`` (or ``model=...``), window key the
local day, threshold 0. The control plane stores each (kind, subject, window, threshold)
once across processes, so a second scan - here or in another process - records nothing.
Only anomalies from the last ``lookback_days`` are recorded, and only those from the last
``notify_days`` post the webhook (a first scan of old history does not page anyone).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from core import clock
from core.alerts import AlertSink
from core.types import PICO

from ._anomalies import Finding, by_series_day, lead
from ._series import local_today


def alert_message(group: list[Finding]) -> str:
    first = lead(group)
    text = first.describe()
    hours = [f.clock for f in sorted(group, key=lambda f: f.start_utc) if f.grain == "hour"]
    hours = list(dict.fromkeys(hours))  # real-time order; a repeated DST hour reads apart
    if hours:
        text += f"; unusual hours: {', '.join(hours)}"
    culprits = first.culprits()
    if culprits:
        text += f". Top contributors: {culprits}"
    return text[0].upper() + text[1:]


def exact_spent(finding: Finding) -> int | None:
    """A spend finding's picodollars for its alert: the exact sum ``scan_usage`` read from
    the log; a finding built without it (by hand) falls back to its rounded float."""
    if finding.metric != "spend":
        return None
    if finding.spent_picousd is not None:
        return finding.spent_picousd
    return int(round(finding.anomaly.value * PICO))


def raise_anomaly_alerts(
    findings: Iterable[Finding],
    sink: AlertSink,
    *,
    now: datetime | None = None,
    lookback_days: int = 14,
    notify_days: int = 2,
    webhook_url: str | None = None,
) -> list[Finding]:
    """Record an 'anomaly' alert per (series, day); returns the findings newly recorded
    (empty when every alert already existed)."""
    at = now or clock.now()
    recent = [
        fd for fd in findings if (local_today(fd.tz, at) - fd.ts.date()).days <= lookback_days
    ]
    recorded = []
    for (subject, day), group in sorted(by_series_day(recent).items()):
        top = lead(group)
        age = (local_today(top.tz, at) - top.ts.date()).days
        spent = exact_spent(top)
        created = sink.send(
            "anomaly",
            alert_message(group),
            subject=subject,
            window_key=day,
            threshold_pct=0,
            webhook_url=webhook_url if age <= notify_days else None,
            title=f"Costline: unusual {top.metric} on {subject}",
            spent_picousd=spent,
        )
        if created:
            recorded.append(top)
    return recorded
