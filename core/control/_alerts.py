"""Alerts: each budget threshold fires once per window, even with many router processes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import _rows as rows
from . import _schema as s
from . import _validate as v
from ._base import StoreBase
from ._models import SYSTEM, Actor, Alert

NOTIFY_MAX_AGE = timedelta(days=2)  # older alerts (history, demo) are not notified
DEFAULT_LINKS: dict[str, str] = {
    "budget": "budgets",
    "forecast": "forecast",
    "anomaly": "forecast",
    "error_rate": "routing",
    "cache_hit_rate": "routing",
    "latency": "routing",
    "queue_depth": "routing",
}


def default_severity(kind: str, threshold_pct: int = 0) -> str:
    """critical: a budget at 100 % or more, failing calls; warning: most; info: early
    budget thresholds and a low cache hit rate."""
    if kind == "budget":
        return "critical" if threshold_pct >= 100 else "warning" if threshold_pct >= 90 else "info"
    if kind == "error_rate":
        return "critical"
    return "info" if kind == "cache_hit_rate" else "warning"


class AlertStore(StoreBase):
    """Alert reads and writes; the router records them with the SYSTEM actor."""

    def alerts(self, since: datetime | None = None, limit: int = 1000) -> list[Alert]:
        """Newest first; ``since`` keeps alerts at or after that time."""
        stmt = sa.select(s.alerts).order_by(s.alerts.c.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(s.alerts.c.ts >= since)
        with self.engine.connect() as conn:
            return [rows.alert_from_row(r) for r in conn.execute(stmt).mappings()]

    def record_alert(
        self,
        budget_id: str,
        window_key: str,
        threshold_pct: int,
        *,
        message: str,
        kind: str = "budget",
        spent_picousd: int | None = None,
        limit_picousd: int | None = None,
        spent_tokens: int | None = None,
        limit_tokens: int | None = None,
        actor: Actor = SYSTEM,
        ts: datetime | None = None,
        severity: str | None = None,
        link: str | None = None,
        notify: bool = True,
    ) -> bool:
        """Store an alert once per (kind, budget, window, threshold), across processes.
        Returns False when that alert already exists (then nothing is written). ``ts``: when
        the threshold was reached (default now; the demo history passes its own).

        The alert joins the notification outbox (``notify_state`` 'pending') unless it is
        older than ``NOTIFY_MAX_AGE`` or ``notify`` is False (history: 'skipped'), or its
        series is muted."""
        v.validate_alert_kind(kind)
        now = self.now()
        at = ts or now
        state, note = "pending", None
        if now - at > NOTIFY_MAX_AGE or not notify:
            state, note = "skipped", "recorded after the fact"
        values = dict(
            ts=at,
            kind=kind,
            budget_id=budget_id,
            window_key=window_key,
            threshold_pct=threshold_pct,
            spent_picousd=spent_picousd,
            limit_picousd=limit_picousd,
            spent_tokens=spent_tokens,
            limit_tokens=limit_tokens,
            message=message,
            delivered=False,
            severity=severity or default_severity(kind, threshold_pct),
            link=link or DEFAULT_LINKS.get(kind),
            notify_state=state,
            notify_attempts=0,
            notify_error=note,
        )
        with self._tx(actor, "alert") as conn:
            mute = conn.execute(
                sa.select(s.alert_mutes.c.until).where(
                    s.alert_mutes.c.kind == kind, s.alert_mutes.c.subject == budget_id
                )
            ).first()
            if state == "pending" and mute is not None and mute.until > now:
                values.update(notify_state="skipped", notify_error="series muted")
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            stmt = (
                insert(s.alerts)
                .values(**values)
                .on_conflict_do_nothing(
                    index_elements=["kind", "budget_id", "window_key", "threshold_pct"]
                )
            )
            alert_id = conn.scalar(stmt.returning(s.alerts.c.id))
            if alert_id is None:
                return False
            self._audit(conn, actor, "alert.fire", "alert", str(alert_id), None, values)
        return True

    def set_alert_delivery(
        self,
        budget_id: str,
        window_key: str,
        threshold_pct: int,
        *,
        error: str | None = None,
        kind: str = "budget",
        actor: Actor = SYSTEM,
    ) -> bool:
        """Record the webhook outcome of an alert (``error=None``: delivered)."""
        where = sa.and_(
            s.alerts.c.kind == kind,
            s.alerts.c.budget_id == budget_id,
            s.alerts.c.window_key == window_key,
            s.alerts.c.threshold_pct == threshold_pct,
        )
        return self._alert_update(
            where, actor, "alert.delivery", {"delivered": error is None, "delivery_error": error}
        )

    def delete_alerts(self, alert_ids: Sequence[int], actor: Actor) -> int:
        """Delete these alerts (e.g. the demo's, with its data); each deletion is audited.
        Returns how many were deleted."""
        if not alert_ids:
            return 0
        where = s.alerts.c.id.in_(list(alert_ids))
        with self._tx(actor, "alert") as conn:
            found = [
                rows.alert_from_row(r)
                for r in conn.execute(sa.select(s.alerts).where(where)).mappings()
            ]
            conn.execute(s.alerts.delete().where(where))
            for i, before in enumerate(found):
                self._audit(
                    conn,
                    actor,
                    "alert.delete",
                    "alert",
                    str(before.id),
                    before,
                    None,
                    bump=i == len(found) - 1,
                )
        return len(found)

    def ack_alert(self, alert_id: int, actor: Actor) -> bool:
        """Acknowledge; True when the alert exists. Acking an acked alert changes nothing
        (the first acknowledgement - who and when - stays, and is audited once)."""
        return self._alert_update(
            s.alerts.c.id == alert_id,
            actor,
            "alert.ack",
            {"acked_by": actor.username, "acked_at": self.now()},
            unless=lambda a: a.acked_at is not None,
        )

    def _alert_update(
        self,
        where: sa.ColumnElement[bool],
        actor: Actor,
        action: str,
        values: dict[str, Any],
        unless: Callable[[Alert], bool] | None = None,
    ) -> bool:
        with self._tx(actor, "alert") as conn:
            row = conn.execute(sa.select(s.alerts).where(where)).mappings().first()
            if row is None:
                return False
            before = rows.alert_from_row(row)
            if unless is not None and unless(before):
                return True
            conn.execute(s.alerts.update().where(s.alerts.c.id == before.id).values(**values))
            after = replace(before, **values)
            self._audit(conn, actor, action, "alert", str(before.id), before, after)
        return True
