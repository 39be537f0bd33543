"""The Overview's figures, computed once for the console and the REST API.

Every function reads the view ``facts`` (raw events plus the rollups of pruned segments)
through a ``Reader``, so a figure is exact whether or not retention removed its raw rows, and
the console's Overview and ``GET /api/v1/spend`` show the same integers. Money is integer
picodollars throughout (see docs/architecture.md, "Money").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from core.periods import kpi_windows
from core.usage import Filters, Reader

NONE = "(none)"
TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
TOP_WHO = ("user", "project", "org")


@dataclass(frozen=True)
class Totals:
    """Activity of the selected range (money in picodollars). ``unpriced``: calls logged
    unpriced (their cost is unknown, so they are in no cost figure)."""

    requests: int = 0
    tokens: int = 0
    cost: int = 0
    saved: int = 0
    saved_cache: int = 0
    saved_sampling: int = 0
    cache_hits: int = 0
    errors: int = 0
    unpriced: int = 0

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Totals:
        """The sums of a ``Reader.spend_by`` frame whose rows do not overlap (not grouped by
        "tag", where a call with several tags is in several rows)."""
        return cls(
            requests=int(frame["requests"].sum()),
            tokens=int(frame[list(TOKEN_COLUMNS)].sum().sum()),
            cost=sum(_ints(frame["cost_picousd"])),
            saved=sum(_ints(frame["saved_picousd"])),
            saved_cache=sum(_ints(frame["saved_cache_picousd"])),
            saved_sampling=sum(_ints(frame["saved_sampling_picousd"])),
            cache_hits=int(frame["cache_hits"].sum()),
            errors=int(frame["errors"].sum()),
            unpriced=int(frame["unpriced_calls"].sum()),
        )

    def rate(self, part: int) -> float | None:
        return part / self.requests if self.requests else None

    @property
    def avg_cost(self) -> int | None:
        """The known cost per priced call, to the picodollar (half up): an unpriced call's
        cost is unknown, so it is not averaged in as $0. None when no call is priced."""
        priced = self.requests - self.unpriced
        return per_call(self.cost, priced) if priced > 0 else None


def per_call(pico: int, calls: int) -> int:
    """``pico / calls`` to the picodollar, half away from zero (as every money figure)."""
    q, r = divmod(abs(pico), calls)
    q += 2 * r >= calls
    return -q if pico < 0 else q


@dataclass(frozen=True)
class Spend:
    # period, key, cost_picousd (exact ints), saved_picousd, requests, errors, unpriced (of
    # the requests, those whose cost is unknown); by minute or hour also utc_offset
    # (minutes east of UTC: the period's identity with ``period``)
    series: pd.DataFrame
    totals: Totals
    # stacked by tag (rows overlap): period, cost_picousd, requests, unpriced, a call
    # counted once
    tag_periods: pd.DataFrame | None = None

    @property
    def periods(self) -> pd.DataFrame:
        """Rows whose sums per period count a call once (period, cost_picousd, requests,
        unpriced): the series, or by tag the period totals read apart."""
        return self.series if self.tag_periods is None else self.tag_periods


def _ints(values: pd.Series) -> list[int]:
    return [int(v) for v in values]


def spend(reader: Reader, filters: Filters, dim: str, grain: str, tz: str) -> Spend:
    """Spend per period and ``dim`` value plus the range's totals, from one scan. Stacked by
    "tag" a row is a tag (a call with several tags is in each of its tags' rows), so the
    totals and each period's total, where a call counts once, are read by a second scan then."""
    raw = reader.spend_by([dim], grain, filters, tz=tz)
    whole = reader.spend_by([], grain, filters, tz=tz) if dim == "tag" else raw
    totals = Totals.of(whole)
    tag_periods = None
    if dim == "tag":
        tag_periods = pd.DataFrame(
            {
                "period": whole["period"],
                "cost_picousd": pd.Series(_ints(whole["cost_picousd"]), dtype=object),
                "requests": whole["requests"].astype("int64"),
                "unpriced": whole["unpriced_calls"].fillna(0).astype("int64"),
            }
        )
        if "utc_offset" in whole.columns:
            tag_periods["utc_offset"] = whole["utc_offset"]
        tag_periods = _in_order(tag_periods[tag_periods["requests"] > 0], [])
    cost, saved = _ints(raw["cost_picousd"]), _ints(raw["saved_picousd"])
    series = pd.DataFrame(
        {
            "period": raw["period"],
            "key": raw[dim].astype(object).where(raw[dim].notna(), NONE).astype(str),
            "cost_picousd": pd.Series(cost, dtype=object),
            "saved_picousd": pd.Series(saved, dtype=object),
            "requests": raw["requests"].astype("int64"),
            "errors": raw["errors"].astype("int64"),
            "unpriced": raw["unpriced_calls"].fillna(0).astype("int64"),
        }
    )
    if "utc_offset" in raw.columns:  # by minute or hour: the repeated DST hour is two periods
        series["utc_offset"] = raw["utc_offset"]
    return Spend(_in_order(series, ["key"]), totals, tag_periods)


def _in_order(frame: pd.DataFrame, then: list[str]) -> pd.DataFrame:
    """Sorted by period (in real time: of two equal wall-clock starts, the one with the larger
    UTC offset came first), then by ``then``."""
    by = ["period", *(["utc_offset"] if "utc_offset" in frame.columns else []), *then]
    up = [c != "utc_offset" for c in by]
    return frame.sort_values(by, ascending=up, ignore_index=True)


WINDOW_SPEND_SQL = (
    "CAST(coalesce(sum(cost_picousd) FILTER (WHERE ts >= ? AND ts < ?), 0) AS VARCHAR)"
)


def window_spend(reader: Reader, filters: Filters, tz: str, now: datetime) -> dict[str, int]:
    """Spend of each KPI window (today, yesterday, mtd, prev_mtd, last30, prev30) under the
    filters' dimension values (their start/end are ignored), in one scan of ts and cost."""
    windows = kpi_windows(tz, now)
    lo = min(s for s, _ in windows.values())
    hi = max(e for _, e in windows.values())
    f = replace(filters, start=lo, end=hi)
    where, where_params = f.where()
    cols = ", ".join(f"{WINDOW_SPEND_SQL} AS {name}" for name in windows)
    params = [t for bounds in windows.values() for t in bounds]
    cuts = f.cuts()  # whole hours from rollups: each window's ends are cuts too
    if cuts is not None:
        cuts = (*cuts, *(t for bounds in windows.values() for t in bounds))
    sql = f"SELECT {cols} FROM facts{where}"
    row = reader.sql(sql, params + where_params, cuts=cuts).iloc[0]
    return {name: int(row[name]) for name in windows}


def unpriced_calls(reader: Reader, filters: Filters) -> int:
    """Calls under ``filters`` logged as unpriced (their cost is unknown, so they are in no
    cost figure), read alone: a page that runs ``spend`` over the same filters has the count
    in its totals already."""
    where, params = filters.where()
    sql = f"SELECT CAST(coalesce(sum(unpriced), 0) AS BIGINT) AS n FROM facts{where}"
    return int(reader.sql(sql, params, cuts=filters.cuts())["n"].iloc[0])


def top_spenders(reader: Reader, filters: Filters, who: str, n: int = 10) -> pd.DataFrame:
    """The top ``n`` values of ``who`` (user, project or org) by spend: name, cost_picousd,
    requests. A value whose calls were all logged without a cost spent 0."""
    if who not in TOP_WHO:
        raise ValueError(f"who must be one of {TOP_WHO}")
    where, params = filters.where()
    sql = (
        f'SELECT "{who}" AS name, CAST(coalesce(sum(cost_picousd), 0) AS VARCHAR) AS cost_picousd,'
        f" sum(requests)::BIGINT AS requests FROM facts{where} GROUP BY 1"
        " ORDER BY coalesce(sum(cost_picousd), 0) DESC, name LIMIT ?"
    )
    df = reader.sql(sql, [*params, int(n)], cuts=filters.cuts())
    df["name"] = df["name"].astype(object).where(df["name"].notna(), NONE)
    df["cost_picousd"] = pd.Series([int(v) for v in df["cost_picousd"]], dtype=object)
    return df


ROLLED_UP = "org, project, user, key, model, provider, task, status and source"


@dataclass(frozen=True)
class Coverage:
    """Whether raw events behind a range were pruned: figures from rollups stay exact when
    the range's edges and the zone's periods fall on UTC hours and no tag filter applies
    (rollups keep no tags); listings and rollup-less dimensions lack those rows."""

    pruned_from: datetime | None = None
    pruned_until: datetime | None = None
    tagged: bool = False  # the figures are filtered by tag: the pruned calls are not in them
    whole_hours: bool = True  # False: an edge or a local period cuts a pruned UTC hour

    @property
    def pruned(self) -> bool:
        return self.pruned_from is not None

    def note(self) -> str | None:
        if self.pruned_until is None:
            return None
        head = f"raw events before {self.pruned_until:%Y-%m-%d %H:%M} UTC were removed by retention"
        if self.tagged:
            return (
                f"{head}; their hourly rollups keep no tags, so figures under the tag filter"
                " leave out that period's calls (without it, totals and breakdowns by"
                f" {ROLLED_UP} come from the rollups); individual events and other breakdowns"
                " of that period are not available"
            )
        how = (
            "stay exact"
            if self.whole_hours
            else "count each of its hours whole, in the period holding the hour's start (the"
            " range's edges or the time zone's periods do not fall on UTC hours), so figures"
            " near those edges are approximate"
        )
        return (
            f"{head}; totals and breakdowns by {ROLLED_UP} come from hourly rollups and {how},"
            " individual events and other breakdowns of that period are not available"
        )


def _on_hour(at: datetime) -> bool:
    return at.minute == 0 and at.second == 0 and at.microsecond == 0


def coverage(
    reader: Reader,
    start: datetime | None,
    end: datetime | None,
    *,
    tagged: bool = False,
    tz: str = "UTC",
) -> Coverage:
    """Does [start, end) reach into the period whose raw events were pruned? ``tagged``: the
    figures are filtered by tag; ``tz``: the zone of their calendar periods."""
    span = reader.pruned_span()
    if span is None:
        return Coverage()
    first, until = span
    if (end is not None and end <= first) or (start is not None and start >= until):
        return Coverage()
    edges = [t for t in (start, end) if t is not None and first < t < until]
    zone = ZoneInfo(tz)
    offsets = {first.astimezone(zone).utcoffset(), until.astimezone(zone).utcoffset()}
    whole = all(_on_hour(t.astimezone(UTC)) for t in edges) and all(
        o is not None and o % timedelta(hours=1) == timedelta(0) for o in offsets
    )
    return Coverage(first, until, tagged=tagged, whole_hours=whole)
