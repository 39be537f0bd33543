"""CSV import of LLM usage exported by other tools (the console's Import page calls these).
A Parquet file is read as the CSV of its table (_parquet.py).

    p = read_preview(data)                       # columns, sample rows, suggested mapping,
                                                 # questions (decimal mark, date order)
    check = import_csv(data, p.mapping, dry_run=True)   # every row validated, nothing written
    r = import_csv(data, p.mapping, skip_bad_rows=True) # -> ImportResult(imported, ...)

Fields: timestamp, model, input_tokens, output_tokens (required); cached_tokens,
cache_write_tokens, reasoning_tokens, cost (USD), org, user, project, task, provider,
request_id; and the rest of an event (EVENT_FIELDS: status, error_type, error_message, tags,
app, requested_model, attempt, usage_estimated, saved (USD), cost_input ... cost_reasoning
(USD per token class, for rows with a given cost), cache_hit, ai_called, degraded,
route_reason, criticality, latency_ms, ttft_ms, metadata, key, cache_write_1h_tokens,
unpriced; and refund, not stored: the rows whose costs may be negative), suggested only for
Costline's own export and never part of a row's key.

Nothing is written unless every row is good, or the caller confirms skipping the bad ones
(``skip_bad_rows=True``: "import 998 rows, skip 2"); bad rows are listed with their line
numbers either way. A number with a comma or a date like 05/11/2023 is never guessed: the
preview asks (``Preview.questions``) and ``import_csv`` needs the answer (``decimal``,
``date_order``).

Row-level idempotency. Each row has a key (the mapped request id, else a hash of its parsed
values, see _keys.py) that becomes the event's request_id; rows whose key the usage log
already holds are skipped and counted ("N duplicates skipped"), so a corrected re-import, an
overlapping file or Costline's own export imported back adds only the new rows. Re-importing
a byte-identical file (same SHA-256) is recognised at once. ``replace=(source, start, end)``
removes that source's rows in [start, end) and imports the file's rows in their place
(audited), for a corrected re-export of rows that changed.

Token classes. Most exports (OpenAI, LiteLLM, Langfuse, Helicone) count input/prompt tokens
INCLUDING cached ones, and output/completion tokens INCLUDING reasoning ones. Costline's
``Usage`` classes are disjoint, so by default the import stores
``input_tokens = input - cached - cache_write`` and ``output_tokens = output - reasoning``
(a row where the parts exceed the total is bad). Files whose columns are already disjoint
(Anthropic's usage reports, Costline's own export) are imported with
``tokens_inclusive=False``; ``read_preview`` suggests which applies.

Cost. Without a cost column (or with an empty cell) a row is priced from the catalog at the
rate of its UTC day, as ``provider/model`` when the row names its provider; a model the
catalog does not know, or a row the file marks ``unpriced`` (Costline's export: a call
logged unpriced), is imported with ``unpriced=True`` (never as $0) and counted in
``unpriced_models``; a prompt over the model's context window is flagged
``over_context_window``. A given cost is kept exactly (up to 12 decimals; more is a bad
row; a negative one only on a row the file marks ``refund``, as Costline's export marks a
refund or credit), but a $0 for an unknown model on a row with tokens is unpriced (LiteLLM
logs 0 for a call it could not price). Naive timestamps are UTC. Rows whose mapped cells are all
empty are skipped. Model and provider are stored under the catalog's names (providers
lower-case) where the catalog knows the model; keys keep the names as written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Engine

from core import clock
from core.control import SYSTEM, Actor
from core.errors import ConfigError
from core.importer import _csv, _fleet, _formats, _loads, _replace, _rows
from core.importer._csv import Source
from core.importer._fields import EVENT_FIELDS, FIELDS, REQUIRED, SYNONYMS, suggest_mapping
from core.importer._formats import DATE_ORDERS, DECIMALS, Question
from core.importer._loads import DataLoad, data_loads
from core.importer._pricing import COST_COLUMNS, TOKEN_CLASSES, PricedColumns, price_columns
from core.importer._result import BadRow, ImportResult
from core.importer._rows import exact_sum
from core.pricing import Catalog, load_catalog
from core.settings import costline_home
from core.types import pico_to_usd
from core.usage import BucketConfig, Reader, remove_import_temps, segments_dir, write_segment

loads = _loads  # data-load bookkeeping in the control plane (the demo uses it)
log = logging.getLogger(__name__)

__all__ = [
    "COST_COLUMNS",
    "DATE_ORDERS",
    "DECIMALS",
    "EVENT_FIELDS",
    "FIELDS",
    "REQUIRED",
    "SYNONYMS",
    "TOKEN_CLASSES",
    "BadRow",
    "DataLoad",
    "ImportResult",
    "PricedColumns",
    "Preview",
    "Question",
    "data_loads",
    "exact_sum",
    "file_questions",
    "import_csv",
    "parse_sample",
    "price_columns",
    "read_preview",
    "replace_preview",
    "suggest_mapping",
    "loads",
]

_EXCLUSIVE_HINT = {"cached_input_tokens", "cache_write_tokens"}  # Costline's own export


@dataclass(frozen=True)
class Preview:
    columns: list[str]
    rows: list[list[str]]  # the first data rows, as text
    mapping: dict[str, str]  # suggested field -> column
    tokens_inclusive: bool  # suggested: input includes cached tokens
    delimiter: str
    missing: list[str]  # required fields the suggestion could not map
    questions: list[Question] = field(default_factory=list)  # for the suggested mapping

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


def read_preview(file: Source, *, max_rows: int = 20) -> Preview:
    """Columns, the first rows, the suggested mapping and the questions its columns raise
    (asked over the whole file, so a comma on line 9,000 is not missed)."""
    data, _ = _csv.read_bytes(file)
    d = _csv.dialect(data)
    mapping = suggest_mapping(d.columns)
    names = {c.lower() for c in d.columns}
    return Preview(
        list(d.columns),
        _csv.sample_rows(data, d, max_rows),
        mapping,
        not names >= _EXCLUSIVE_HINT,
        d.delimiter,
        [f for f in REQUIRED if f not in mapping],
        file_questions(data, mapping),
    )


def file_questions(file: Source, mapping: Mapping[str, str]) -> list[Question]:
    """The decimal-mark and date-order questions the mapped columns of the file raise."""
    data, _ = _csv.read_bytes(file)
    d = _csv.dialect(data)
    cols = {f: c for f, c in mapping.items() if c in d.columns}
    if not cols:
        return []
    table, _, _ = _csv.read_columns(data, d, list(dict.fromkeys(cols.values())))
    return _questions(table, cols)


def parse_sample(
    file: Source,
    mapping: Mapping[str, str],
    *,
    tokens_inclusive: bool = True,
    decimal: str | None = None,
    date_order: str | None = None,
    catalog: Catalog | None = None,
    rows: int = 20,
) -> pd.DataFrame:
    """The first ``rows`` data rows as they would be imported (parsed timestamp, tokens,
    cost in USD, or the row's problem), for the mapping step's preview."""
    data, _ = _csv.read_bytes(file)
    d = _csv.dialect(data)
    fields = _check_mapping(mapping, d.columns)
    head = _csv.head(data, rows + 1)
    table, lines, bad_lines = _csv.read_columns(head, d, list(dict.fromkeys(fields.values())))
    parsed = _rows.parse_rows(
        table,
        fields,
        REQUIRED,
        tokens_inclusive,
        catalog or load_catalog(),
        clock.now(),
        decimal=decimal,
        date_order=date_order,
    )
    c = parsed.columns
    kept = pd.DataFrame(
        {
            "line": lines[parsed.keep],
            "timestamp": c["ts"].to_pandas(),
            "model": c["model"].to_pylist(),
            **{t: c[t].to_pylist() for t in TOKEN_CLASSES},
            "cost_usd": [pico_to_usd(v) for v in c["cost_picousd"].to_pylist()],
            "problem": "",
        }
    )
    bad = pd.DataFrame(
        [{"line": int(lines[i]), "problem": "; ".join(r)} for i, r in parsed.reasons.items()]
        + [{"line": b.line, "problem": b.reason} for b in bad_lines],
        columns=["line", "problem"],
    )
    out = pd.concat([kept, bad], ignore_index=True) if len(bad) else kept
    return out.sort_values("line", kind="stable").reset_index(drop=True)


def replace_preview(
    source: str, start: datetime, end: datetime, home: Path | None = None
) -> tuple[int, Decimal]:
    """(rows, USD) of ``source`` in [start, end) that a replace would remove now."""
    _check_replace_local()
    rows, cost = _replace.count_rows(home, source, start, end)
    return rows, pico_to_usd(cost)


def _check_replace_local() -> None:
    """A replace rewrites the segments of ``events/segments/``; with the usage log in a
    bucket that folder is only the outbox, so the rows already uploaded would stay and the
    file's rows be added to them: refused before anything is read or written."""
    if BucketConfig.from_env() is not None:
        raise ConfigError(
            "replace is not available with the usage log in a bucket (COSTLINE_EVENTS_URL):"
            " the rows already uploaded would stay; import the file without replace, or"
            " correct the source's rows in the bucket first",
            field="replace",
        )


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
    decimal: str | None = None,
    date_order: str | None = None,
    skip_bad_rows: bool = False,
    dry_run: bool = False,
    replace: tuple[str, datetime, datetime] | None = None,
) -> ImportResult:
    """Validate every row, then (unless ``dry_run``, and only if no row is bad or
    ``skip_bad_rows``) write the new rows into the usage log as one Parquet segment.
    ``replace=(source, start, end)`` first marks that source's rows in [start, end) for
    removal: they are removed once the file's rows are written (audited). The file's rows
    take their place under that source (``source`` left as "import" or the same), so the
    next corrected re-export replaces them in turn."""
    t0 = time.perf_counter()
    if replace is not None:
        _check_replace_local()
        if replace[1].tzinfo is None or replace[2].tzinfo is None:
            raise ConfigError("replace: give an aware start and end", field="replace")
        # checked before anything is written: an empty range replaces no row, and the
        # file's rows would be added beside the old ones
        if not replace[1] < replace[2]:
            raise ConfigError(
                f"replace: the range must start before it ends (from {replace[1].isoformat()}"
                f" to {replace[2].isoformat()} holds no time, so no row would be replaced)",
                field="replace",
            )
        if source not in ("import", replace[0]):
            raise ConfigError(
                f"source {source!r} and replace {replace[0]!r} name different sources: the"
                " file's rows take the replaced rows' place, under the replaced source",
                field="source",
            )
        source = replace[0]
    data, name = _csv.read_bytes(file)
    sha = hashlib.sha256(data).hexdigest()
    d = _csv.dialect(data)
    fields = _check_mapping(mapping, d.columns)
    _check_answers([], decimal, date_order)
    catalog = catalog or load_catalog()
    engine = _loads.engine_for(home)
    try:
        _loads.check_actor(engine, actor)
        load_id = f"import:{sha}" if replace is None else f"import:{sha}@{clock.now().isoformat()}"
        previous = _loads.get(engine, f"import:{sha}") if replace is None else None
        if previous is not None and _loads.written(previous):
            return _same_file(previous, sha, fields, t0)
        table, lines, bad_lines = _csv.read_columns(data, d, list(dict.fromkeys(fields.values())))
        _check_answers(_questions(table, fields), decimal, date_order)
        parsed = _rows.parse_rows(
            table,
            fields,
            REQUIRED,
            tokens_inclusive,
            catalog,
            now or clock.now(),
            decimal=decimal,
            date_order=date_order,
        )
        bad = sorted(
            [BadRow(b.line, b.reason) for b in bad_lines]
            + [BadRow(int(lines[i]), "; ".join(r)) for i, r in parsed.reasons.items()],
            key=lambda b: b.line,
        )
        answered = True  # the bucket (if any) answered the import's listing
        # a real import checks for duplicates and writes under the log's import lock, this
        # host's and the fleet's (_fleet.py: its rows in the bucket before the lock is free)
        with nullcontext() if dry_run else _import_locks(home):
            if not dry_run:  # no import is writing: a temp file of one is left by a kill
                remove_import_temps(segments_dir(home), None)
                answered = _fleet.check_log(engine, home or costline_home())
            if not dry_run and replace is None:
                previous = _loads.get(engine, f"import:{sha}")
                if previous is not None and _loads.written(previous):  # done meanwhile
                    return _same_file(previous, sha, fields, t0)
            with Reader(home, outbox=True) as reader:  # what this host has not shipped yet
                parsed, pruned = _in_pruned_hours(parsed, reader, lines)
                dup = _duplicates(parsed, reader, replace)
            if pruned:
                bad = sorted(bad + pruned, key=lambda b: b.line)
            rows = parsed.drop(dup)
            result = _result(
                rows, bad, sha, table.num_rows + len(bad_lines), fields, int(dup.sum())
            )
            result.dry_run = dry_run
            result.needs_confirmation = bool(bad) and not skip_bad_rows
            if dry_run or result.needs_confirmation or not result.imported:
                if previous is not None and not dry_run and not result.needs_confirmation:
                    _loads.mark_written(engine, previous)  # its rows were written, then it died
                result.seconds = time.perf_counter() - t0  # a replace with no new rows: no-op
                return result
            if previous is not None:  # claimed by a process that died before writing its rows
                _loads.release(engine, previous.id, actor)
            meta = json.dumps({"import": sha[:12]} if replace is None else {"import": load_id[7:]})
            # a name of its own: a replace of the same file must not overwrite (and so drop)
            # the segment its first import wrote
            segment = f"import-{sha[:16]}-{secrets.token_hex(4)}"
            bucket = BucketConfig.from_env() is not None
            where = _fleet.where(segment) if bucket else {}
            events = _rows.build_table(rows.columns, rows.ids, source, meta)
            load = DataLoad(
                load_id,
                "import",
                name,
                result.imported,
                rows.cost_total,
                actor.username,
                clock.now(),
                {
                    "sha256": sha,
                    "mapping": fields,
                    "bad_rows": len(bad),
                    "duplicates": result.duplicates,
                    "row_keys": "request_id" if rows.given_ids else "row hash",
                    "unpriced_models": rows.unpriced,
                    "source": source,
                    "decimal": decimal,
                    "date_order": date_order,
                    "written": False,
                    **where,
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
                write_segment(_by_time(events), segments_dir(home), segment)
            except BaseException:
                _loads.release(engine, load.id, actor)
                raise
            _loads.mark_written(engine, load)
            # shipped before the lock is free, so the next import on any host reads its rows
            if bucket and not _fleet.ship(home or costline_home(), answered):
                log.warning(
                    "import %s: %d rows wait in this host's outbox for the usage bucket;"
                    " imports on other hosts are refused until they are there",
                    name,
                    result.imported,
                )
            result.written = True
            if replace is not None:
                _replace_rows(engine, result, replace, load_id, actor, home, meta)
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        engine.dispose()


@contextmanager
def _import_locks(home: Path | None) -> Iterator[None]:
    """This host's import lock, then the fleet's (``_fleet.lock``)."""
    with _replace.import_lock(home), _fleet.lock(home):
        yield


def _same_file(previous: DataLoad, sha: str, fields: dict[str, str], t0: float) -> ImportResult:
    """The result for a byte-identical file whose rows an earlier import wrote."""
    return ImportResult(
        0,
        True,
        [],
        Decimal(0),
        {},
        sha,
        previous=previous,
        mapping=fields,
        duplicates=previous.rows,
        seconds=time.perf_counter() - t0,
    )


def _questions(table: pa.Table, fields: Mapping[str, str]) -> list[Question]:
    return _formats.questions(
        {f: pc.utf8_trim_whitespace(table[c].combine_chunks()) for f, c in fields.items()}
    )


def _check_answers(asked: list[Question], decimal: str | None, date_order: str | None) -> None:
    """Every question the file raises needs its answer; an answer must be a known one."""
    if decimal is not None and decimal not in DECIMALS:
        raise ConfigError(f"decimal must be '.' or ',', not {decimal!r}", field="decimal")
    if date_order is not None and date_order not in DATE_ORDERS:
        raise ConfigError(
            f"date_order must be 'dmy' or 'mdy', not {date_order!r}", field="date_order"
        )
    given = {"decimal": decimal, "date_order": date_order}
    for q in asked:
        if given[q.field] is None:
            hint = f" (the cells suggest {q.suggested!r}: {q.reason})" if q.suggested else ""
            raise ConfigError(
                f"{q.text} Examples: {', '.join(q.examples)}. Give {q.field}="
                f"{' or '.join(repr(c) for c in q.choices)}{hint}.",
                field=q.field,
            )


def _in_pruned_hours(
    rows: _rows.Rows, reader: Reader, lines: np.ndarray
) -> tuple[_rows.Rows, list[BadRow]]:
    """Kept rows of an hour that retention holds only as totals (its raw events pruned) are
    bad rows: whether such a row is already counted cannot be checked (it counted twice)."""
    ts = rows.columns["ts"]
    if not len(ts):
        return rows, []
    hours = reader.pruned_hours(pc.min(ts).as_py(), pc.max(ts).as_py())
    if not len(hours):
        return rows, []
    hour_us = 3_600_000_000
    us = ts.cast(pa.int64()).to_numpy()
    held = np.isin(us - us % hour_us, hours.to_numpy())
    if not held.any():
        return rows, []
    which = np.nonzero(rows.keep)[0][held]
    when = pc.strftime(ts.filter(pa.array(held)), "%Y-%m-%d %H:00").to_pylist()
    bad = [
        BadRow(
            int(lines[i]),
            f"{t} UTC: retention pruned this hour's raw events (its totals are kept), so"
            " whether this row is already counted cannot be checked",
        )
        for i, t in zip(which.tolist(), when, strict=True)
    ]
    return rows.drop(held), bad


def _duplicates(
    rows: _rows.Rows, reader: Reader, replace: tuple[str, datetime, datetime] | None
) -> np.ndarray:
    """Kept rows already in the log: the k-th row of the file with a key is a duplicate when
    the log holds k or more events with that key (outside a range being replaced)."""
    n = len(rows.ids)
    if not n:
        return np.zeros(0, bool)
    ts = rows.columns["ts"]
    start, end = (None, None) if rows.given_ids else (pc.min(ts).as_py(), pc.max(ts).as_py())
    if replace is not None:  # the rows about to be replaced do not count
        start, end = None, None
    held = reader.id_counts(rows.ids, start, end)
    if replace is not None and held.num_rows:
        src, a, b = replace
        inside = reader.sql(
            "SELECT request_id, count(*) AS events FROM events WHERE source = ? AND ts >= ?"
            " AND ts < ? AND request_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1",
            [src, a, b, held.column("request_id").to_pylist()],
        )
        gone = dict(zip(inside["request_id"], inside["events"], strict=True))
        left = [
            int(c) - int(gone.get(i, 0))
            for i, c in zip(held["request_id"].to_pylist(), held["events"].to_pylist(), strict=True)
        ]
        held = pa.table({"request_id": held["request_id"], "events": pa.array(left, pa.int64())})
    if not held.num_rows:
        return np.zeros(n, bool)
    where = pc.index_in(rows.ids, value_set=held["request_id"].combine_chunks())
    found = pc.is_valid(where).to_numpy(zero_copy_only=False).astype(bool)
    counts = np.zeros(n, np.int64)
    counts[found] = held["events"].to_numpy()[pc.drop_null(where).to_numpy()]
    out: np.ndarray = rows.nth < counts
    return out


def _result(
    rows: _rows.Rows, bad: list[BadRow], sha: str, read: int, fields: dict[str, str], dups: int
) -> ImportResult:
    ts = rows.columns["ts"]
    n = int(rows.keep.sum())
    flags = rows.columns["price_flags"]
    return ImportResult(
        n,
        False,
        bad,
        pico_to_usd(rows.cost_total),
        rows.unpriced,
        sha,
        read,
        int(rows.blank.sum()),
        mapping=fields,
        duplicates=dups,
        first_ts=pc.min(ts).as_py() if n else None,
        last_ts=pc.max(ts).as_py() if n else None,
        over_context_rows=int(pc.sum(pc.list_value_length(flags)).as_py() or 0) if n else 0,
    )


def _replace_rows(
    engine: Engine,
    result: ImportResult,
    replace: tuple[str, datetime, datetime],
    load_id: str,
    actor: Actor,
    home: Path | None,
    meta: str = "",
) -> None:
    src, start, end = replace
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ConfigError("replace: give an aware start before the end", field="replace")
    rows, cost = _replace.remove_rows(home, src, start, end, meta)
    result.replaced, result.replaced_rows = replace, rows
    result.replaced_cost = pico_to_usd(cost)
    _loads.audit_replace(
        engine,
        actor,
        load_id,
        {
            "source": src,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "rows": rows,
            "cost_usd": str(result.replaced_cost),
        },
        {"rows": result.imported if result.written else 0, "cost_usd": str(result.cost_total)},
    )


def _by_time(table: pa.Table) -> pa.Table:
    """Sorted by ts (row groups then prune well on time filters); most files already are."""
    us = table.column("ts").cast(pa.int64()).to_numpy()
    if len(us) < 2 or bool((us[1:] >= us[:-1]).all()):
        return table
    return table.take(pa.array(np.argsort(us, kind="stable")))
