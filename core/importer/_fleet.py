"""Imports into a fleet's usage log: one at a time across hosts, each one's rows in the
bucket before the next checks its rows against the log.

An import checks each row against the log it reads (the duplicate check) and then writes
its new rows; two imports of overlapping files must not both find the other's rows absent.
On one host the log's ``import.lock`` (a file lock) orders them. In a fleet the hosts share
the control plane (where loads are claimed) and, with ``COSTLINE_EVENTS_URL``, the bucket
that holds the log, so the order must hold across hosts too:

- ``lock(home)``: the fleet's import lock, ``fleet_lock`` (a PostgreSQL advisory lock when the
  control plane is on PostgreSQL, else a Redis key, else a file lock in the home), held
  from the duplicate check until the rows are written, shipped and their load marked. A load
  left claimed but unwritten while it is free was claimed by a process that died.
- ``ship(home)``: the import's segment is uploaded before the lock is released; its load
  names the segment and the host. When the bucket fails then, the rows wait in this host's
  outbox (nothing is lost).
- ``check_log(engine, home)`` (under the lock, with a bucket, before the duplicate check):
  every recorded import's segment is in what the check reads - the bucket as this host
  lists it (synced first; its last copy while the bucket is away) and this host's outbox -
  else ``UsageLogUnavailable`` naming that import and host, and nothing is written. So a
  host imports while the bucket is away as long as it has seen every earlier import.
"""

from __future__ import annotations

import json
import socket
from contextlib import AbstractContextManager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.control import tables as s
from core.errors import UsageLogUnavailable
from core.importer import _loads
from core.usage import (
    SUFFIX,
    BucketConfig,
    fleet_lock,
    mirror_for,
    scan,
    segments_dir,
    shipper_for,
)

WAIT_S = 600.0  # how long an import waits for another host's import to finish
SHIP_S = 60.0  # how long an import tries to upload its segment before leaving it queued


def lock(home: Path | None) -> AbstractContextManager[None]:
    """The fleet's import lock for this usage log (the bucket's, or this home's)."""
    cfg = BucketConfig.from_env()
    name = "costline.import:" + (cfg.url() if cfg is not None else "local")
    return fleet_lock(name, home, WAIT_S, "an import")


def where(segment: str) -> dict[str, str]:
    """What an import's load records of where its rows are: its segment and this host."""
    return {"segment": segment + SUFFIX, "host": socket.gethostname()}


def check_log(engine: Engine, home: Path) -> bool:
    """With a bucket: every earlier import's rows are in what the duplicate check reads, the
    bucket's segments as this host last listed them (synced now when it answers) and this
    host's outbox; else ``UsageLogUnavailable`` naming the first import that is not.
    Whether the bucket answered (True without one)."""
    cfg = BucketConfig.from_env()
    mirror = mirror_for(home)
    if cfg is None or mirror is None:
        return True
    answered = mirror.sync(force=True)
    loads = recorded(engine)
    if not loads:
        return answered
    listed = scan(mirror.dir)
    outbox = segments_dir(home)
    for load in loads:
        seg = str(load.details["segment"])
        if listed.has(seg) or (outbox / seg).exists():
            continue
        listed = scan(mirror.dir)  # shipped from this host's outbox meanwhile
        if listed.has(seg):
            continue
        where = (
            f"they wait in the outbox of host {load.details.get('host')!r} ({seg}): start"
            " Costline there (its COSTLINE_HOME) to ship them"
            if answered
            else f"the bucket did not answer and this host has not seen them yet ({seg})"
        )
        raise UsageLogUnavailable(
            f"the {load.rows} rows of import {load.name!r} (by {load.actor} at"
            f" {load.created_at:%Y-%m-%d %H:%M}) are not in the usage bucket {cfg.url()} as"
            f" this host reads it: {where}. This import cannot check its rows against"
            " them, so nothing was imported; try again once they are there"
        )
    return answered


def recorded(engine: Engine) -> list[_loads.DataLoad]:
    """Imports whose load names the segment that holds their rows (with a bucket)."""
    flag = json.dumps({"segment": ""})[1:-3]  # '"segment": ', as details are dumped
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(s.data_loads).where(
                s.data_loads.c.kind == "import", s.data_loads.c.details_json.contains(flag)
            )
        ).mappings()
        found = [_loads.from_row(r) for r in rows]
    return [f for f in found if f.details.get("segment") and _loads.written(f)]


def ship(home: Path, answered: bool) -> bool:
    """With a bucket: upload this host's outbox now (the import's segment with it), for up
    to ``SHIP_S`` when the bucket ``answered`` the import's listing (else once); whether it
    all reached the bucket. Without one: True."""
    shipper = shipper_for(home)
    if shipper is None:
        return True
    if answered:
        return shipper.drain(SHIP_S)
    shipper.poke()  # the shipper's thread retries with its back-off while the process lives
    return False
