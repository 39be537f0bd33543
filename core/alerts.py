"""Alert sink: record an alert once (across processes) and post it to a webhook off the call path.

    sink = AlertSink(plane)                      # plane None: de-dup in this process only
    sink.budget_alert(budget, "2026-11", 75, "budget 'acme' reached 75% ...")
    sink.send("anomaly", "spend 4x the usual", subject="org=acme", window_key="2026-11-05")

``send`` first asks the control plane's ``record_alert``, which is unique per (kind, subject,
window, threshold): only the one caller that wins that insert - in any process - goes on to post
the webhook. Posting happens on a background thread (Slack-compatible JSON, up to ``attempts``
tries with exponential backoff); the outcome is stored on the alert row (``delivered`` /
``delivery_error``). The router never waits on a webhook.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.exc import SQLAlchemyError

from core.control import Budget, ControlPlane

__all__ = ["AlertSink", "Delivery", "slack_payload"]

log = logging.getLogger(__name__)
MAX_SEEN = 100_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """Outcome of one webhook post (all its attempts)."""

    kind: str
    subject: str
    window_key: str
    threshold_pct: int
    delivered: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Job:
    kind: str
    subject: str
    window_key: str
    threshold_pct: int
    url: str
    payload: dict[str, Any]


def slack_payload(title: str, message: str, context: str = "") -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (fallback/notification) plus Block Kit blocks."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": message[:3000]}},
    ]
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context[:3000]}]})
    return {"text": f"{title}: {message}", "blocks": blocks}


class AlertSink:
    """Records alerts in ``plane`` (kind 'budget' or 'anomaly') and posts webhooks. Thread-safe."""

    def __init__(
        self,
        plane: ControlPlane | None,
        webhook_client: httpx.Client | None = None,
        *,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
    ):
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.plane = plane
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.deliveries: list[Delivery] = []
        self._client = webhook_client
        self._own_client = webhook_client is None
        self._seen: set[tuple[str, str, str, int]] = set()
        # (kind, subject, window) -> (thresholds, how many of them from the first are seen)
        self._leading: dict[tuple[str, str, str], tuple[tuple[int, ...], int]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    # -- recording ----------------------------------------------------------------------
    def seen(self, kind: str, subject: str, window_key: str, threshold_pct: int) -> bool:
        """True when this sink already recorded (or saw recorded) that alert."""
        with self._lock:
            return (kind, subject, window_key, threshold_pct) in self._seen

    def leading_seen(
        self, kind: str, subject: str, window_key: str, thresholds: Sequence[int]
    ) -> int:
        """How many of ``thresholds`` (increasing), from the first, this sink has seen: a
        value below the next one has no alert left to record. Remembered until ``send``
        records one of this window's alerts."""
        got = self._leading.get((kind, subject, window_key))
        if got is not None and got[0] == thresholds:
            return got[1]
        with self._lock:
            n = 0
            while n < len(thresholds) and (kind, subject, window_key, thresholds[n]) in self._seen:
                n += 1
            if len(self._leading) >= MAX_SEEN:  # one per budget and window: bounded like _seen
                self._leading.clear()
            self._leading[(kind, subject, window_key)] = (tuple(thresholds), n)
        return n

    def send(
        self,
        kind: str,
        message: str,
        *,
        subject: str = "",
        window_key: str = "",
        threshold_pct: int = 0,
        webhook_url: str | None = None,
        title: str | None = None,
        spent_picousd: int | None = None,
        limit_picousd: int | None = None,
        spent_tokens: int | None = None,
        limit_tokens: int | None = None,
    ) -> bool:
        """Record the alert once; True only for the caller that created it (which then posts
        the webhook). A database error is logged and leaves the alert to be tried again."""
        key = (kind, subject, window_key, threshold_pct)
        if self.seen(*key):
            return False
        created = True
        if self.plane is not None:
            try:
                created = self.plane.record_alert(
                    subject,
                    window_key,
                    threshold_pct,
                    message=message,
                    kind=kind,
                    spent_picousd=spent_picousd,
                    limit_picousd=limit_picousd,
                    spent_tokens=spent_tokens,
                    limit_tokens=limit_tokens,
                )
            except SQLAlchemyError as exc:
                log.warning(
                    "could not record %s alert %s/%s/%s: %s",
                    kind,
                    subject,
                    window_key,
                    threshold_pct,
                    exc,
                )
                return False
        with self._lock:
            if key in self._seen:
                created = False  # another thread of this process got there first (no plane)
            if len(self._seen) >= MAX_SEEN:
                self._seen.clear()
                self._leading.clear()
            self._seen.add(key)
            self._leading.pop(key[:3], None)
        if created and webhook_url:
            context = f"{kind} alert · window {window_key}" + (
                f" · threshold {threshold_pct}%" if threshold_pct else ""
            )
            payload = slack_payload(title or f"Costline {kind} alert", message, context)
            self._enqueue(_Job(kind, subject, window_key, threshold_pct, webhook_url, payload))
        return created

    def budget_alert(
        self,
        budget: Budget,
        window_key: str,
        threshold_pct: int,
        message: str,
        *,
        spent_picousd: int | None = None,
        spent_tokens: int | None = None,
    ) -> bool:
        return self.send(
            "budget",
            message,
            subject=budget.id,
            window_key=window_key,
            threshold_pct=threshold_pct,
            webhook_url=budget.webhook_url,
            title=f"Budget '{budget.name}' reached {threshold_pct}%",
            spent_picousd=spent_picousd,
            limit_picousd=budget.limit_picousd,
            spent_tokens=spent_tokens,
            limit_tokens=budget.limit_tokens,
        )

    # -- delivery -----------------------------------------------------------------------
    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            self._pending += 1
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._run, name="costline-alerts", daemon=True
                )
                self._worker.start()
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._record(job, self._deliver(job))
            except Exception:  # never let one bad alert stop the worker
                log.exception("alert delivery crashed")
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, job: _Job) -> Delivery:
        client = self._http()
        host = urlsplit(job.url).hostname or "?"
        error: str | None = None
        attempt = 0
        for attempt in range(1, self.attempts + 1):
            wait = self.backoff_s * 2 ** (attempt - 1)
            try:
                resp = client.post(job.url, json=job.payload, timeout=self.timeout_s)
            except httpx.HTTPError as exc:  # the URL holds a secret: never put it in the error
                error = f"{type(exc).__name__} posting to {host}"
            else:
                if resp.is_success:
                    return Delivery(
                        job.kind, job.subject, job.window_key, job.threshold_pct, True, attempt
                    )
                error = f"HTTP {resp.status_code} from {host}"
                if resp.is_client_error and resp.status_code not in (408, 429):
                    break  # a wrong URL or payload will not get better
                wait = max(wait, min(_retry_after(resp), 30.0))
            if attempt < self.attempts:
                time.sleep(wait)
        return Delivery(
            job.kind,
            job.subject,
            job.window_key,
            job.threshold_pct,
            False,
            attempt,
            f"{error} after {attempt} attempt(s)",
        )

    def _record(self, job: _Job, result: Delivery) -> None:
        with self._lock:
            self.deliveries.append(result)
            del self.deliveries[:-1000]
        if not result.delivered:
            log.warning(
                "%s alert %s/%s/%s not delivered: %s",
                job.kind,
                job.subject,
                job.window_key,
                job.threshold_pct,
                result.error,
            )
        if self.plane is not None:
            try:
                self.plane.set_alert_delivery(
                    job.subject,
                    job.window_key,
                    job.threshold_pct,
                    error=result.error,
                    kind=job.kind,
                )
            except SQLAlchemyError as exc:
                log.warning("could not store alert delivery: %s", exc)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout_s)
            return self._client

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued webhook has been tried; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        self.flush(timeout)
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout)
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0
