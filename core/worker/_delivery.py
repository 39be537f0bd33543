"""Delivering alerts: Slack-compatible webhooks and e-mail, from the control plane's outbox.

``deliver_due(plane, settings)`` claims the alerts due for notification one at a time,
just before sending each (each attempt is claimed by one process only, and the claim is
renewed before each channel, so slow receivers never let it run out mid-delivery), sends
each to every channel that has not yet received it, and stores the outcome per channel
(only while the claim is held). A failed channel is retried on a later tick with
exponential backoff (1, 2, 4, ... minutes, at most ``MAX_ATTEMPTS`` attempts); within one
attempt a webhook gets up to 3 quick tries (a 4xx other than 408/429 is not retried, nor is
a redirect, which is never followed); a 429 or 503 with ``Retry-After`` is honoured: up to
10 s it is waited before the next quick try, a longer one ends the attempt and the next
waits for it (one hour at most). Each post has an overall deadline, ``POST_DEADLINE_S``: a
receiver that trickles its answer a byte at a time (which no per-read timeout ends) has its
connection cut then, and the post fails as a timeout.
Webhook URLs hold secrets: errors name only the host.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx

from core import clock
from core.alerts import slack_payload
from core.control import Alert, ControlPlane, url_digest
from core.retry import parse_retry_after
from core.worker._settings import AlertSettings

log = logging.getLogger("costline.worker")

MAX_ATTEMPTS = 6
CLAIM_LEASE = timedelta(minutes=2)
BASE_BACKOFF = timedelta(minutes=1)
QUICK_TRIES = 3
QUICK_RETRY_AFTER_S = 10.0  # a Retry-After up to this is waited within an attempt (the
# worker sends alerts one after another: a longer wait would hold up the others)
MAX_RETRY_AFTER = timedelta(hours=1)  # a longer one delays the next attempt, to this at most
BATCH = 50  # alerts per tick at most
POST_DEADLINE_S = 10.0  # one webhook post in all: connect, send, the answer's headers and body


def channels(settings: AlertSettings) -> dict[str, str]:
    """Channel name -> target: 'webhook:<host>#<8 hex of the URL's SHA-256>' per URL (its
    name follows the URL, not its place in the list: reordering or removing URLs neither
    skips nor repeats one; the URL holds a secret, so only a digest of it is stored),
    'email:<address>' per recipient (a recipient added while an alert waits for a retry
    gets it; one who got it does not get it again)."""
    out = {f"webhook:{urlsplit(u).hostname}#{url_digest(u)}": u for u in settings.webhook_urls}
    if settings.smtp.host:
        out.update({f"{EMAIL}{to}": to for to in settings.email_to})
    return out


EMAIL = "email:"
LEGACY_EMAIL = "email"  # one channel for every recipient, as older releases stored it


def _title(a: Alert) -> str:
    return f"Costline {a.severity} · {a.kind.replace('_', ' ')} · {a.subject or 'all'}"


@dataclass
class Posted:
    outcome: str  # "sent", or the error (naming only the host)
    retry_after_s: float | None = None  # the receiver asked to wait longer than a quick retry


class PostDeadline(httpx.TimeoutException):
    """A webhook post that did not end within ``POST_DEADLINE_S``."""


def _post(client: httpx.Client, url: str, payload: object) -> httpx.Response:
    """One POST that ends within ``POST_DEADLINE_S`` however slowly the receiver answers:
    httpx's timeouts bound each read, not the whole exchange. The post opens its own
    connection (``Connection: close``; alerts are rare) so that a timer can shut its socket
    down at the deadline, which ends the read that hangs on it."""
    deadline = POST_DEADLINE_S
    socks: list[socket.socket] = []
    cut = threading.Event()

    def trace(name: str, info: dict[str, object]) -> None:
        if name == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = getattr(stream, "get_extra_info", lambda _: None)("socket")
            if isinstance(sock, socket.socket):
                socks.append(sock)

    def expire() -> None:
        cut.set()
        for sock in socks:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(deadline, expire)
    timer.daemon = True
    timer.start()
    try:
        with client.stream(
            "POST",
            url,
            json=payload,
            headers={"connection": "close"},
            timeout=httpx.Timeout(min(deadline, 10.0)),
            extensions={"trace": trace},
        ) as resp:
            resp.read()
    except httpx.HTTPError:
        if cut.is_set():
            raise PostDeadline(f"no complete answer within {deadline:g} s") from None
        raise
    finally:
        timer.cancel()
    if cut.is_set():  # the body may have ended at the cut
        raise PostDeadline(f"no complete answer within {deadline:g} s")
    return resp


def post_webhook(client: httpx.Client, url: str, a: Alert, backoff_s: float = 0.5) -> Posted:
    """Up to ``QUICK_TRIES`` posts. A 429 or 503 with ``Retry-After`` waits that long before
    the next quick try when it is at most ``QUICK_RETRY_AFTER_S``; a longer wait ends the
    quick tries, and the next attempt waits for it (at most ``MAX_RETRY_AFTER``)."""
    host = urlsplit(url).hostname or "?"
    context = f"{a.kind} alert · window {a.window_key}" + (
        f" · threshold {a.threshold_pct}%" if a.threshold_pct else ""
    )
    payload = slack_payload(_title(a), a.message, context)
    error = ""
    for attempt in range(1, QUICK_TRIES + 1):
        wait = backoff_s * 2 ** (attempt - 1)
        try:
            resp = _post(client, url, payload)
        except PostDeadline:
            error = f"no complete answer from {host} within {POST_DEADLINE_S:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__} posting to {host}"
        else:
            if resp.is_success:
                return Posted("sent")
            error = f"HTTP {resp.status_code} from {host}"
            if resp.is_redirect:  # never followed: a 301/302 would turn the POST into a GET
                to = urlsplit(resp.headers.get("location", "")).hostname or host
                error += f" redirecting to {to}: not followed; set the URL it points to"
                break  # the same answer again: no quick retries
            if resp.is_client_error and resp.status_code not in (408, 429):
                break
            asked = parse_retry_after(resp.headers) if resp.status_code in (429, 503) else None
            if asked is not None:
                if asked > QUICK_RETRY_AFTER_S:
                    return Posted(f"{error} (Retry-After {asked:.0f} s)", asked)
                wait = max(wait, asked)
        if attempt < QUICK_TRIES:
            time.sleep(wait)
    return Posted(error)


def send_email(settings: AlertSettings, a: Alert, recipients: list[str]) -> dict[str, str]:
    """One message to ``recipients`` (its To header names every configured recipient), in
    one SMTP session: the outcome per recipient ("sent", or why not)."""
    s = settings.smtp
    msg = EmailMessage()
    msg["Subject"] = _title(a)
    msg["From"] = s.sender
    msg["To"] = ", ".join(settings.email_to)
    # RFC 5322 requires Date; smtplib adds neither. One Message-ID per alert: a copy sent
    # again (a worker died before storing the outcome) is the same message to mail clients.
    msg["Date"] = email.utils.format_datetime(clock.now())
    domain = s.sender.rpartition("@")[2] or "costline.invalid"
    msg["Message-ID"] = f"<costline-alert.{a.id}.{int(a.ts.timestamp() * 1e6)}@{domain}>"
    msg.set_content(
        f"{a.message}\n\nkind: {a.kind}\nseverity: {a.severity}\nsubject: {a.subject}\n"
        f"window: {a.window_key}\nat: {a.ts:%Y-%m-%d %H:%M} UTC\n"
        f"console page: {a.link or 'alerts'}\n"
    )
    if s.username and not (s.starttls or s.ssl):  # stored before the setting refused it
        error = (
            f"refused: SMTP login to {s.host}:{s.port} without STARTTLS or SSL would send the"
            " password in clear (set notifications.smtp.starttls or ssl)"
        )
        return dict.fromkeys(recipients, error)
    try:
        # A verifying context for SSL as for STARTTLS: SMTP_SSL's default checks nothing
        tls = ssl.create_default_context()
        server: smtplib.SMTP
        if s.ssl:
            server = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=tls)
        else:
            server = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        with server:
            if s.starttls and not s.ssl:
                server.starttls(context=tls)
            if s.username:
                server.login(s.username, s.password)
            refused = server.send_message(msg, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
        refused = exc.recipients
    except (OSError, smtplib.SMTPException) as exc:
        return dict.fromkeys(recipients, f"{type(exc).__name__} from {s.host}:{s.port}")
    return {
        to: f"SMTP {refused[to][0]} from {s.host}:{s.port}" if to in refused else "sent"
        for to in recipients
    }


@dataclass
class Delivered:
    """What one ``deliver_due`` did with the alerts it claimed."""

    attempted: int = 0
    sent: int = 0  # every channel has it now
    retrying: int = 0  # a channel failed: tried again later
    failed: int = 0  # a channel failed and no attempt is left
    skipped: int = 0  # no channel set up, its series is muted, or it was acknowledged
    lost: int = 0  # another worker took the claim over mid-delivery


def deliver_one(
    plane: ControlPlane, settings: AlertSettings, client: httpx.Client, a: Alert
) -> str:
    """Send ``a`` where it is due; its state after: 'sent', 'pending' (a retry), 'failed'
    or 'lost' (the claim ran out and another worker has it)."""
    targets = channels(settings)
    done = {ch: out for ch, out in a.notify.items() if out == "sent" and ch in targets}
    if a.notify.get(LEGACY_EMAIL) == "sent":  # an older release e-mailed every recipient
        done.update({ch: "sent" for ch in targets if ch.startswith(EMAIL)})
    outcomes: dict[str, str] = dict(done)
    asked = 0.0  # the longest Retry-After a receiver asked for
    attempt = a.notify_attempts

    def still_ours() -> bool:
        """Renew the claim before each channel: slow receivers must not let it run out (a
        worker claiming the alert then would send it again where this one is sending)."""
        if plane.renew_claim(a.id, attempt, CLAIM_LEASE):
            return True
        log.warning("alert %s: claim lost mid-delivery; another worker has it", a.id)
        return False

    for ch, target in targets.items():
        if ch in done or ch.startswith(EMAIL):
            continue
        if not still_ours():
            return "lost"
        posted = post_webhook(client, target, a)
        outcomes[ch] = posted.outcome
        asked = max(asked, posted.retry_after_s or 0.0)
        if outcomes[ch] == "sent":  # stored now: a worker that dies on the next channel
            plane.note_channels(a.id, outcomes, attempt=attempt)  # leaves this one done
    mail = [ch for ch in targets if ch.startswith(EMAIL) and ch not in done]
    if mail:  # one session for the recipients still due
        if not still_ours():
            return "lost"
        sent = send_email(settings, a, [targets[ch] for ch in mail])
        outcomes.update({ch: sent[targets[ch]] for ch in mail})
        if any(outcomes[ch] == "sent" for ch in mail):
            plane.note_channels(a.id, outcomes, attempt=attempt)
    ok = all(v == "sent" for v in outcomes.values())
    retry = None
    if not ok and attempt < MAX_ATTEMPTS:
        backoff = BASE_BACKOFF * 2 ** (attempt - 1)
        retry = plane.now() + max(backoff, min(timedelta(seconds=asked), MAX_RETRY_AFTER))
    if not plane.finish_notification(a.id, outcomes, sent=ok, retry_at=retry, attempt=attempt):
        return "lost"
    if not ok:
        log.warning("alert %s not delivered everywhere: %s", a.id, outcomes)
    return "sent" if ok else "pending" if retry is not None else "failed"


def deliver_due(
    plane: ControlPlane,
    settings: AlertSettings,
    client: httpx.Client | None = None,
    *,
    keep_going: Callable[[], bool] | None = None,
) -> Delivered:
    """Deliver every alert due now; returns how many were attempted and how each ended
    (``Delivered``). ``keep_going`` is
    asked before each alert after the first: False stops (the worker renews its lease
    there, and stops when it lost it or a scan is due)."""
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    done = 0
    out = Delivered()
    try:
        # One claim per alert, just before sending it: a claim's lease runs from then, so
        # an alert never waits behind a slow receiver while its claim runs out (another
        # worker would then claim it too, and both would send it).
        while done < BATCH:
            if done and keep_going is not None and not keep_going():
                break
            claimed = plane.claim_notifications(CLAIM_LEASE, limit=1)
            if not claimed:
                break
            for a in claimed:
                done += 1
                out.attempted += 1
                if not channels(settings):
                    plane.finish_notification(
                        a.id, {}, sent=False, skipped="no channel set up", attempt=a.notify_attempts
                    )
                    out.skipped += 1
                    continue
                if plane.muted(a.kind, a.subject):  # muted while it waited for a retry
                    plane.finish_notification(
                        a.id,
                        a.notify,
                        sent=False,
                        skipped="series muted",
                        attempt=a.notify_attempts,
                    )
                    out.skipped += 1
                    continue
                if a.acked_at is not None:  # acknowledged while it waited for a retry
                    plane.finish_notification(
                        a.id,
                        a.notify,
                        sent=False,
                        skipped=f"acked by {a.acked_by}",
                        attempt=a.notify_attempts,
                    )
                    out.skipped += 1
                    continue
                state = deliver_one(plane, settings, http, a)
                if state == "sent":
                    out.sent += 1
                elif state == "pending":
                    out.retrying += 1
                elif state == "failed":
                    out.failed += 1
                else:
                    out.lost += 1
        return out
    finally:
        if own:
            http.close()
