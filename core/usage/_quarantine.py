"""Quarantine: usage data that failed a check is moved out of the data set, never deleted.

``$COSTLINE_HOME/quarantine/`` (0700, files 0600) holds the bad files (a segment whose
checksum or footer is wrong, a journal that cannot be converted) and the bad records of
journals (torn, failed checksum, a value of the wrong type), each with
``<name>.reason.json``: why, where it came from, and what it held (rows, cost in picodollars
when readable). Readers, compaction and exports never see it; ``summary()`` is what
``costline doctor`` and the console banner show.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from core import clock
from core.private import private_dir, private_open
from core.settings import costline_home
from core.usage._frame import BadRecord, payload_of
from core.usage._schema import COLUMNS

log = logging.getLogger("costline.usage")

REASON_SUFFIX = ".reason.json"
_COST = COLUMNS.index("cost_picousd")


def quarantine_dir(home: Path | None = None) -> Path:
    return (home if home is not None else costline_home()) / "quarantine"


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, 0600 (quarantined records may hold prompts)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = private_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_reason(qdir: Path, name: str, info: dict[str, Any]) -> None:
    _write_private(qdir / (name + REASON_SUFFIX), orjson.dumps(info, option=orjson.OPT_INDENT_2))


def quarantine_file(
    home: Path | None,
    path: Path,
    reason: str,
    *,
    kind: str,
    rows: int | None = None,
    cost_picousd: int | None = None,
) -> Path | None:
    """Move ``path`` into the quarantine with its reason; None if it is already gone
    (another process moved it first)."""
    qdir = private_dir(quarantine_dir(home))
    name = path.name
    if (qdir / name).exists():
        name = f"{path.stem}.{secrets.token_hex(4)}{path.suffix}"
    info = {
        "kind": kind,
        "source": str(path),
        "reason": reason,
        "rows": rows,
        "cost_picousd": cost_picousd,
        "quarantined_at": clock.now().isoformat(),
    }
    _write_reason(qdir, name, info)
    try:
        os.rename(path, qdir / name)
    except OSError as exc:
        (qdir / (name + REASON_SUFFIX)).unlink(missing_ok=True)
        if isinstance(exc, FileNotFoundError):
            return None
        raise
    log.error("usage %s %s quarantined (%s): %s", kind, path.name, reason, qdir / name)
    return qdir / name


def record_cost(raw: bytes) -> int | None:
    """The cost a journal record held, if its JSON is readable and the cost an integer."""
    try:
        row = orjson.loads(payload_of(raw))
        cost = row[_COST]
    except (orjson.JSONDecodeError, IndexError, TypeError, KeyError):
        return None
    return cost if isinstance(cost, int) and not isinstance(cost, bool) else None


def quarantine_records(home: Path | None, journal: str, bad: Sequence[BadRecord]) -> Path | None:
    """Write a journal's bad records (as found, one per line) to the quarantine. The file
    name derives from the journal's, so converting the same journal again overwrites it."""
    if not bad:
        return None
    qdir = private_dir(quarantine_dir(home))
    name = f"{journal}.records"
    costs = [record_cost(b.raw) for b in bad]
    known = [c for c in costs if c is not None]
    reasons: dict[str, int] = {}
    for b in bad:
        reasons[b.reason] = reasons.get(b.reason, 0) + 1
    info = {
        "kind": "journal records",
        "source": journal,
        "reason": "; ".join(f"{r} x{n}" for r, n in sorted(reasons.items())),
        "lines": [b.line + 1 for b in bad][:1000],
        "rows": len(bad),
        "cost_picousd": sum(known) if known else None,
        "cost_unreadable_rows": len(costs) - len(known),
        "quarantined_at": clock.now().isoformat(),
    }
    _write_private(qdir / name, b"".join(b.raw + b"\n" for b in bad))
    _write_reason(qdir, name, info)
    log.error(
        "usage journal %s: %d records quarantined (%s) in %s",
        journal,
        len(bad),
        info["reason"],
        qdir / name,
    )
    return qdir / name


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    name: str
    kind: str
    reason: str
    source: str
    rows: int | None  # None: unknown (the file is unreadable)
    cost_picousd: int | None  # None: unknown
    quarantined_at: str


@dataclass(frozen=True, slots=True)
class QuarantineSummary:
    items: tuple[QuarantineItem, ...]

    @property
    def events(self) -> int:
        """Events known to be held (files of unknown size count as 0)."""
        return sum(i.rows or 0 for i in self.items)

    @property
    def unknown(self) -> int:
        """Files whose number of events cannot be read."""
        return sum(1 for i in self.items if i.rows is None)

    @property
    def cost_picousd(self) -> int:
        return sum(i.cost_picousd or 0 for i in self.items)

    def banner(self) -> str | None:
        """One line for admins, or None when nothing is quarantined."""
        if not self.items:
            return None
        n = f"{self.events:,}" + ("+" if self.unknown else "")
        return f"{n} events in quarantine — totals may be low (see `costline doctor`)"


def summary(home: Path | None = None) -> QuarantineSummary:
    qdir = quarantine_dir(home)
    try:
        names = sorted(os.listdir(qdir))
    except FileNotFoundError:
        return QuarantineSummary(())
    items = []
    for n in names:
        if not n.endswith(REASON_SUFFIX) or n.startswith("."):
            continue
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            info = orjson.loads((qdir / n).read_bytes())
            items.append(
                QuarantineItem(
                    name=n.removesuffix(REASON_SUFFIX),
                    kind=str(info.get("kind", "")),
                    reason=str(info.get("reason", "")),
                    source=str(info.get("source", "")),
                    rows=info.get("rows"),
                    cost_picousd=info.get("cost_picousd"),
                    quarantined_at=str(info.get("quarantined_at", "")),
                )
            )
    return QuarantineSummary(tuple(items))
