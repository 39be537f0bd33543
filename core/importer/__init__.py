"""CSV import of LLM usage exported by other tools (the console's Import page calls these).

    p = read_preview(data)                       # columns, sample rows, suggested mapping
    r = import_csv(data, p.mapping)              # -> ImportResult(imported, bad_rows, ...)

Fields: timestamp, model, input_tokens, output_tokens (required); cached_tokens,
cache_write_tokens, reasoning_tokens, cost (USD), org, user, project, task, provider.

Token classes. Most exports (OpenAI, LiteLLM, Langfuse, Helicone) count input/prompt tokens
INCLUDING cached ones, and output/completion tokens INCLUDING reasoning ones. Costline's
``Usage`` classes are disjoint, so by default the import stores
``input_tokens = input - cached - cache_write`` and ``output_tokens = output - reasoning``
(a row where the parts exceed the total is bad). Files whose columns are already disjoint
(Anthropic's usage reports, Costline's own export) are imported with
``tokens_inclusive=False``; ``read_preview`` suggests which applies.

Cost. Without a cost column (or with an empty cell) a row is priced from the catalog at the
rate of its UTC day; a model the catalog does not know is imported with ``unpriced=True``
(never as $0) and counted in ``unpriced_models``. A given cost is kept exactly (up to 12
decimals; more is a bad row). Re-importing a file with the same content (SHA-256) adds
nothing. Naive timestamps are UTC. Rows whose mapped cells are all empty are skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.control import SYSTEM, Actor
from core.errors import ConfigError
from core.importer import _loads
from core.importer._csv import Source, dialect, read_bytes, read_columns, sample_rows, suggest
from core.importer._loads import DataLoad, data_loads
from core.importer._pricing import COST_COLUMNS, TOKEN_CLASSES, PricedColumns, price_columns
from core.importer._rows import build_table, exact_sum, parse_rows
from core.pricing import Catalog, load_catalog
from core.types import pico_to_usd
from core.usage import segments_dir, write_segment

__all__ = [
    "COST_COLUMNS",
    "FIELDS",
    "REQUIRED",
    "SYNONYMS",
    "TOKEN_CLASSES",
    "BadRow",
    "DataLoad",
    "ImportResult",
    "PricedColumns",
    "Preview",
    "data_loads",
    "exact_sum",
    "import_csv",
    "price_columns",
    "read_preview",
    "suggest_mapping",
]

REQUIRED: tuple[str, ...] = ("timestamp", "model", "input_tokens", "output_tokens")
SYNONYMS: dict[str, tuple[str, ...]] = {  # normalised header names, best first
    "timestamp": (
        "timestamp",
        "ts",
        "time",
        "datetime",
        "date_time",
        "created_at",
        "created",
        "start_time",
        "request_time",
        "time_stamp",
        "date",
        "day",
        "usage_date",
    ),
    "model": ("model", "model_name", "model_id", "llm_model", "engine", "deployment"),
    "input_tokens": (
        "input_tokens",
        "prompt_tokens",
        "tokens_in",
        "input_token_count",
        "prompt_token_count",
        "n_context_tokens_total",
        "input",
    ),
    "output_tokens": (
        "output_tokens",
        "completion_tokens",
        "tokens_out",
        "output_token_count",
        "completion_token_count",
        "n_generated_tokens_total",
        "output",
    ),
    "cached_tokens": (
        "cached_tokens",
        "cached_input_tokens",
        "cache_read_input_tokens",
        "cache_read_tokens",
        "prompt_cached_tokens",
        "input_cached_tokens",
    ),
    "cache_write_tokens": (
        "cache_write_tokens",
        "cache_creation_input_tokens",
        "cache_creation_tokens",
    ),
    "reasoning_tokens": (
        "reasoning_tokens",
        "completion_reasoning_tokens",
        "output_reasoning_tokens",
    ),
    "cost": (
        "cost",
        "cost_usd",
        "total_cost",
        "total_cost_usd",
        "cost_in_usd",
        "spend",
        "spend_usd",
        "amount",
        "amount_usd",
        "usd",
    ),
    "org": (
        "org",
        "organization",
        "organisation",
        "org_id",
        "org_name",
        "organization_id",
        "team",
        "team_id",
        "tenant",
        "customer",
    ),
    "user": ("user", "user_id", "username", "user_name", "user_email", "email", "end_user"),
    "project": ("project", "project_id", "project_name", "application", "app", "workspace"),
    "task": ("task", "feature", "use_case", "usecase", "agent", "operation", "endpoint"),
    "provider": ("provider", "vendor", "llm_provider", "custom_llm_provider", "api_provider"),
}
FIELDS: tuple[str, ...] = tuple(SYNONYMS)
_EXCLUSIVE_HINT = {"cached_input_tokens", "cache_write_tokens"}  # Costline's own export


@dataclass(frozen=True)
class Preview:
    columns: list[str]
    rows: list[list[str]]  # the first data rows, as text
    mapping: dict[str, str]  # suggested field -> column
    tokens_inclusive: bool  # suggested: input includes cached tokens
    delimiter: str
    missing: list[str]  # required fields the suggestion could not map

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


def suggest_mapping(columns: list[str] | tuple[str, ...]) -> dict[str, str]:
    return suggest(columns, SYNONYMS)


def read_preview(file: Source, *, max_rows: int = 20) -> Preview:
    data, _ = read_bytes(file)
    d = dialect(data)
    mapping = suggest_mapping(d.columns)
    names = {c.lower() for c in d.columns}
    return Preview(
        list(d.columns),
        sample_rows(data, d, max_rows),
        mapping,
        not names >= _EXCLUSIVE_HINT,
        d.delimiter,
        [f for f in REQUIRED if f not in mapping],
    )


@dataclass(frozen=True)
class BadRow:
    line: int  # physical line in the file (the header is line 1)
    reason: str


@dataclass
class ImportResult:
    imported: int
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

    @property
    def message(self) -> str:
        if self.skipped_duplicate_file:
            when = (
                self.previous.created_at.strftime("%Y-%m-%d %H:%M UTC")
                if self.previous
                else "before"
            )
            return f"This file was already imported ({when}); nothing was added."
        usd = self.cost_total
        money = f"${usd:,.2f}" if usd >= 1 or not usd else f"${usd.normalize():f}"
        parts = [
            f"Imported {self.imported:,} rows costing {money}"
            if self.imported
            else "Nothing was imported"
            if self.bad_rows
            else "The file has no data rows"
        ]
        if self.bad_rows:
            parts.append(f"{len(self.bad_rows):,} bad rows skipped")
        if self.unpriced_models:
            rows = sum(self.unpriced_models.values())
            parts.append(f"{rows:,} rows of {len(self.unpriced_models)} unpriced model(s)")
        return "; ".join(parts) + "."


def _check_mapping(mapping: Mapping[str, str], columns: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f, col in mapping.items():
        if f not in FIELDS:
            raise ConfigError(
                f"mapping: unknown field {f!r}; fields are {', '.join(FIELDS)}", field=f
            )
        if not col:
            continue
        if col not in columns:
            raise ConfigError(
                f"mapping: {f} -> column {col!r} is not in the file (columns: "
                f"{', '.join(columns)})",
                field=f,
            )
        out[f] = col
    missing = [f for f in REQUIRED if f not in out]
    if missing:
        raise ConfigError(f"mapping: map a column to {', '.join(missing)}", field=missing[0])
    return out


def import_csv(
    file: Source,
    mapping: Mapping[str, str],
    *,
    home: Path | None = None,
    catalog: Catalog | None = None,
    source: str = "import",
    tokens_inclusive: bool = True,
    actor: Actor = SYSTEM,
    now: datetime | None = None,
) -> ImportResult:
    """Import the good rows of a CSV file into the usage log (one Parquet segment)."""
    t0 = time.perf_counter()
    data, name = read_bytes(file)
    sha = hashlib.sha256(data).hexdigest()
    d = dialect(data)
    fields = _check_mapping(mapping, d.columns)
    catalog = catalog or load_catalog()
    engine = _loads.engine_for(home)
    try:
        _loads.check_actor(engine, actor)
        previous = _loads.get(engine, f"import:{sha}")
        if previous is not None:
            return ImportResult(
                0,
                True,
                [],
                Decimal(0),
                {},
                sha,
                previous=previous,
                mapping=fields,
                seconds=time.perf_counter() - t0,
            )
        table, lines, bad_lines = read_columns(data, d, list(dict.fromkeys(fields.values())))
        rows = parse_rows(
            table, fields, REQUIRED, tokens_inclusive, catalog, now or datetime.now(UTC)
        )
        bad = sorted(
            [BadRow(b.line, b.reason) for b in bad_lines]
            + [BadRow(int(lines[i]), "; ".join(r)) for i, r in rows.reasons.items()],
            key=lambda b: b.line,
        )
        keep = rows.keep
        result = ImportResult(
            int(keep.sum()),
            False,
            bad,
            pico_to_usd(rows.cost_total),
            rows.unpriced,
            sha,
            table.num_rows + len(bad_lines),
            int(rows.blank.sum()),
            mapping=fields,
        )
        if result.imported:
            ids = pc.binary_join_element_wise(
                f"imp-{sha[:12]}-", pa.array(lines[keep]).cast(pa.string()), ""
            )
            events = build_table(rows.columns, ids, source, json.dumps({"import": sha[:12]}))
            load = DataLoad(
                f"import:{sha}",
                "import",
                name,
                result.imported,
                rows.cost_total,
                actor.username,
                datetime.now(UTC),
                {
                    "sha256": sha,
                    "mapping": fields,
                    "bad_rows": len(bad),
                    "unpriced_models": rows.unpriced,
                    "source": source,
                },
            )
            if not _loads.claim(engine, load, actor):  # another process got there first
                return ImportResult(
                    0,
                    True,
                    [],
                    Decimal(0),
                    {},
                    sha,
                    mapping=fields,
                    previous=_loads.get(engine, load.id),
                )
            try:
                write_segment(_by_time(events), segments_dir(home), f"import-{sha[:16]}")
            except BaseException:
                _loads.release(engine, load.id, actor)
                raise
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        engine.dispose()


def _by_time(table: pa.Table) -> pa.Table:
    """Sorted by ts (row groups then prune well on time filters); most files already are."""
    us = table.column("ts").cast(pa.int64()).to_numpy()
    if len(us) < 2 or bool((us[1:] >= us[:-1]).all()):
        return table
    return table.take(pa.array(np.argsort(us, kind="stable")))
