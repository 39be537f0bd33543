"""Reader: DuckDB queries over the segments, through a view named ``events``.

Each query first re-lists the segments (cheap) and rebuilds the view when the set changed, so
results are always current. If a file vanishes between listing and reading (a compaction
deleted it), the query is retried on a fresh listing, pausing a little longer each time. The
DuckDB connection may only read the segments directory, and ``sql()`` accepts one SELECT
statement, for the console's free queries.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import ConfigError
from core.private import private_dir
from core.settings import costline_home
from core.types import pico_to_usd
from core.usage._bucket import mirror_for, rollup_cache_dir
from core.usage._convert import DUCK_TYPES, arrow_table
from core.usage._journal import recover
from core.usage._query import (
    ERROR_CONDITION,
    SAVED_PARTS,
    TOKEN_COLUMNS,
    Filters,
    check_columns,
    check_dims,
    check_tz,
    from_facts,
    ident,
    spend_sql,
)
from core.usage._rollups import (
    HOUR_US,
    MONEY_TYPE,
    ROLLUP_DIMS,
    ROW_MEASURES,
    conformed,
    pruned_dir,
    pruned_rollups,
    rollup_columns,
    rollups_dir,
)
from core.usage._schema import COLUMNS, SCHEMA, UsageEvent, table_to_events
from core.usage._segments import SUFFIX, SegmentInfo, Snapshot, scan, segments_dir

T = TypeVar("T")
_RETRIES = 20  # a compaction deleting files mid-query; it is over within a second or so
_NO_FILTERS = Filters()


def _literal(text: str) -> str:
    """SQL string literal for our own paths (never for user input, which goes in ? params)."""
    return "'" + text.replace("'", "''") + "'"


def _view_sql(snapshot: Snapshot, filename: bool = False) -> str:
    """The view ``events`` over the snapshot's active segments (``filename``: plus the
    column ``filename``, each row's segment path)."""
    present = {c for s in snapshot.active for c in s.columns}
    cols = ", ".join(
        ident(f.name)
        if f.name in present
        else f"CAST(NULL AS {DUCK_TYPES[str(f.type)]}) AS {ident(f.name)}"
        for f in SCHEMA
    )
    if filename:
        cols += ", filename" if snapshot.active else ", CAST(NULL AS VARCHAR) AS filename"
    if not snapshot.active:
        return f"CREATE OR REPLACE VIEW events AS SELECT {cols} WHERE false"
    files = ", ".join(_literal(str(s.path)) for s in snapshot.active)
    union = "true" if any(len(s.columns) != len(COLUMNS) for s in snapshot.active) else "false"
    named = ", filename = true" if filename else ""
    return (
        f"CREATE OR REPLACE VIEW events AS SELECT {cols}"
        f" FROM read_parquet([{files}], union_by_name = {union}{named})"
    )


def _facts_sql(
    pruned: Sequence[Path],
    rolled: Sequence[tuple[SegmentInfo, Path]] = (),
    plain: Sequence[SegmentInfo] = (),
    bad_hours: Sequence[int] = (),
) -> str:
    """The view ``facts``: one row per raw event with its measures (requests = 1, ...),
    plus the hourly rollups of pruned segments (``ts`` = the hour), for exact aggregates
    over rollup dimensions whatever retention removed.

    With ``rolled`` ((segment, its rollup) pairs: compacted segments of the snapshot) the raw
    rows come from ``plain`` (the other active segments) and, for the rolled segments, only
    from the UTC hours in ``bad_hours`` (hour numbers: epoch hours a query splits); every
    other hour of a rolled segment is its rollup's rows. Each segment's hour is so counted
    once, through its raw rows or its rollup, never both."""
    dims = ", ".join(ident(d) for d in ROLLUP_DIMS)
    measures = ", ".join(_measure(m, e) for m, e in ROW_MEASURES.items())
    raw_cols = f"ts, {dims}, tags, {measures}, ts AS first_ts, ts AS last_ts"
    parts: list[str] = []
    if not rolled:
        parts.append(f"SELECT {raw_cols} FROM events")
    else:
        if plain:
            parts.append(f"SELECT {raw_cols} FROM {conformed(plain)}")
        segs = [s for s, _ in rolled]
        for where in _hour_filters(bad_hours, "ts"):
            parts.append(f"SELECT {raw_cols} FROM {conformed(segs)} WHERE {where}")
        files = ", ".join(_literal(str(r)) for _, r in rolled)
        skip = ""
        if bad_hours:
            skip = f" WHERE epoch_us(hour) // {HOUR_US} NOT IN ({', '.join(map(str, bad_hours))})"
        # money as the files' DECIMAL(38,0) (casting each row to HUGEINT costs more than
        # the rest of the read); every branch then unites as DECIMAL(38,0), still exact
        parts.append(_rollup_select(files, dims, MONEY_TYPE) + skip)
    if pruned:  # rollups keep no tags: a tag filter or breakdown sees raw events only
        files = ", ".join(_literal(str(p)) for p in pruned)
        parts.append(_rollup_select(files, dims, MONEY_TYPE if rolled else "HUGEINT"))
    return f"CREATE OR REPLACE VIEW facts AS {' UNION ALL '.join(parts)}"


def _rollup_select(files: str, dims: str, money: str) -> str:
    # money is HUGEINT whatever a file holds (DECIMAL(38,0), or BIGINT before): by name, so
    # files of both kinds read together; files written before min_ts/max_ts give the hour
    return (
        f"SELECT hour AS ts, {dims}, NULL::VARCHAR[] AS tags, {rollup_columns(money)},"
        " coalesce(min_ts, hour) AS first_ts, coalesce(max_ts, hour) AS last_ts"
        f" FROM read_parquet([{files}], union_by_name = true)"
    )


_MAX_HOUR_RANGES = 8  # more runs of split hours: one scan with a list instead of range scans


def _hour_filters(bad_hours: Sequence[int], col: str) -> list[str]:
    """WHERE conditions selecting the raw rows of ``bad_hours`` (sorted epoch hours): one
    per run of consecutive hours (each a range the Parquet reader prunes by row-group
    statistics), or a single list test when there are many runs."""
    runs: list[list[int]] = []
    for h in bad_hours:
        if runs and runs[-1][1] == h:
            runs[-1][1] = h + 1
        else:
            runs.append([h, h + 1])
    if len(runs) > _MAX_HOUR_RANGES:
        return [f"epoch_us({col}) // {HOUR_US} IN ({', '.join(map(str, bad_hours))})"]
    return [
        f"{col} >= make_timestamptz({a * HOUR_US}) AND {col} < make_timestamptz({b * HOUR_US})"
        for a, b in runs
    ]


def _measure(name: str, expr: str) -> str:
    """A raw event's value of one measure: plain columns as they are (sum skips NULLs),
    the rest computed (and typed like the rollup's columns)."""
    if name in COLUMNS:
        return ident(name)
    return f"CAST({expr} AS {'DOUBLE' if name == 'latency_ms_sum' else 'BIGINT'}) AS {name}"


@dataclass(frozen=True)
class _Window:
    """What a query over ``facts`` tells apart in time, so rollups may stand in for raw
    rows: the instants its filters compare ``ts`` with (``cuts``, epoch microseconds), and
    the calendar periods it groups by (``grain`` in ``tz``). A UTC hour with no cut and no
    period boundary strictly inside is read from a compacted segment's rollup."""

    cuts: tuple[int, ...]
    tz: str = "UTC"
    grain: str | None = None

    def split_hours(self) -> tuple[int, ...]:
        """Epoch hours a cut falls strictly inside (read raw)."""
        return tuple(sorted({c // HOUR_US for c in self.cuts if c % HOUR_US}))


def _epoch_us(value: datetime) -> int:
    v = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return (v - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _window(cuts: Sequence[datetime], tz: str = "UTC", grain: str | None = None) -> _Window:
    return _Window(tuple(_epoch_us(c) for c in cuts), tz, grain)


_WORTH = 2  # a rollup is read instead of raw rows when it has at most half as many rows
_rollup_sizes: dict[Path, int] = {}  # rollup files never change once written
_sizes_lock = threading.Lock()


def _rollup_rows(path: Path) -> int:
    """Rows of a rollup file (from its footer, once per file; a huge count when it cannot
    be read: the segment is then read raw)."""
    with _sizes_lock:
        rows = _rollup_sizes.get(path)
    if rows is None:
        try:
            rows = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException):
            return 1 << 62
        with _sizes_lock:
            if len(_rollup_sizes) > 100_000:
                _rollup_sizes.clear()
            _rollup_sizes[path] = rows
    return rows


def _rollup_names(directory: Path) -> set[str]:
    try:
        return {n for n in os.listdir(directory) if n.endswith(SUFFIX) and n[0] != "."}
    except FileNotFoundError:
        return set()


def _frame(rel: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    frame: pd.DataFrame = arrow_table(rel).to_pandas()
    return frame


def _with_queued(listed: Snapshot, queued: Snapshot) -> Snapshot:
    """The bucket's listing plus the outbox's segments it does not hold (listed after the
    outbox: a segment shipped meanwhile is in the listing, so it counts once)."""
    extra = tuple(s for s in queued.active if not listed.has(s.name))
    if not extra:
        return listed
    return Snapshot(
        active=listed.active + extra,
        superseded=listed.superseded,
        replaced_names=listed.replaced_names,
        version=listed.version + "+" + queued.version,
    )


class Reader:
    """Read-only queries over the usage log of ``home``. Thread-safe (one query at a time)."""

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        outbox: bool = False,
    ) -> None:
        """``home``: a path (str or PathLike; default ``costline_home()``). ``outbox``: with a
        bucket, also read this home's segments not yet uploaded (an import's duplicate check
        must see what this host wrote; they are read before the bucket's listing and count
        once)."""
        self.home = Path(home) if home is not None else costline_home()
        self._mirror = mirror_for(self.home)  # COSTLINE_EVENTS_URL: read the bucket's segments
        self._sdir = self._mirror.dir if self._mirror is not None else segments_dir(self.home)
        private_dir(self._sdir)
        self._sdir = self._sdir.resolve()  # DuckDB's allowed_directories compares real paths
        self._obox: Path | None = None
        if outbox and self._mirror is not None:
            self._obox = private_dir(segments_dir(self.home)).resolve()
        recover(self.home)
        self._lock = threading.RLock()
        self._view_version: str | None = None
        self._pruned: tuple[Path, ...] = ()
        self._pruned_span: tuple[datetime, datetime] | None = None
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        with contextlib.suppress(duckdb.Error):  # segments never change once written
            con.execute("SET parquet_metadata_cache = true")
        self._rdir = pruned_dir(self.home)
        private_dir(self._rdir)
        self._rdir = self._rdir.resolve()
        # the rollups of compacted segments: beside the local segments, or the bucket's
        # (mirrored like its segments)
        rdir = rollup_cache_dir(self.home) if self._mirror is not None else rollups_dir(self.home)
        self._udir = private_dir(rdir).resolve()
        self._used: tuple[Path, ...] = ()  # the rollup files the view ``facts`` reads
        self._hours_cache: dict[tuple[str, str | None, tuple[str, ...]], list[int]] = {}
        readable = (self._sdir, self._udir, self._rdir, *([self._obox] if self._obox else []))
        dirs = ", ".join(_literal(str(d) + "/") for d in readable)
        con.execute(f"SET allowed_directories = [{dirs}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        self._con = con

    # plumbing

    def _use(self, snapshot: Snapshot, force: bool, window: _Window | None) -> None:
        """Point the views ``events`` and ``facts`` at the snapshot's segments, the pruned
        rollups listed after it and (with a ``window``) the rollups of its compacted
        segments (if any of them changed)."""
        present = [s.name for s in (*snapshot.active, *snapshot.superseded)]
        pruned = tuple(pruned_rollups(self.home, present))
        rolled: list[tuple[SegmentInfo, Path]] = []
        plain: list[SegmentInfo] = list(snapshot.active)
        if window is not None and window.grain != "minute":
            # listed after the snapshot: a rollup is used only for an ACTIVE segment (never
            # one a present merged segment replaces), so a row counts once whichever of a
            # merge's files and rollups are present
            names = _rollup_names(self._udir)
            rolled = [
                (s, self._udir / s.name)
                for s in snapshot.active
                if s.name in names and s.path.parent == self._sdir
            ]
            # a rollup about as long as its segment (few events per hour and dimension
            # values) saves nothing: that segment is read raw
            rolled = [(s, r) for s, r in rolled if _rollup_rows(r) * _WORTH <= s.rows]
            used = {s.name for s, _ in rolled}
            plain = [s for s in snapshot.active if s.name not in used]
        bad: tuple[int, ...] = ()
        if rolled and window is not None:
            bad = tuple(sorted({*window.split_hours(), *self._period_hours(window, rolled)}))
        version = (
            snapshot.version
            + "|"
            + ",".join(p.name for p in pruned)
            + "|"
            + ",".join(s.name for s, _ in rolled)
            + "|"
            + ",".join(map(str, bad))
        )
        if force or version != self._view_version:
            self._view_version = None
            self._con.execute(_view_sql(snapshot))
            self._con.execute(_facts_sql(pruned, rolled, plain, bad))
            if pruned != self._pruned:
                self._pruned, self._pruned_span = pruned, None
            self._used = tuple(r for _, r in rolled)
            self._view_version = version

    def _period_hours(
        self, window: _Window, rolled: Sequence[tuple[SegmentInfo, Path]]
    ) -> list[int]:
        """The rollups' hours that a period of ``window`` (grain in tz) starts inside of, e.g.
        each local midnight of a zone 5:30 ahead of UTC: those hours are read raw."""
        if window.grain is None or window.tz == "UTC":
            return []  # every UTC period starts on a UTC hour
        key = (window.tz, window.grain, tuple(s.name for s, _ in rolled))
        if key in self._hours_cache:
            return self._hours_cache[key]
        files = ", ".join(_literal(str(r)) for _, r in rolled)
        grain = "day" if window.grain == "week" else window.grain  # a week starts on a day
        rows = self._con.execute(
            f"SELECT DISTINCT epoch_us(hour) // {HOUR_US}"
            f" FROM read_parquet([{files}], union_by_name = true)"
            " WHERE date_trunc(?, timezone(?, hour))"
            f" <> date_trunc(?, timezone(?, hour + INTERVAL '{HOUR_US - 1} microseconds'))",
            [grain, window.tz, grain, window.tz],
        ).fetchall()
        if len(self._hours_cache) > 64:
            self._hours_cache.clear()
        self._hours_cache[key] = hours = [int(r[0]) for r in rows]
        return hours

    def _run(
        self,
        sql: str,
        params: Sequence[object],
        fetch: Callable[[duckdb.DuckDBPyRelation], T],
        window: _Window | None = None,
    ) -> T:
        with self._lock:
            for attempt in range(_RETRIES):
                if attempt > 1:  # let a burst of merges end
                    time.sleep(min(0.005 * attempt, 0.1))
                queued = scan(self._obox) if self._obox is not None else None  # first
                if self._mirror is not None:
                    self._mirror.sync(force=attempt > 0)
                snapshot = scan(self._sdir)
                if queued is not None:
                    snapshot = _with_queued(snapshot, queued)
                try:
                    self._use(snapshot, force=attempt > 0, window=window)
                    return fetch(self._con.sql(sql, params=list(params)))
                except duckdb.IOException:
                    vanished = any(not s.path.exists() for s in snapshot.active) or any(
                        not r.exists() for r in self._used
                    )
                    if not vanished or attempt == _RETRIES - 1:
                        raise  # a real I/O problem, not a compaction race
            raise AssertionError("unreachable")

    # queries

    def events(
        self,
        filters: Filters | None = None,
        columns: Sequence[str] | None = None,
        order_by: str = "ts",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> pd.DataFrame:
        sql, params = self._events_sql(filters, columns, order_by, descending, limit, offset)
        return self._run(sql, params, _frame)

    def fetch(
        self,
        filters: Filters | None = None,
        order_by: str = "ts",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[UsageEvent]:
        """Like ``events`` but as UsageEvent objects (exact ints, tz-aware ts, dict metadata)."""
        sql, params = self._events_sql(filters, None, order_by, descending, limit, offset)
        return self._run(sql, params, lambda rel: table_to_events(arrow_table(rel)))

    def _events_sql(
        self,
        filters: Filters | None,
        columns: Sequence[str] | None,
        order_by: str,
        descending: bool,
        limit: int | None,
        offset: int,
    ) -> tuple[str, list[object]]:
        cols = check_columns(columns) if columns is not None else list(COLUMNS)
        check_columns([order_by], "order_by column")
        where, params = (filters or _NO_FILTERS).where()
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT {', '.join(ident(c) for c in cols)} FROM events{where}"
            f" ORDER BY {ident(order_by)} {direction}, request_id {direction}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        if offset:
            sql += " OFFSET ?"
            params.append(int(offset))
        return sql, params

    def count(self, filters: Filters | None = None) -> int:
        where, params = (filters or _NO_FILTERS).where()
        return int(self._run(f"SELECT count(*) FROM events{where}", params, _first)[0])

    def spend_by(
        self,
        dims: Sequence[str],
        grain: str | None = "day",
        filters: Filters | None = None,
        *,
        tz: str = "UTC",
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Spend per period (start of the bucket, wall clock in ``tz``) and dimensions: requests,
        tokens, exact picodollars (cost, saved, saved by the cache and by sampling), errors,
        cache hits and ``unpriced_calls`` (calls logged unpriced: in no cost sum). Exact for pruned
        periods too when ``dims`` and ``filters`` are rollup dimensions (it reads ``facts``).
        By minute or hour a row also has ``utc_offset`` (minutes east of UTC): the wall-clock
        hour a DST fall-back repeats is two periods with the same ``period``, told apart by it.
        ``limit``: at most that many rows are built (the ``ORDER BY``'s first)."""
        dims, tz, f = check_dims(dims), check_tz(tz), filters or _NO_FILTERS
        cuts = f.cuts() if from_facts(dims, f) else None
        w = None if cuts is None or grain == "minute" else _window(cuts, tz, grain)
        try:
            return self._run(*spend_sql(dims, grain, f, tz, "BIGINT", limit), _frame, w)
        except duckdb.ConversionException:  # a sum beyond int64: exact Python ints instead
            df = self._run(*spend_sql(dims, grain, f, tz, "VARCHAR", limit), _frame, w)
            for c in ("cost_picousd", "saved_picousd", *SAVED_PARTS):
                df[c] = pd.Series([int(v) for v in df[c]], index=df.index, dtype=object)
            return df

    def pruned_span(self) -> tuple[datetime, datetime] | None:
        """[first hour, end of the last hour) held only as rollups (raw events pruned),
        or None when nothing was pruned."""
        with self._lock:
            self._run("SELECT 1", [], _first)  # refresh the views
            if self._pruned and self._pruned_span is None:
                files = ", ".join(_literal(str(p)) for p in self._pruned)
                first, last = self._run(
                    "SELECT min(hour), max(hour)"
                    f" FROM read_parquet([{files}], union_by_name = true)",
                    [],
                    _first,
                )
                if first is not None:
                    self._pruned_span = (
                        first.astimezone(UTC),
                        last.astimezone(UTC) + timedelta(hours=1),
                    )
            return self._pruned_span

    def pruned_hours(self, start: datetime, end: datetime) -> pa.Array:
        """The hours (UTC, int64 microseconds, sorted) in [start, end] that retention holds
        only as rollups: an event of such an hour is counted but no longer listed (an
        import cannot tell whether a row there is already in the totals)."""
        with self._lock:
            self._run("SELECT 1", [], _first)  # refresh the views
            if not self._pruned:
                return pa.array([], pa.int64())
            files = ", ".join(_literal(str(p)) for p in self._pruned)
            lo = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            got = self._run(
                "SELECT DISTINCT epoch_us(hour) AS h"
                f" FROM read_parquet([{files}], union_by_name = true)"
                " WHERE hour >= ? AND hour <= ? ORDER BY 1",
                [lo, end],
                arrow_table,
            )
            return got.column("h").combine_chunks().cast(pa.int64())

    def totals(self, filters: Filters | None = None) -> dict[str, Any]:
        """Exact totals: money as int picodollars and Decimal dollars (from ``facts``, so
        pruned periods count; every filter column is a rollup dimension)."""
        return self._facts_totals(filters or _NO_FILTERS)

    def _facts_totals(self, filters: Filters) -> dict[str, Any]:
        where, params = filters.where()
        sums = (*TOKEN_COLUMNS, "cost_picousd", "saved_picousd")
        sql = (
            "SELECT sum(requests), "
            + ", ".join(f"sum({c})" for c in sums)
            + f", sum(requests) FILTER (WHERE {ERROR_CONDITION}), sum(cache_hits),"
            " sum(unpriced), sum(ai_skipped), epoch_us(min(first_ts)), epoch_us(max(last_ts))"
            f" FROM facts{where}"
        )
        cuts = filters.cuts()
        w = None if cuts is None else _window(cuts)
        return _totals_dict(self._run(sql, params, _first, w))

    def daily_series(
        self, filters: Filters | None = None, by: str | None = None, *, tz: str = "UTC"
    ) -> pd.DataFrame:
        """Daily cost per ``key`` (a dimension's value, or "all"), with missing days as zero:
        columns ds (naive date, in ``tz``), key, cost_usd, requests. Ready for forecasting."""
        f = filters or _NO_FILTERS
        df = self.spend_by([by] if by else [], "day", f, tz=tz)
        keys = df[by].astype(object).where(df[by].notna(), "(none)").astype(str) if by else "all"
        df = pd.DataFrame(
            {
                "ds": df["period"],
                "key": keys,
                "cost_usd": df["cost_usd"],
                "requests": df["requests"],
            }
        )
        if df.empty:
            return df
        first, last = df["ds"].min(), df["ds"].max()
        if f.start is not None:
            first = min(first, _local_day(f.start, tz))
        if f.end is not None:
            last = max(last, _local_day(f.end - timedelta(microseconds=1), tz))
        days = pd.date_range(first, last, freq="D", unit="us")
        index = pd.MultiIndex.from_product([sorted(df["key"].unique()), days], names=["key", "ds"])
        full = df.groupby(["key", "ds"])[["cost_usd", "requests"]].sum().reindex(index)
        full = full.fillna(0).reset_index()
        full["requests"] = full["requests"].astype("int64")
        return full[["ds", "key", "cost_usd", "requests"]]

    def sql(
        self,
        query: str,
        params: Sequence[object] = (),
        *,
        cuts: Sequence[datetime] | None = None,
    ) -> pd.DataFrame:
        """One read-only SELECT over the view ``events`` (only the segments are readable).

        ``cuts``: the query reads ``facts`` filtered by rollup dimensions only, and tells
        rows apart in time only by comparing ``ts`` with these instants (e.g. its range's
        ends, as ``Filters.cuts()`` gives them; empty: not by time at all), and groups by no
        period. Then every whole UTC hour between two cuts is read from the rollups of
        compacted segments, and only hours a cut splits from their raw rows (the answer is
        the same, to the picodollar). Without ``cuts``, ``facts`` reads raw events (and the
        rollups of pruned segments)."""
        w = None if cuts is None else _window(cuts)
        with self._lock:
            try:
                statements = self._con.extract_statements(query)
            except duckdb.Error as exc:
                raise ConfigError(f"invalid SQL: {exc}", field="sql") from exc
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                raise ConfigError("only one SELECT statement is allowed", field="sql")
            try:
                return self._run(query, params, _frame, w)
            except (
                duckdb.ParserException,
                duckdb.BinderException,
                duckdb.CatalogException,
                duckdb.PermissionException,
                duckdb.InvalidInputException,
            ) as exc:
                raise ConfigError(f"query failed: {exc}", field="sql") from exc

    def table(self, query: str, params: Sequence[object] = ()) -> pa.Table:
        """Like ``sql`` but the answer as an Arrow table (no pandas conversion)."""
        with self._lock:
            statements = self._con.extract_statements(query)
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                raise ConfigError("only one SELECT statement is allowed", field="sql")
            return self._run(query, params, arrow_table)

    def id_counts(
        self, ids: pa.Array, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """(request_id, events) for the ids among ``ids`` that the log holds (with
        ``start``/``end``: only events in [start, end], pruned by the segments' time
        statistics)."""
        cand = pa.table({"id": pc.unique(ids.cast(pa.string()))})
        where = "request_id IN (SELECT id FROM _cand)"
        params: list[object] = []
        if start is not None and end is not None:
            where = "ts >= ? AND ts <= ? AND " + where
            params = [start, end]
        sql = f"SELECT request_id, count(*) AS events FROM events WHERE {where} GROUP BY 1"
        with self._lock:
            self._con.register("_cand", cand)
            try:
                return self._run(sql, params, arrow_table)
            finally:
                self._con.unregister("_cand")

    def data_version(self) -> str:
        """Changes whenever the set or size of segments changes (a cache key)."""
        if self._mirror is not None:
            self._mirror.sync()
        return scan(self._sdir).version

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_TOTALS = (
    "requests",
    *TOKEN_COLUMNS,
    "cost_picousd",
    "saved_picousd",
    "errors",
    "cache_hits",
    "unpriced",
    "ai_skipped",
)


def _totals_dict(row: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {n: int(v or 0) for n, v in zip(_TOTALS, row[:-2], strict=True)}
    for n, v in zip(("first_ts", "last_ts"), row[-2:], strict=True):
        out[n] = None if v is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=v)
    out["cost_usd"] = pico_to_usd(out["cost_picousd"])
    out["saved_usd"] = pico_to_usd(out["saved_picousd"])
    return out


def _first(rel: duckdb.DuckDBPyRelation) -> tuple[Any, ...]:
    rows = rel.fetchall()
    return tuple(rows[0])


def _local_day(value: datetime, tz: str) -> pd.Timestamp:
    ts = pd.Timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts.tz_convert(tz).tz_localize(None).floor("D")
