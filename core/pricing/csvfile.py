"""Read the price catalog CSV (data/prices.csv) into PriceRows, naming file:line:column on error.

Empty cells: cached_input / cache_write = same as input; cache_write_1h = same as cache_write;
reasoning = same as output; batch_input / batch_output = the provider has no batch API (give
both or neither). The ``cache_write_1h`` column may be left out of older files.
Rows are keyed by (provider, model, effective_from, above_prompt_tokens): one model may be
listed under several providers; the provider listed first owns the bare name (see Catalog).
Lines whose first cell starts with ``#`` are comments.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from core.errors import ConfigError
from core.pricing.rows import PriceRow, Rate, parse_usd_per_mtok

__all__ = ["COLUMNS", "read_prices_csv"]

COLUMNS: tuple[str, ...] = (
    "model",
    "provider",
    "effective_from",
    "above_prompt_tokens",
    "context_window",
    "max_output_tokens",
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "output",
    "reasoning",
    "batch_input",
    "batch_output",
    "quality",
    "aliases",
    "source",
)
OPTIONAL_COLUMNS = frozenset({"cache_write_1h"})


class _Cells:
    """One CSV row with error messages that point at file, line and column."""

    def __init__(self, path: Path, line: int, header: list[str], cells: list[str]):
        self.path, self.line = path, line
        self.pos = {name: i for i, name in enumerate(header)}
        self.cells = cells

    def fail(self, column: str, reason: str) -> ConfigError:
        where = f"{self.path}: line {self.line}, column {self.pos[column] + 1} ({column})"
        return ConfigError(f"{where}: {reason}", field=column)

    def text(self, column: str, *, required: bool = True) -> str:
        i = self.pos.get(column)
        if i is None:  # an optional column the file leaves out
            return ""
        v = self.cells[i].strip() if i < len(self.cells) else ""
        if required and not v:
            raise self.fail(column, "is empty")
        return v

    def integer(self, column: str, lo: int, hi: int | None = None) -> int:
        v = self.text(column)
        try:
            n = int(v)
        except ValueError:
            raise self.fail(column, f"{v!r} is not an integer") from None
        if n < lo or (hi is not None and n > hi):
            raise self.fail(column, f"{n} is out of range")
        return n

    def rate(self, column: str, default: Rate | None = None) -> Rate | None:
        v = self.text(column, required=default is None and column in ("input", "output"))
        if not v:
            return default
        try:
            return parse_usd_per_mtok(v)
        except ValueError as exc:
            raise self.fail(column, str(exc)) from None

    def day(self, column: str) -> date:
        v = self.text(column)
        try:
            if len(v) != 10:
                raise ValueError
            return date.fromisoformat(v)
        except ValueError:
            raise self.fail(column, f"{v!r} is not a YYYY-MM-DD date") from None


def _row(c: _Cells) -> PriceRow:
    inp = c.rate("input")
    out = c.rate("output")
    assert inp is not None and out is not None
    write = c.rate("cache_write", inp)
    batch_in, batch_out = c.rate("batch_input"), c.rate("batch_output")
    if (batch_in is None) != (batch_out is None):
        raise c.fail(
            "batch_output" if batch_out is None else "batch_input",
            "give both batch_input and batch_output, or neither",
        )
    return PriceRow(
        model=c.text("model"),
        provider=c.text("provider").lower(),
        effective_from=c.day("effective_from"),
        above_prompt_tokens=c.integer("above_prompt_tokens", 0),
        context_window=c.integer("context_window", 1),
        max_output_tokens=c.integer("max_output_tokens", 1),
        input=inp,
        cached_input=c.rate("cached_input", inp) or 0,
        cache_write=write or 0,
        cache_write_1h=c.rate("cache_write_1h", write),
        output=out,
        reasoning=c.rate("reasoning", out) or 0,
        batch_input=batch_in,
        batch_output=batch_out,
        quality=c.integer("quality", 0, 100),
        aliases=tuple(a.strip() for a in c.text("aliases", required=False).split(";") if a.strip()),
        source=c.text("source"),
    )


def read_prices_csv(path: Path) -> list[PriceRow]:
    """Parse and validate every row; the first problem raises ConfigError (file, line, column)."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read price catalog {path}: {exc}", field=str(path)) from exc
    rows: list[PriceRow] = []
    seen: dict[tuple[str, str, date, int], int] = {}
    with handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        missing = [col for col in COLUMNS if col not in header and col not in OPTIONAL_COLUMNS]
        extra = [col for col in header if col not in COLUMNS]
        if missing or extra:
            raise ConfigError(
                f"{path}: line 1: header missing {missing} / unknown {extra}", field="header"
            )
        for cells in reader:
            if not any(cell.strip() for cell in cells) or cells[0].lstrip().startswith("#"):
                continue
            c = _Cells(path, reader.line_num, header, cells)
            if len(cells) != len(header):
                raise c.fail("model", f"has {len(cells)} cells, expected {len(header)}")
            row = _row(c)
            key = (row.provider, row.model.lower(), row.effective_from, row.above_prompt_tokens)
            if key in seen:
                raise c.fail("model", f"duplicates the row on line {seen[key]}")
            seen[key] = c.line
            rows.append(row)
    bases = {k[:3] for k in seen if k[3] == 0}
    for k, line in seen.items():
        if k[:3] not in bases:
            raise ConfigError(
                f"{path}: line {line}: tier row for {k[0]}/{k[1]} on {k[2]} has no base row"
                " (above 0)",
                field="above_prompt_tokens",
            )
    return rows
