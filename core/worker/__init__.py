"""Always-on alerting (see docs/alerts.md): the worker that scans the usage log on a
schedule, records alerts once across processes, delivers them by webhook and e-mail with
retries, and applies retention.

    Worker(home).tick()              # one step (lease, scan when due, deliver)
    start_background(home)           # a daemon thread, e.g. inside each gateway process
"""

from core.worker._checks import Found
from core.worker._delivery import Delivered, channels, deliver_due
from core.worker._settings import (
    DEFAULT_INTERVAL_S,
    DEFAULT_THRESHOLDS,
    AlertSettings,
    Smtp,
    load_settings,
)
from core.worker._worker import LEASE, ScanResult, Worker, WorkerStatus, start_background

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_THRESHOLDS",
    "LEASE",
    "AlertSettings",
    "Delivered",
    "Found",
    "ScanResult",
    "Smtp",
    "Worker",
    "WorkerStatus",
    "channels",
    "deliver_due",
    "load_settings",
    "start_background",
]
