"""The usage log as the console reads it: one Reader per COSTLINE_HOME, the version every
cached query is keyed on, and reads of the log as a whole (filter options, export).

Every query aggregates in DuckDB (the raw log is never pulled into pandas) and is cached with
``cached`` (``st.cache_data``) keyed on ``Reader.data_version()``, so a new segment invalidates
it. Money comes back as exact integer picodollars; pages convert it with ``selection.Money``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from console.selection import FILTER_DIMS, Scope
from core.export import export
from core.importer import Preview, read_preview
from core.settings import costline_home
from core.usage import Reader

NONE = "(none)"


TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


cached = st.cache_data(ttl=600, max_entries=256, show_spinner=False)


@st.cache_resource(show_spinner=False)
def reader_at(home: str) -> Reader:
    return Reader(Path(home))


def home() -> str:
    return str(costline_home())


def reader() -> Reader:
    return reader_at(home())


def version() -> str:
    """Changes whenever the usage log changes: the key of every cached query."""
    return reader().data_version()


def sql_where(scope: Scope, **overrides: Any) -> tuple[str, list[object]]:
    return scope.filters(**overrides).where()


@cached
def filter_options(home: str, version: str) -> dict[str, list[str]]:
    """Distinct values of each filter dimension, over the whole log (one scan)."""
    cols = ", ".join(f'list(DISTINCT "{d}") AS "{d}"' for d in FILTER_DIMS)
    row = reader_at(home).sql(f"SELECT {cols} FROM events").iloc[0]
    return {d: sorted(v for v in (row[d] if row[d] is not None else []) if v) for d in FILTER_DIMS}


@cached
def event_count(home: str, version: str) -> int:
    return reader_at(home).count()


@cached
def import_preview(content: bytes) -> Preview:
    """core.importer.read_preview of an uploaded file (columns, sample, suggested mapping)."""
    return read_preview(content)


def export_bytes(scope: Scope, fmt: str) -> bytes:
    """The calls in ``scope`` as a CSV or Parquet file (built when the user clicks)."""
    return export(reader(), scope.filters(), fmt)
