"""Alert and retention settings, read from the control plane's ``settings`` (Admin page,
``PUT /api/v1/settings/...``). Validation lives in ``core.control._validate``.

    | setting                 | what                                                   | default |
    |-------------------------|--------------------------------------------------------|---------|
    | alert_scan_interval_s   | seconds between two scans of the worker                | 300     |
    | notifications           | webhook_urls (Slack-compatible), email_to, smtp{...}   | none    |
    | alert_thresholds        | error_rate_pct, cache_hit_min_pct, latency_p95_ms,     | 5, 50,  |
    |                         | min_requests, window_minutes, anomalies (on/off)       | 10000,  |
    |                         |                                                        | 20, 60  |
    | retention_days          | keep raw events N days (rollups are kept forever)      | forever |

The SMTP password is never stored: it comes from ``COSTLINE_SMTP_PASSWORD``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.control import ControlPlane

DEFAULT_INTERVAL_S = 300
DEFAULT_THRESHOLDS: Mapping[str, Any] = {
    "error_rate_pct": 5.0,
    "cache_hit_min_pct": 50.0,
    "latency_p95_ms": 10_000.0,
    "min_requests": 20,
    "window_minutes": 60,
    "anomalies": True,
}


@dataclass(frozen=True)
class Smtp:
    host: str = ""
    port: int = 25
    sender: str = "costline@localhost"
    username: str = ""
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = 10.0

    @property
    def password(self) -> str:
        return os.environ.get("COSTLINE_SMTP_PASSWORD", "")


@dataclass(frozen=True)
class AlertSettings:
    interval_s: float = DEFAULT_INTERVAL_S
    webhook_urls: tuple[str, ...] = ()
    email_to: tuple[str, ...] = ()
    smtp: Smtp = field(default_factory=Smtp)
    thresholds: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    retention_days: int | None = None

    def threshold(self, name: str) -> Any:
        return self.thresholds.get(name, DEFAULT_THRESHOLDS[name])


def load_settings(plane: ControlPlane) -> AlertSettings:
    stored = plane.settings()
    notes = stored.get("notifications") or {}
    smtp = notes.get("smtp") or {}
    use_ssl, starttls = bool(smtp.get("ssl", False)), bool(smtp.get("starttls", False))
    return AlertSettings(
        interval_s=float(stored.get("alert_scan_interval_s") or DEFAULT_INTERVAL_S),
        webhook_urls=tuple(notes.get("webhook_urls") or ()),
        email_to=tuple(notes.get("email_to") or ()),
        smtp=Smtp(
            host=str(smtp.get("host", "")),
            port=int(smtp.get("port", 465 if use_ssl else 587 if starttls else 25)),
            sender=str(smtp.get("sender", "costline@localhost")),
            username=str(smtp.get("username", "")),
            starttls=starttls,
            ssl=use_ssl,
        ),
        thresholds={**DEFAULT_THRESHOLDS, **(stored.get("alert_thresholds") or {})},
        retention_days=stored.get("retention_days"),
    )
