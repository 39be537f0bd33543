"""Demo data: a deterministic, realistic usage history plus matching control-plane entries.

    load_demo()            # 90 days ending now; what `make run` and the console button call
                           # (days in the control plane's time zone, $COSTLINE_TIMEZONE)
    has_demo(), remove_demo()

The history (seeded numpy, a few seconds for 90 days) has 3 orgs, 8 projects, 40 users and
10 models from the real catalog, weekly seasonality and growth, one cost incident (a runaway
agent loop, ~10x one user's spend on one model for a working day, 9-13 days ago), response-cache
hits, sampling skips, provider errors with retries, budget degradation and blocks, Costline
rate limits and streamed calls with estimated usage. Every event is priced with the catalog
at its UTC day (the same integers as ``core.pricing.price``) and has source 'demo'.

Events go in ``demo-*`` segments (removed with ``remove_demo`` even after compaction merged
them); the control-plane entries are listed in the ``data_loads`` record ``demo``. Loading is
idempotent: with demo data present, ``load_demo`` does nothing unless ``refresh=True``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from core import clock
from core.control import SYSTEM, Actor, ControlPlane, check_timezone
from core.demo import _control, _store, _table
from core.demo import _generate as _gen
from core.demo import _world as world
from core.demo._table import DEMO_PREFIX
from core.errors import ConfigError
from core.importer import DataLoad, exact_sum, loads
from core.pricing import Catalog, load_catalog

__all__ = [
    "DEMO_PREFIX",
    "LOAD_ID",
    "DemoSummary",
    "generate_demo",
    "has_demo",
    "load_demo",
    "remove_demo",
    "world",
]

LOAD_ID = "demo"


@dataclass(frozen=True)
class DemoSummary:
    loaded: bool  # False: demo data was already there and nothing was written
    events: int
    cost_usd: Decimal
    start: date
    end: date
    days: int
    seed: int
    incident: str  # what happened on the incident day, for the tour
    control: dict[str, Any] = field(default_factory=dict)  # entries created, by kind
    seconds: float = 0.0


def generate_demo(
    days: int = 90,
    seed: int = 7,
    *,
    now: datetime | None = None,
    catalog: Catalog | None = None,
    tz: str = "UTC",
) -> pa.Table:
    """The demo events as an Arrow table (usage SCHEMA, sorted by ts), without writing;
    days (and working hours) are those of ``tz``."""
    return _generate(days, seed, now, catalog or load_catalog(), tz)[0]


def _generate(
    days: int, seed: int, now: datetime | None, catalog: Catalog, tz: str
) -> tuple[pa.Table, Any]:
    if not 1 <= days <= 3660:
        raise ConfigError(f"days must be 1-3660, got {days}", field="days")
    g = _gen.history(days, seed, now or clock.now(), catalog, check_timezone("tz", tz))
    return _table.to_table(g, seed, catalog), g


def _incident(day: date) -> str:
    return (
        f"{day}: {world.INCIDENT_USER}'s agent looped on {world.INCIDENT_MODEL} "
        f"(project {world.INCIDENT_PROJECT}), ~10x the usual daily spend"
    )


def _summary(load: DataLoad, loaded: bool, seconds: float) -> DemoSummary:
    d = load.details
    return DemoSummary(
        loaded,
        load.rows,
        load.cost_usd or Decimal(0),
        date.fromisoformat(d["start"]),
        date.fromisoformat(d["end"]),
        int(d["days"]),
        int(d["seed"]),
        _incident(date.fromisoformat(d["incident_day"])),
        _listing(d.get("control", {})),
        seconds,
    )


def _listing(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Manifest -> the names of the entries created, by kind."""
    return {kind: list(entries) for kind, entries in manifest.items()}


def has_demo(home: Path | None = None) -> bool:
    if _store.demo_segments(home):
        return True
    engine = loads.engine_for(home)
    try:
        return loads.get(engine, LOAD_ID) is not None
    finally:
        engine.dispose()


def load_demo(
    home: Path | None = None,
    days: int = 90,
    seed: int = 7,
    *,
    now: datetime | None = None,
    catalog: Catalog | None = None,
    actor: Actor = SYSTEM,
    refresh: bool = False,
) -> DemoSummary:
    """Generate and store the demo (events + control plane) unless it is already there.
    Its days are those of the control plane's ``timezone`` setting (``$COSTLINE_TIMEZONE``
    unless set in the console)."""
    t0 = time.perf_counter()
    catalog = catalog or load_catalog()
    engine = loads.engine_for(home)
    try:
        loads.check_actor(engine, actor)
        with _store.locked(home, "demo.lock"):
            existing = loads.get(engine, LOAD_ID)
            if existing is not None and not refresh and _store.demo_segments(home):
                return _summary(existing, False, time.perf_counter() - t0)
            if existing is not None or _store.demo_segments(home):
                _remove_locked(home, engine, actor)
            with ControlPlane(loads.plane_url(home), model_exists=catalog.has) as plane:
                tz = str(plane.get_setting("timezone") or "UTC")
                table, g = _generate(days, seed, now, catalog, tz)
                made = _control.seed(plane, actor, table, g)
            segment = _store.write(table, home, seed)
            cost = exact_sum(table.column("cost_picousd").to_numpy())
            load = DataLoad(
                LOAD_ID,
                "demo",
                f"Demo data ({days} days, seed {seed})",
                table.num_rows,
                cost,
                actor.username,
                clock.now(),
                {
                    "days": days,
                    "seed": seed,
                    "start": g.start.isoformat(),
                    "end": g.end.isoformat(),
                    "incident_day": g.incident_day.isoformat(),
                    "timezone": g.tz,
                    "segment": segment,
                    "control": made,
                },
            )
            loads.claim(engine, load, actor)
            return _summary(load, True, time.perf_counter() - t0)
    finally:
        engine.dispose()


def remove_demo(home: Path | None = None, *, actor: Actor = SYSTEM) -> int:
    """Delete the demo events and control-plane entries; returns the events removed."""
    engine = loads.engine_for(home)
    try:
        loads.check_actor(engine, actor)
        with _store.locked(home, "demo.lock"):
            return _remove_locked(home, engine, actor)
    finally:
        engine.dispose()


def _remove_locked(home: Path | None, engine: Any, actor: Actor) -> int:
    load = loads.get(engine, LOAD_ID)
    removed = _store.purge(home)
    with ControlPlane(loads.plane_url(home)) as plane:
        d = load.details if load else {}
        span = (
            (date.fromisoformat(d["start"]), date.fromisoformat(d["end"]))
            if "start" in d and "end" in d
            else None
        )
        _control.unseed(plane, actor, d.get("control"), span)
    loads.release(engine, LOAD_ID, actor)
    return removed
