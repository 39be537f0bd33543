"""Keyset paging of the call log: a page at any depth costs what the first one does.

A cursor is the (ts, request_id) of the last row of a page and how many rows with exactly
that (ts, request_id) the pages so far returned, base64 JSON: rows may tie on (ts,
request_id) (retries logged within one microsecond, rows imported twice), and the count
resumes inside such a group. Rows order by ts, request_id, attempt (newest, last first),
then every other listed column, so a tied group has one order on every page. A page: the
newest ts before the end (from Parquet row-group statistics, no scan), then windows that
grow 8x back from one hour for the page's keys (two narrow columns), then its full rows in
the keys' ts span.
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


Cursor = tuple[int, str, int | None]  # (ts µs, request_id, rows of that pair already given)


def encode_cursor(ts_us: int, request_id: str, given: int | None = None) -> str:
    """``given`` None: every row of (ts, request_id) was given (a cursor of older releases)."""
    value: list[object] = [ts_us, request_id] if given is None else [ts_us, request_id, given]
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor ``encode_cursor`` wrote, else a 400: whole numbers only, a time a datetime
    holds, a count below 2**31 (a larger one overflowed the query)."""
    try:
        value = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(value, list) or len(value) not in (2, 3):
            raise ValueError(text)
        if not all(type(v) is int for v in (value[0], *value[2:])):
            raise ValueError(text)
        given = value[2] if len(value) == 3 else None
        if given is not None and not 0 <= given < 2**31:
            raise ValueError(text)
        _from_us(value[0])  # OverflowError past year 1 or 9999
        return value[0], str(value[1]), given
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
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


# The full order of the list: a tied (ts, request_id) group reads the same on every page.
ORDER = ", ".join(
    ["ts DESC", "request_id DESC", "attempt DESC NULLS LAST"]
    + [f"{ident(c)} NULLS FIRST" for c in LIST_COLUMNS if c not in ("ts", "request_id", "attempt")]
)


def page(
    reader: Reader, f: Filters, cursor: Cursor | None, limit: int
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """``limit`` events after the cursor (newest first) and the cursor of the next page (None
    at the end). Keyset paging: find the newest matching ts (Parquet statistics make that
    cheap), then look back in windows that grow 8x from one hour for the keys of the page
    (two narrow columns), then read the page's full rows in the keys' ts span. A page costs
    the row groups it touches, whatever its depth."""
    where, params = f.where()
    conds, cparams = ([where[len(" WHERE ") :]] if where else []), list(params)
    skip = 0
    if cursor is not None:
        at, rid, given = _from_us(cursor[0]), cursor[1], cursor[2]
        if given is None:  # strictly after (ts, request_id)
            conds.append("ts <= ? AND (ts < ? OR request_id < ?)")
        else:  # the tied group again, its first ``given`` rows skipped
            conds.append("ts <= ? AND (ts < ? OR request_id <= ?)")
            skip = given
        cparams += [at, at, rid]
    cond = " AND ".join(conds) or "TRUE"
    want = limit + skip
    if cursor is not None:  # the rows just before the cursor's row
        upper = _from_us(cursor[0]) + timedelta(microseconds=1)
    else:
        newest = newest_before(reader.home, f.end)
        if newest is None:
            return [], None
        upper = newest + timedelta(microseconds=1)
    span = FIRST_WINDOW
    while True:
        lo = upper - span
        bottom = f.start is not None and lo <= f.start
        window = "" if bottom else " AND ts >= ?"
        keys = reader.table(
            f"SELECT epoch_us(ts) AS us FROM events WHERE {cond}{window}"
            " ORDER BY ts DESC, request_id DESC LIMIT ?",
            [*cparams, *([] if bottom else [lo]), want],
        )
        if keys.num_rows >= want or bottom or span > timedelta(days=365 * 30):
            break
        span *= GROWTH
    if keys.num_rows <= skip:
        return [], None
    us = keys.column("us").to_pylist()
    cols = ", ".join(ident(c) for c in LIST_COLUMNS)
    found = reader.table(
        f"SELECT {cols}, epoch_us(ts) AS _us FROM events WHERE {cond}"
        f" AND ts BETWEEN ? AND ? ORDER BY {ORDER} LIMIT ?",
        [*cparams, _from_us(min(us)), _from_us(max(us)), want],
    ).to_pylist()
    rows = found[skip:]
    if len(rows) < limit or len(found) < want:
        return rows, None
    last = (rows[-1]["_us"], rows[-1]["request_id"])
    given = 0
    for r in reversed(rows):
        if (r["_us"], r["request_id"]) != last:
            break
        given += 1
    if cursor is not None and skip and given == len(rows) and last == cursor[:2]:
        given += skip  # the whole page was more of the cursor's group
    return rows, (int(last[0]), str(last[1]), given)
