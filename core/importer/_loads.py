"""The record of data sets loaded into the usage log (control-plane table ``data_loads``).

A CSV import is recorded as ``import:<sha256 of the file>`` *before* its rows are written, so
two processes importing the same file at once write it once; the demo is recorded as ``demo``
with the list of control-plane entries it created. Loads and removals are audited.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import clock
from core.control import SYSTEM, Actor, make_engine, migrate, redact_webhooks, write_tx
from core.control import tables as s
from core.errors import PermissionDenied
from core.settings import costline_home
from core.types import pico_to_usd

LOADERS = frozenset({"engineer", "admin", "system"})  # roles that may load or remove data
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class DataLoad:
    id: str  # "import:<sha256>" or "demo"
    kind: str  # import | demo
    name: str
    rows: int
    cost_picousd: int | None
    actor: str
    created_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.cost_picousd is None else pico_to_usd(self.cost_picousd)


def plane_url(home: Path | None) -> str:
    """The control plane that belongs with ``home``: COSTLINE_CONTROL_URL, else its SQLite."""
    url = os.environ.get("COSTLINE_CONTROL_URL")
    if url:
        return url
    return f"sqlite:///{(home if home is not None else costline_home()) / 'control.db'}"


def engine_for(home: Path | None) -> Engine:
    engine = make_engine(plane_url(home))
    migrate(engine)
    return engine


def check_actor(engine: Engine, actor: Actor) -> None:
    """Engineers and admins (re-checked against the users table) may load data."""
    if actor.role not in LOADERS:
        raise PermissionDenied(f"role {actor.role!r} may not load or remove data")
    if actor == SYSTEM:
        return
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(s.users.c.role, s.users.c.disabled).where(
                s.users.c.username == actor.username
            )
        ).first()
    if row is None or row.disabled or row.role not in LOADERS:
        raise PermissionDenied(f"{actor.username!r} may not load or remove data")


def _audit(
    conn: sa.Connection, actor: Actor, action: str, load_id: str, before: Any, after: Any
) -> None:
    conn.execute(
        s.audit_log.insert().values(
            ts=clock.now(),
            actor=actor.username,
            action=action,
            entity="data_load",
            entity_id=load_id,
            before_json=None if before is None else json.dumps(redact_webhooks(before)),
            after_json=None if after is None else json.dumps(redact_webhooks(after)),
        )
    )


def _row(load: DataLoad) -> dict[str, Any]:
    cost = load.cost_picousd
    return {
        "id": load.id,
        "kind": load.kind,
        "name": load.name,
        "rows": load.rows,
        "cost_picousd": cost if cost is None or abs(cost) <= _INT64_MAX else None,
        "actor": load.actor,
        "created_at": load.created_at,
        "details_json": json.dumps(dict(load.details), sort_keys=True, default=str),
    }


def _summary(load: DataLoad) -> dict[str, Any]:
    return {
        "kind": load.kind,
        "name": load.name,
        "rows": load.rows,
        "cost_usd": None if load.cost_usd is None else str(load.cost_usd),
    }


def written(load: DataLoad) -> bool:
    """Whether the load's rows were written. An import is claimed (``"written": false``)
    before its rows are written and marked after; a claim left unmarked is from a process
    that died in between (loads recorded before the mark existed have no key: written)."""
    return load.details.get("written", True) is not False


def mark_written(engine: Engine, load: DataLoad) -> DataLoad:
    done = dataclasses.replace(load, details={**load.details, "written": True})
    update(engine, done)
    return done


def claim(engine: Engine, load: DataLoad, actor: Actor) -> bool:
    """Record ``load``; False (nothing written) when its id is already recorded."""
    with write_tx(engine) as conn:
        if conn.scalar(sa.select(s.data_loads.c.id).where(s.data_loads.c.id == load.id)):
            return False
        conn.execute(s.data_loads.insert().values(_row(load)))
        _audit(conn, actor, "data_load.create", load.id, None, _summary(load))
    return True


def audit_replace(engine: Engine, actor: Actor, load_id: str, before: Any, after: Any) -> None:
    """Record a replace (rows of a source in a range removed for a load's rows)."""
    with write_tx(engine) as conn:
        _audit(conn, actor, "data_load.replace", load_id, before, after)


def update(engine: Engine, load: DataLoad) -> None:
    """Replace the recorded row (final counts after the rows were written); not audited."""
    with write_tx(engine) as conn:
        conn.execute(s.data_loads.update().where(s.data_loads.c.id == load.id).values(_row(load)))


def release(engine: Engine, load_id: str, actor: Actor, *, audit: bool = True) -> bool:
    with write_tx(engine) as conn:
        before = get(engine, load_id, conn)
        if before is None:
            return False
        conn.execute(s.data_loads.delete().where(s.data_loads.c.id == load_id))
        if audit:
            _audit(conn, actor, "data_load.delete", load_id, _summary(before), None)
    return True


def from_row(r: Mapping[Any, Any]) -> DataLoad:
    return DataLoad(
        id=r["id"],
        kind=r["kind"],
        name=r["name"],
        rows=int(r["rows"]),
        cost_picousd=r["cost_picousd"],
        actor=r["actor"],
        created_at=r["created_at"],
        details=json.loads(r["details_json"]),
    )


def get(engine: Engine, load_id: str, conn: sa.Connection | None = None) -> DataLoad | None:
    if conn is None:
        with engine.connect() as c:
            return get(engine, load_id, c)
    row = conn.execute(sa.select(s.data_loads).where(s.data_loads.c.id == load_id))
    found = row.mappings().first()
    return None if found is None else from_row(found)


def data_loads(home: Path | None = None) -> list[DataLoad]:
    """Every recorded load, newest first (for the console's Import page)."""
    engine = engine_for(home)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.data_loads).order_by(s.data_loads.c.created_at.desc())
            ).mappings()
            return [from_row(r) for r in rows]
    finally:
        engine.dispose()
