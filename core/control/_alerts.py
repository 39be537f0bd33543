"""Alerts: each budget threshold fires once per window, even with many router processes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import _rows as rows
from . import _schema as s
from . import _validate as v
from ._base import StoreBase
from ._models import SYSTEM, Actor, Alert


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
    ) -> bool:
        """Store an alert once per (kind, budget, window, threshold), across processes.
        Returns False when that alert already exists (then nothing is written). ``ts``: when
        the threshold was reached (default now; the demo history passes its own)."""
        v.validate_alert_kind(kind)
        values = dict(
            ts=ts or self.now(),
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
        )
        with self._tx(actor, "alert") as conn:
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
        return self._alert_update(
            s.alerts.c.id == alert_id,
            actor,
            "alert.ack",
            {"acked_by": actor.username, "acked_at": self.now()},
        )

    def _alert_update(
        self, where: sa.ColumnElement[bool], actor: Actor, action: str, values: dict[str, Any]
    ) -> bool:
        with self._tx(actor, "alert") as conn:
            row = conn.execute(sa.select(s.alerts).where(where)).mappings().first()
            if row is None:
                return False
            before = rows.alert_from_row(row)
            conn.execute(s.alerts.update().where(s.alerts.c.id == before.id).values(**values))
            after = replace(before, **values)
            self._audit(conn, actor, action, "alert", str(before.id), before, after)
        return True
