"""What an import (or its dry run) found and did, and the sentence that says so."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from core.importer._loads import DataLoad
from core.types import usd_places


@dataclass(frozen=True)
class BadRow:
    line: int  # physical line in the file (the header is line 1)
    reason: str


def money(usd: Decimal) -> str:
    """'$1.01' (to the cent, half a cent up as the console's tables round), under $1 exact."""
    if abs(usd) >= 1 or not usd:
        return usd_places(usd)
    return f"{'-' if usd < 0 else ''}${abs(usd).normalize():f}"


@dataclass
class ImportResult:
    imported: int  # rows written (a dry run: rows that would be)
    skipped_duplicate_file: bool
    bad_rows: list[BadRow]
    cost_total: Decimal  # USD, exact; unpriced rows count 0
    unpriced_models: dict[str, int]
    sha256: str = ""
    rows_read: int = 0
    blank_rows: int = 0
    seconds: float = 0.0
    previous: DataLoad | None = None  # the earlier import of the same file
    mapping: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0  # rows whose key the log already holds (or an earlier row had)
    written: bool = False
    dry_run: bool = False
    needs_confirmation: bool = False  # bad rows, and skipping them was not confirmed
    first_ts: datetime | None = None  # the imported rows' time range (UTC)
    last_ts: datetime | None = None
    over_context_rows: int = 0  # rows flagged over_context_window
    replaced_rows: int = 0  # rows of the replaced range removed
    replaced_cost: Decimal = Decimal(0)
    replaced: tuple[str, datetime, datetime] | None = None  # (source, start, end)

    @property
    def date_range(self) -> str:
        if self.first_ts is None or self.last_ts is None:
            return ""
        a, b = self.first_ts.date().isoformat(), self.last_ts.date().isoformat()
        return a if a == b else f"{a} to {b}"

    @property
    def message(self) -> str:
        dups = f"{self.duplicates:,} duplicates skipped"
        if self.skipped_duplicate_file:
            when = (
                self.previous.created_at.strftime("%Y-%m-%d %H:%M UTC")
                if self.previous
                else "before"
            )
            return f"This file was already imported ({when}); nothing was added ({dups})."
        bad = len(self.bad_rows)
        if self.needs_confirmation:  # every row of the file counted, duplicates too
            total = self.imported + bad + self.duplicates
            return (
                f"{bad:,} of {total:,} rows have problems (listed); nothing was imported. "
                f"Fix the file, or import {self.imported:,} rows and skip {bad:,}"
                + (f" ({dups})." if self.duplicates else ".")
            )
        if not self.imported:
            if self.duplicates:
                return f"Nothing new: every row was imported before ({dups})."
            return "Nothing was imported: no good rows." if bad else "The file has no data rows."
        verb = "Would import" if self.dry_run else "Imported"
        span = f" ({self.date_range})" if self.date_range else ""
        parts = [f"{verb} {self.imported:,} rows{span} costing {money(self.cost_total)}"]
        if bad:
            parts.append(f"{bad:,} bad rows skipped")
        if self.duplicates:
            parts.append(dups)
        if self.replaced is not None:
            src, a, b = self.replaced
            parts.append(
                f"replaced {self.replaced_rows:,} rows ({money(self.replaced_cost)}) of source"
                f" {src!r} from {a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M} UTC"
            )
        if self.unpriced_models:
            rows = sum(self.unpriced_models.values())
            parts.append(f"{rows:,} rows of {len(self.unpriced_models)} unpriced model(s)")
        if self.over_context_rows:
            parts.append(f"{self.over_context_rows:,} rows over their model's context window")
        return "; ".join(parts) + "."
