"""The alert worker: scan on a schedule, record alerts once, deliver them, prune old events.

    costline worker                  # alone, until interrupted
    start_background(home)           # inside another process (each gateway worker)

Any number of workers may run: they compete for the control-plane lease ``alert-worker``,
and only its holder scans, prunes and delivers. A holder that dies stops renewing the lease;
another takes over after ``LEASE_S``. Even two holders (a clock jump) cannot notify an alert
twice: alerts are unique per (kind, subject, window, threshold) and each delivery attempt is
claimed by one process (see ``core.control._inbox``).

Each tick (every ``TICK_S`` at most, or the scan interval if shorter) delivers what is due;
every ``alert_scan_interval_s`` it also scans: budget thresholds and projected exhaustion,
anomalies, error rate, cache hit rate, latency (``_checks.py``), then retention. While it
delivers, the holder renews the lease between alerts, and leaves the rest for the next
tick when a scan is due (slow or hanging receivers delay neither the scans nor hand the
lease to a second process while the first still delivers).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from core import clock
from core.control import ControlPlane
from core.pricing import load_catalog
from core.settings import costline_home
from core.usage import DIMENSIONS, Reader, prune
from core.worker import _checks, _delivery
from core.worker._settings import AlertSettings, load_settings

log = logging.getLogger("costline.worker")

LEASE = "alert-worker"
TICK_S = 15.0
LEASE_S = 90.0
ANOMALY_DIMS = tuple(d for d in ("org", "model", "key") if d in DIMENSIONS)


@dataclass
class ScanResult:
    found: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)
    pruned_segments: int = 0
    errors: list[str] = field(default_factory=list)


class Worker:
    def __init__(
        self,
        home: Path | None = None,
        *,
        plane: ControlPlane | None = None,
        reader: Reader | None = None,
        http: httpx.Client | None = None,
        name: str | None = None,
    ) -> None:
        self.home = home if home is not None else costline_home()
        catalog = load_catalog()
        self._canonical = lambda m: catalog.canonical(m) if catalog.has(m) else m
        self.plane = plane or ControlPlane(model_exists=catalog.has)
        self.reader = reader or Reader(self.home)
        self.http = http or httpx.Client(timeout=10.0)
        self._own = (plane is None, reader is None, http is None)
        self.holder = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._next_scan = 0.0
        self._scanned_at: float | None = None  # monotonic time of the last scan
        self._stop: threading.Event | None = None  # set by run(): stop between two alerts
        self.scans = 0

    def settings(self) -> AlertSettings:
        return load_settings(self.plane)

    def has_lease(self, settings: AlertSettings) -> bool:
        ttl = timedelta(seconds=max(LEASE_S, 3 * min(settings.interval_s, TICK_S)))
        return self.plane.acquire_lease(LEASE, self.holder, ttl)

    def tick(self) -> ScanResult | None:
        """One step: take/renew the lease; scan if due; deliver what is due."""
        settings = self.settings()
        if not self.has_lease(settings):
            return None
        result = None
        if self._scanned_at is not None:  # a shorter interval set since applies now
            self._next_scan = min(self._next_scan, self._scanned_at + settings.interval_s)
        if time.monotonic() >= self._next_scan:
            self._scanned_at = time.monotonic()
            self._next_scan = self._scanned_at + settings.interval_s
            result = self.scan(settings)

        def keep_going() -> bool:
            """Between two alerts: renew the lease (slow receivers must not let it run out
            while another process takes it and delivers too), and stop for a scan due."""
            if self._stop is not None and self._stop.is_set():
                return False  # stopping (SIGTERM, a gateway's shutdown): the rest waits
            return time.monotonic() < self._next_scan and self.has_lease(settings)

        _delivery.deliver_due(self.plane, settings, self.http, keep_going=keep_going)
        return result

    def scan(self, settings: AlertSettings | None = None) -> ScanResult:
        s = settings or self.settings()
        now = clock.now()
        tz = str(self.plane.get_setting("timezone"))
        out = ScanResult()
        checks: list[tuple[str, Any]] = [
            (
                "budgets",
                lambda: _checks.budget_checks(
                    self.reader, self.plane, self.plane.budgets(), now, self._canonical
                ),
            ),
            ("operations", lambda: _checks.ops_checks(self.reader, self.plane, s, now)),
        ]
        if s.threshold("anomalies"):
            checks.append(
                ("anomalies", lambda: _checks.anomaly_checks(self.reader, tz, now, ANOMALY_DIMS))
            )
        for name, run in checks:
            try:
                found = run()
            except Exception as exc:  # one failing check must not stop the others
                log.exception("alert check %s failed", name)
                out.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            for f in found:
                out.found[f.kind] = out.found.get(f.kind, 0) + 1
                created = self.plane.record_alert(
                    f.subject,
                    f.window_key,
                    f.threshold_pct,
                    message=f.message,
                    kind=f.kind,
                    spent_picousd=f.spent_picousd,
                    limit_picousd=f.limit_picousd,
                    spent_tokens=f.spent_tokens,
                    limit_tokens=f.limit_tokens,
                    severity=f.severity,
                    notify=f.notify,
                )
                if created:
                    out.recorded[f.kind] = out.recorded.get(f.kind, 0) + 1
        if s.retention_days:
            out.pruned_segments = prune(self.home, int(s.retention_days), now=now).segments
        self.scans += 1
        return out

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set (a delivery under way stops after its alert, and the
        lease is given back); errors are logged and the loop goes on."""
        self._stop = stop
        while not stop.is_set():
            try:
                self.tick()
                wait = min(self.settings().interval_s, TICK_S)
            except Exception:
                log.exception("alert worker tick failed")
                wait = TICK_S
            stop.wait(wait)
        try:
            self.plane.release_lease(LEASE, self.holder)
        except Exception:
            log.exception("could not release the worker lease")

    def close(self) -> None:
        own_plane, own_reader, own_http = self._own
        if own_http:
            self.http.close()
        if own_reader:
            self.reader.close()
        if own_plane:
            self.plane.close()


START_BACKOFF_S = (1.0, 30.0)  # first wait and cap between two attempts to start


@dataclass
class WorkerStatus:
    """How a background worker is doing, for a gateway's /health/ready and /metrics:
    ``starting``, ``retrying`` (it could not start, e.g. the control plane was down: it
    tries again with backoff), ``running`` or ``stopped``."""

    state: str = "starting"
    failures: int = 0  # attempts to start that failed
    last_error: str = ""
    retry_in_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "start_failures": self.failures}
        if self.last_error:
            out["last_error"] = self.last_error
        if self.state == "retrying":
            out["retry_in_s"] = self.retry_in_s
        return out


def start_background(
    home: Path | None = None, *, status: WorkerStatus | None = None, **kw: Any
) -> tuple[threading.Thread, threading.Event]:
    """Run a Worker on a daemon thread (e.g. in every gateway process: one holds the lease).
    Set the returned event to stop it. A Worker that cannot start (the control plane is
    down) is retried on that thread with exponential backoff (``START_BACKOFF_S``: 1 s
    doubling to 30 s) until it starts or the event is set; ``status`` follows it."""
    stop = threading.Event()
    st = status if status is not None else WorkerStatus()

    def main() -> None:
        wait, cap = START_BACKOFF_S
        worker: Worker | None = None
        while worker is None and not stop.is_set():
            try:
                worker = Worker(home, **kw)
            except Exception as exc:
                st.failures += 1
                st.last_error = f"{type(exc).__name__}: {exc}"[:500]
                st.retry_in_s = wait
                st.state = "retrying"
                log.warning(
                    "the alert worker could not start (attempt %d): %s; retrying in %.0f s",
                    st.failures,
                    st.last_error,
                    wait,
                )
                stop.wait(wait)
                wait = min(wait * 2, cap)
        if worker is None:
            st.state = "stopped"
            return
        if st.failures:
            log.warning("the alert worker started after %d failed attempts", st.failures)
        st.state = "running"
        try:
            worker.run(stop)
        finally:
            st.state = "stopped"
            worker.close()

    thread = threading.Thread(target=main, name="costline-alert-worker", daemon=True)
    thread.start()
    return thread, stop
