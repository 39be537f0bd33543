"""Keyset paging of the call log: a page at any depth costs what the first one does.

A cursor is the (ts, request_id) of the last row of a page, base64 JSON. A page: the newest
ts before the end (from Parquet row-group statistics, no scan), then windows that grow 8x
back from one hour for the page's keys (two narrow columns), then its full rows by key.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from core.api._http import ApiError
from core.usage import COLUMNS, Filters, Reader, SegmentInfo, ident, scan, segments_dir

LIST_COLUMNS = [c for c in COLUMNS if c not in ("prompt", "response")]
FIRST_WINDOW = timedelta(hours=1)
GROWTH = 8


def encode_cursor(ts_us: int, request_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts_us, request_id])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    try:
        ts_us, rid = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return int(ts_us), str(rid)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ApiError(400, "cursor: not a cursor this API returned", "cursor") from None


_STATS: dict[tuple[str, int, int], list[tuple[datetime, datetime]]] = {}


def _ts_ranges(seg: SegmentInfo) -> list[tuple[datetime, datetime]]:
    """(min, max) ts of each row group of a segment, from its footer (cached)."""
    key = (str(seg.path), seg.nbytes, seg.mtime_ns)
    found = _STATS.get(key)
    if found is None:
        md = pq.read_metadata(seg.path)
        col = md.schema.to_arrow_schema().names.index("ts")
        found = []
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(col).statistics
            if st is None or not st.has_min_max:
                found = [(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))]
                break
            found.append((_aware(st.min), _aware(st.max)))
        if len(_STATS) > 10_000:
            _STATS.clear()
        _STATS[key] = found
    return found


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def newest_before(home: Path, end: datetime | None) -> datetime | None:
    """At least the newest event ts before ``end`` (from row-group statistics: no scan), or
    None when no event is that old."""
    best: datetime | None = None
    for seg in scan(segments_dir(home)).active:
        for lo, hi in _ts_ranges(seg):
            if end is not None and lo >= end:
                continue
            top = hi if end is None or hi < end else end - timedelta(microseconds=1)
            best = top if best is None or top > best else best
    return best


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def page(
    reader: Reader, f: Filters, cursor: tuple[int, str] | None, limit: int
) -> list[dict[str, Any]]:
    """``limit`` events before the cursor (newest first). Keyset paging: find the newest
    matching ts (Parquet statistics make that cheap), then look back in windows that grow
    8x from one hour for the keys of the page (two narrow columns), then read the page's
    full rows by key. A page costs the row groups it touches, whatever its depth."""
    where, params = f.where()
    conds, cparams = ([where[len(" WHERE ") :]] if where else []), list(params)
    if cursor is not None:
        at = _from_us(cursor[0])
        conds.append("ts <= ? AND (ts < ? OR request_id < ?)")
        cparams += [at, at, cursor[1]]
    cond = " AND ".join(conds) or "TRUE"
    if cursor is not None:  # the rows just before the cursor's row
        upper = _from_us(cursor[0]) + timedelta(microseconds=1)
    else:
        newest = newest_before(reader.home, f.end)
        if newest is None:
            return []
        upper = newest + timedelta(microseconds=1)
    span = FIRST_WINDOW
    while True:
        lo = upper - span
        bottom = f.start is not None and lo <= f.start
        window = "" if bottom else " AND ts >= ?"
        keys = reader.table(
            f"SELECT epoch_us(ts) AS us, request_id FROM events WHERE {cond}{window}"
            " ORDER BY ts DESC, request_id DESC LIMIT ?",
            [*cparams, *([] if bottom else [lo]), limit],
        )
        if keys.num_rows >= limit or bottom or span > timedelta(days=365 * 30):
            break
        span *= GROWTH
    if not keys.num_rows:
        return []
    us = keys.column("us").to_pylist()
    ids = keys.column("request_id").to_pylist()
    cols = ", ".join(ident(c) for c in LIST_COLUMNS)
    marks = ", ".join("?" * len(ids))
    rows = reader.table(
        f"SELECT {cols}, epoch_us(ts) AS _us FROM events WHERE {cond}"
        f" AND ts BETWEEN ? AND ? AND request_id IN ({marks})"
        " ORDER BY ts DESC, request_id DESC",
        [*cparams, _from_us(min(us)), _from_us(max(us)), *ids],
    )
    return list(rows.to_pylist())
