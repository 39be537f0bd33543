"""Writes to the usage log (engineer+; core checks the role): a CSV import, demo data."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from console.queries.usage import home
from core import demo
from core.control import Actor
from core.demo import DemoSummary
from core.importer import ImportResult, import_csv


def import_usage(
    actor: Actor,
    name: str,
    content: bytes,
    mapping: Mapping[str, str],
    tokens_inclusive: bool,
    answers: Mapping[str, str | None] | None = None,
    *,
    skip_bad_rows: bool = False,
    replace: tuple[str, datetime, datetime] | None = None,
) -> ImportResult:
    """Import a CSV into the usage log (engineer+; core checks the role). ``answers``: the
    decimal mark and date order the user chose; ``skip_bad_rows`` only after the user saw
    them listed and confirmed; ``replace`` is audited by core."""
    file = io.BytesIO(content)
    file.name = name
    given = dict(answers or {})
    return import_csv(
        file,
        dict(mapping),
        home=Path(home()),
        tokens_inclusive=tokens_inclusive,
        actor=actor,
        decimal=given.get("decimal"),
        date_order=given.get("date_order"),
        skip_bad_rows=skip_bad_rows,
        replace=replace,
    )


def load_demo(actor: Actor) -> DemoSummary:
    return demo.load_demo(Path(home()), actor=actor)


def remove_demo(actor: Actor) -> int:
    return demo.remove_demo(Path(home()), actor=actor)
