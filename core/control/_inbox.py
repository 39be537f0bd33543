"""The alerts inbox and the notification outbox (see docs/alerts.md).

Inbox: alerts filtered by kind, severity and state (open, acked, muted), newest first, paged
by id; a series (kind + subject) can be muted until a time, which keeps recording its alerts
but stops notifying them.

Outbox: a new alert is ``pending``. A worker *claims* a batch (one conditional UPDATE per
alert: ``pending`` -> ``sending`` with a lease time), delivers it, and finishes it as
``sent``, ``failed`` (no attempts left) or ``pending`` again with ``notify_next_at`` backed
off. A claim whose worker died expires and is claimed again. Two workers never both claim
the same attempt, so each alert is delivered once.

Leases: ``acquire_lease(name, holder, ttl)`` lets exactly one process hold ``name`` (the
worker's scan) until it stops renewing it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.errors import ConfigError

from . import _rows as rows
from . import _schema as s
from . import _validate as v
from ._alerts import AlertStore
from ._engine import write_tx
from ._models import ALERT_KINDS, SEVERITIES, SYSTEM, Actor, Alert, AlertMute

ALERT_STATES: tuple[str, ...] = ("open", "acked", "muted")
MAX_MUTE = timedelta(days=366)


class AlertInbox(AlertStore):
    def alert(self, alert_id: int) -> Alert | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.alerts).where(s.alerts.c.id == alert_id)).mappings()
            first = row.first()
        return None if first is None else rows.alert_from_row(first)

    def alert_page(
        self,
        *,
        kinds: Sequence[str] = (),
        severities: Sequence[str] = (),
        state: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Newest first; ``before_id`` pages on (the cursor is the last id seen)."""
        a = s.alerts
        stmt = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        for k in kinds:
            v.check_choice("kind", k, ALERT_KINDS)
        for sev in severities:
            v.check_choice("severity", sev, SEVERITIES)
        if kinds:
            stmt = stmt.where(a.c.kind.in_(list(kinds)))
        if severities:
            stmt = stmt.where(sa.func.coalesce(a.c.severity, "warning").in_(list(severities)))
        if subject is not None:
            stmt = stmt.where(a.c.budget_id == subject)
        if since is not None:
            stmt = stmt.where(a.c.ts >= since)
        if before_id is not None:
            stmt = stmt.where(a.c.id < before_id)
        if state is not None:
            v.check_choice("state", state, ALERT_STATES)
            m = s.alert_mutes
            muted = sa.exists().where(
                m.c.kind == a.c.kind, m.c.subject == a.c.budget_id, m.c.until > self.now()
            )
            if state == "acked":
                stmt = stmt.where(a.c.acked_at.is_not(None))
            elif state == "muted":
                stmt = stmt.where(muted)
            else:
                stmt = stmt.where(a.c.acked_at.is_(None), sa.not_(muted))
        with self.engine.connect() as conn:
            return [rows.alert_from_row(r) for r in conn.execute(stmt).mappings()]

    # ---- mutes -----------------------------------------------------------------------------

    def mutes(self, active_only: bool = True) -> list[AlertMute]:
        stmt = sa.select(s.alert_mutes).order_by(s.alert_mutes.c.kind, s.alert_mutes.c.subject)
        if active_only:
            stmt = stmt.where(s.alert_mutes.c.until > self.now())
        with self.engine.connect() as conn:
            return [rows.mute_from_row(r) for r in conn.execute(stmt).mappings()]

    def muted(self, kind: str, subject: str) -> bool:
        """True while the series (kind + subject) is muted."""
        m = s.alert_mutes
        stmt = sa.select(m.c.until).where(
            m.c.kind == kind, m.c.subject == subject, m.c.until > self.now()
        )
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def mute_series(self, kind: str, subject: str, until: datetime, actor: Actor) -> AlertMute:
        """Stop notifying ``kind`` alerts about ``subject`` until ``until`` (audited)."""
        v.check_choice("kind", kind, ALERT_KINDS)
        if not isinstance(subject, str) or len(subject) > 200:
            raise ConfigError("subject: must be a text of at most 200 characters", field="subject")
        now = self.now()
        if until.tzinfo is None or until <= now or until - now > MAX_MUTE:
            raise ConfigError(
                f"until: must be an aware time in the next {MAX_MUTE.days} days", field="until"
            )
        mute = AlertMute(kind, subject, until, actor.username, now)
        m = s.alert_mutes
        with self._tx(actor, "alert") as conn:
            row = conn.execute(sa.select(m).where(m.c.kind == kind, m.c.subject == subject))
            old = row.mappings().first()
            before = None if old is None else rows.mute_from_row(old)
            values = dict(until=until, created_by=actor.username, created_at=now)
            if before is None:
                conn.execute(m.insert().values(kind=kind, subject=subject, **values))
            else:
                conn.execute(
                    m.update().where(m.c.kind == kind, m.c.subject == subject).values(values)
                )
            self._audit(conn, actor, "alert.mute", "alert", f"{kind}:{subject}", before, mute)
        return mute

    def unmute_series(self, kind: str, subject: str, actor: Actor) -> bool:
        m = s.alert_mutes
        with self._tx(actor, "alert") as conn:
            row = conn.execute(sa.select(m).where(m.c.kind == kind, m.c.subject == subject))
            old = row.mappings().first()
            if old is None:
                return False
            conn.execute(m.delete().where(m.c.kind == kind, m.c.subject == subject))
            before = rows.mute_from_row(old)
            self._audit(conn, actor, "alert.unmute", "alert", f"{kind}:{subject}", before, None)
        return True

    # ---- the notification outbox ---------------------------------------------------------

    def claim_notifications(self, lease: timedelta, limit: int = 50) -> list[Alert]:
        """Claim up to ``limit`` alerts due for notification (pending and due, or a claim
        whose lease ran out) for ``lease``; each attempt is claimed by one caller only."""
        a = s.alerts
        now = self.now()
        due = sa.or_(a.c.notify_next_at.is_(None), a.c.notify_next_at <= now)
        stmt = (
            sa.select(a.c.id, a.c.notify_attempts)
            .where(a.c.notify_state.in_(("pending", "sending")), due)
            .order_by(a.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            candidates = conn.execute(stmt).all()
        claimed: list[int] = []
        for alert_id, attempts in candidates:
            with write_tx(self.engine) as conn:
                done = conn.execute(
                    a.update()
                    .where(
                        a.c.id == alert_id,
                        a.c.notify_state.in_(("pending", "sending")),
                        sa.func.coalesce(a.c.notify_attempts, 0) == (attempts or 0),
                        due,
                    )
                    .values(
                        notify_state="sending",
                        notify_attempts=(attempts or 0) + 1,
                        notify_next_at=now + lease,
                    )
                )
                if done.rowcount == 1:
                    claimed.append(alert_id)
        return [x for x in (self.alert(i) for i in claimed) if x is not None]

    def renew_claim(self, alert_id: int, attempt: int, lease: timedelta) -> bool:
        """Extend the claim of attempt ``attempt`` (the alert's ``notify_attempts`` as
        claimed) to now + ``lease``; False when that claim is no longer held (it ran out and
        another worker claimed the alert): the caller must then send nothing more."""
        a = s.alerts
        with write_tx(self.engine) as conn:
            done = conn.execute(
                a.update()
                .where(*_held(alert_id, attempt))
                .values(notify_next_at=self.now() + lease)
            )
        return bool(done.rowcount == 1)

    def note_channels(
        self, alert_id: int, outcomes: Mapping[str, str], *, attempt: int | None = None
    ) -> None:
        """Store the channels' outcomes so far of an attempt still being sent (a worker that
        dies before ``finish_notification`` leaves the channels that got it marked).
        ``attempt``: only while that claim is held."""
        a = s.alerts
        held = _held(alert_id, attempt)
        with write_tx(self.engine) as conn:
            conn.execute(
                a.update()
                .where(*held)
                .values(notify_json=json.dumps(dict(outcomes), sort_keys=True))
            )

    def finish_notification(
        self,
        alert_id: int,
        outcomes: Mapping[str, str],
        *,
        sent: bool,
        retry_at: datetime | None = None,
        skipped: str | None = None,
        attempt: int | None = None,
    ) -> bool:
        """Store one attempt's outcome: ``sent``; else retry at ``retry_at`` ('pending'),
        or 'failed' when there is no retry; ``skipped`` (a reason): nothing to send it to.
        Final outcomes are audited (SYSTEM). ``attempt``: only while that claim is held
        (False, nothing stored, when another worker claimed the alert since)."""
        errors = "; ".join(f"{ch}: {out}" for ch, out in outcomes.items() if out != "sent")
        state = "sent" if sent else "pending" if retry_at is not None else "failed"
        if skipped is not None:
            state, errors = "skipped", skipped
        values = dict(
            notify_state=state,
            notify_error=errors or None,
            notify_json=json.dumps(dict(outcomes), sort_keys=True),
            notify_next_at=retry_at,
            notified_at=self.now() if sent else None,
        )
        where = _held(alert_id, attempt) if attempt is not None else (s.alerts.c.id == alert_id,)
        with write_tx(self.engine) as conn:
            done = conn.execute(s.alerts.update().where(*where).values(values))
            if done.rowcount != 1:
                return False
            if state != "pending":
                after = {"notify_state": state, "channels": dict(outcomes)}
                self._audit(
                    conn, SYSTEM, "alert.notify", "alert", str(alert_id), None, after, bump=False
                )
        return True

    # ---- leases ----------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew lease ``name`` for ``holder`` until now + ttl; False when another
        holder has it and it has not expired."""
        now = self.now()
        with write_tx(self.engine) as conn:
            return _take(conn, name, holder, now, now + ttl)

    def release_lease(self, name: str, holder: str) -> None:
        with write_tx(self.engine) as conn:
            conn.execute(
                s.leases.delete().where(s.leases.c.name == name, s.leases.c.holder == holder)
            )

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s.leases).where(s.leases.c.name == name)).first()
        return None if row is None else (row.holder, row.expires_at)


def _held(alert_id: int, attempt: int | None) -> tuple[sa.ColumnElement[bool], ...]:
    """The alert while it is being sent (by the claim of ``attempt``, when given)."""
    a = s.alerts
    held = (a.c.id == alert_id, a.c.notify_state == "sending")
    if attempt is None:
        return held
    return (*held, sa.func.coalesce(a.c.notify_attempts, 0) == attempt)


def _take(conn: Connection, name: str, holder: str, now: datetime, until: datetime) -> bool:
    lease = s.leases
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    created = conn.execute(
        insert(lease)
        .values(name=name, holder=holder, expires_at=until)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    if created.rowcount == 1:
        return True
    renewed = conn.execute(
        lease.update()
        .where(
            lease.c.name == name,
            sa.or_(lease.c.holder == holder, lease.c.expires_at <= now),
        )
        .values(holder=holder, expires_at=until)
    )
    return bool(renewed.rowcount == 1)
