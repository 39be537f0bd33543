"""``costline doctor``: a plain-text health report of ``COSTLINE_HOME``.

The settings part: the environment settings every Router reads when it starts
(``COSTLINE_TIMEZONE``, the provider timeouts, ``COSTLINE_RECONCILE_S``), one line naming the
variable and its bad value when one does not read.

The usage-log part: segments (each checked against its checksum on the way, so a damaged
one is quarantined now), journals waiting for conversion, free space, and what the
quarantine holds (events and dollars when readable), one line per quarantined file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.errors import ConfigError
from core.types import pico_to_usd, usd_places
from core.usage import journal_dir, quarantine_dir, quarantine_summary, scan, segments_dir


def _usd(pico: int | None) -> str:
    return "$?" if pico is None else usd_places(pico_to_usd(pico), 6)


def settings_report() -> tuple[list[str], bool]:
    """A line about the environment settings a Router reads at start, and whether it is a
    problem (the first bad value, naming its variable)."""
    from core.control import env_timezone
    from core.settings import Settings

    try:
        Settings.from_env()
        tz = env_timezone()
    except ConfigError as exc:
        return [f"settings     {exc.message}"], True
    return [f"settings     ok (time zone {tz})"], False


def usage_report(home: Path) -> tuple[list[str], bool]:
    """Lines about the usage log of ``home``, and whether any of them is a problem (a home
    that does not exist is one: a mistyped COSTLINE_HOME read as a healthy, empty log)."""
    if not home.is_dir():
        return [
            f"usage log    {home} does not exist: nothing was ever logged here"
            " (is COSTLINE_HOME right?)"
        ], True
    snapshot = scan(segments_dir(home))
    rows = sum(s.rows for s in snapshot.active)
    try:
        journals = len(os.listdir(journal_dir(home)))
    except FileNotFoundError:
        journals = 0
    free = shutil.disk_usage(home).free
    lines = [
        f"usage log    {len(snapshot.active)} segments, {rows:,} events;"
        f" {journals} journals not yet converted; {free / 2**20:,.0f} MB free",
    ]
    q = quarantine_summary(home)
    if not q.items:
        lines.append("quarantine   empty")
        return lines, False
    unknown = f" (+{q.unknown} files of unknown size)" if q.unknown else ""
    lines.append(
        f"quarantine   {len(q.items)} items in {quarantine_dir(home)}: {q.events:,} events"
        f"{unknown}, {_usd(q.cost_picousd)} known; totals may be low"
    )
    for i in q.items:
        n = "?" if i.rows is None else f"{i.rows:,}"
        lines.append(f"  {i.name}  {i.kind}  {n} events  {_usd(i.cost_picousd)}  {i.reason}")
    return lines, True
