"""The usage log as the console reads it: one Reader per COSTLINE_HOME, the version every
cached query is keyed on, and reads of the log as a whole (filter options, export).

Every query aggregates in DuckDB (the raw log is never pulled into pandas) and is cached with
``cached`` (``st.cache_data``) keyed on ``Reader.data_version()``, so a new segment invalidates
it. Money comes back as exact integer picodollars; pages convert it with ``selection.Money``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from console.selection import FILTER_DIMS, Scope
from core.export import export
from core.importer import (
    ImportResult,
    Preview,
    Question,
    file_questions,
    import_csv,
    parse_sample,
    read_preview,
    replace_preview,
)
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
    """Distinct values of each filter dimension, over what the reports read (one scan of
    ``facts``: the raw events plus the hourly rollups of pruned segments, so a value whose
    raw events retention removed stays pickable while its spend is counted). Tags come from
    the raw events only: rollups keep none, so a pruned call's tags are gone."""
    cols = ", ".join(
        'list_distinct(flatten(list(tags))) AS "tag"'
        if d == "tag"
        else f'list(DISTINCT "{d}") AS "{d}"'
        for d in FILTER_DIMS
    )
    row = reader_at(home).sql(f"SELECT {cols} FROM facts").iloc[0]
    return {d: sorted(v for v in (row[d] if row[d] is not None else []) if v) for d in FILTER_DIMS}


@cached
def event_count(home: str, version: str) -> int:
    return reader_at(home).count()


@cached
def import_preview(content: bytes) -> Preview:
    """core.importer.read_preview of an uploaded file (columns, sample, suggested mapping)."""
    return read_preview(content)


Mapping_ = tuple[tuple[str, str], ...]  # a column mapping as a hashable cache key
Answers = tuple[tuple[str, str | None], ...]  # decimal mark, date order


@cached
def import_questions(content: bytes, mapping: Mapping_) -> list[Question]:
    """The decimal-mark / date-order questions the mapped columns raise."""
    return file_questions(content, dict(mapping))


@cached
def import_sample(
    content: bytes, mapping: Mapping_, inclusive: bool, answers: Answers
) -> pd.DataFrame:
    """The first rows as they would be imported, with each answer applied."""
    a = dict(answers)
    return parse_sample(
        content,
        dict(mapping),
        tokens_inclusive=inclusive,
        decimal=a.get("decimal"),
        date_order=a.get("date_order"),
    )


@cached
def import_check(
    home: str,
    version: str,
    content: bytes,
    mapping: Mapping_,
    inclusive: bool,
    answers: Answers,
    replace: tuple[str, datetime, datetime] | None = None,
) -> ImportResult:
    """A dry run over every row: bad rows, duplicates already in the log, what would be
    imported (with ``replace``: the rows of the range being replaced are no duplicates).
    Nothing is written."""
    a = dict(answers)
    return import_csv(
        content,
        dict(mapping),
        home=Path(home),
        tokens_inclusive=inclusive,
        decimal=a.get("decimal"),
        date_order=a.get("date_order"),
        dry_run=True,
        replace=replace,
    )


def replace_count(source: str, start: datetime, end: datetime) -> tuple[int, Decimal]:
    """(rows, USD) of ``source`` in [start, end) a replace would remove."""
    return replace_preview(source, start, end, Path(home()))


def export_bytes(scope: Scope, fmt: str) -> bytes:
    """The calls in ``scope`` as a CSV or Parquet file (built when the user clicks)."""
    return export(reader(), scope.filters(), fmt)
