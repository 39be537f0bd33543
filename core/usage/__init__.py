"""The usage log: one event per call, journalled per process, stored as Parquet segments,
read with DuckDB.

    UsageLog(home).append(UsageEvent(...))    # any number of processes at once, no locks
    UsageLog.flush()                          # make this process's events visible now
    Reader(home).spend_by(["model"], "day")   # DuckDB over the segments
    compact(home)                             # merge small segments (safe under readers)

Readers see an appended event within ``flush_interval_s`` (2 s) even if the writing process
goes idle, or at once after ``flush()``. Writers also compact small segments in the
background once there are more than ``compact_threshold`` (64) of them.

Layout under ``$COSTLINE_HOME/events/``: ``journal/`` (one file of framed JSON records per
writing process), ``segments/`` (Parquet, the data set), ``compact.lock``. Data that fails a
check (torn or damaged records, a segment whose checksum is wrong) is moved to
``$COSTLINE_HOME/quarantine/`` with its reason; ``quarantine_summary()`` says what it held.

Writers need pyarrow, orjson and DuckDB (which parses sealed journals in a background thread);
``Reader`` (which also needs pandas) is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.usage._bucket import BucketConfig, mirror_for, shipper_for
from core.usage._bucket_compact import compact_bucket
from core.usage._compact import CompactResult, compact
from core.usage._frame import split_records
from core.usage._journal import recover
from core.usage._leader import fleet_lock
from core.usage._log import UsageLog, log_health
from core.usage._prune import prune
from core.usage._quarantine import QuarantineSummary, quarantine_dir
from core.usage._quarantine import summary as quarantine_summary
from core.usage._query import DIMENSIONS, GRAINS, TOKEN_COLUMNS, Filters, ident
from core.usage._rollups import ROLLUP_DIMS, pruned_rollups, purge_source
from core.usage._schema import COLUMNS, SCHEMA, STATUSES, Status, UsageEvent, conform, rows_to_table
from core.usage._segments import (
    IMPORT_LOCK,
    SUFFIX,
    SegmentInfo,
    Snapshot,
    events_dir,
    journal_dir,
    remove_import_temps,
    scan,
    segments_dir,
    write_segment,
)

if TYPE_CHECKING:
    from core.usage._reader import Reader
    from core.usage._reader import _facts_sql as facts_view_sql
    from core.usage._reader import _view_sql as events_view_sql

__all__ = [
    "DIMENSIONS",
    "IMPORT_LOCK",
    "GRAINS",
    "SCHEMA",
    "STATUSES",
    "CompactResult",
    "Filters",
    "QuarantineSummary",
    "Reader",
    "Status",
    "UsageEvent",
    "UsageLog",
    "compact",
    "log_health",
    "quarantine_dir",
    "quarantine_summary",
    "recover",
    "remove_import_temps",
    "rows_to_table",
    "segments_dir",
    "write_segment",
    "COLUMNS",
    "ROLLUP_DIMS",
    "SegmentInfo",
    "Snapshot",
    "conform",
    "events_dir",
    "ident",
    "journal_dir",
    "prune",
    "purge_source",
    "scan",
    "BucketConfig",
    "compact_bucket",
    "SUFFIX",
    "TOKEN_COLUMNS",
    "events_view_sql",
    "facts_view_sql",
    "fleet_lock",
    "mirror_for",
    "pruned_rollups",
    "shipper_for",
    "split_records",
]


def __getattr__(name: str) -> Any:  # the reader needs pandas: writers never import it
    if name in ("Reader", "events_view_sql", "facts_view_sql"):
        from core.usage import _reader

        return {
            "Reader": _reader.Reader,
            "events_view_sql": _reader._view_sql,
            "facts_view_sql": _reader._facts_sql,
        }[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
