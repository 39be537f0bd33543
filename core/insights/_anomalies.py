"""Anomaly scans over the usage log: spend and request counts, per org and per model, daily
and hourly, each finding attributed to the users, models and tasks that caused it.

| grain | baseline (_detect.scan: robust       z over the MAD) | material when excess >=     |
|-------|-------------------------------------------------------|-----------------------------|
| day   | the 28 days before                                    | 20% of the key's median day |
| hour  | the same hour of day on the 28 days before            | 10% of the key's median day |
| minute| the 60 minutes before (only when the log holds two    | twice the key's median      |
|       | days of data or less: day and hour scans need weeks)  | minute, and $1/1440 a minute|

and, for day and hour, at least 2% of the median day of all keys together and at least $1
(20 calls), so a 5x jump of a $0.01 series is not news. Data of a day or two (an imported
trace) is scanned minute by minute instead of being rolled up into hours it cannot judge.
Timestamps are naive wall clock in ``tz`` with the hour's or minute's UTC offset beside them
(``Finding.utc_offset``): hours and minutes are real ones, so the hour a DST fall-back repeats
is two hours, each judged against the same wall-clock hour of the days before and labelled
with its offset. Today's partial day is included (a runaway loop shows up before the day
ends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from core import clock
from core.insights._advice_base import dollars_text
from core.insights._attribution import attribute_anomaly
from core.insights._detect import Anomaly, Contributor, scan
from core.types import pico_to_usd
from core.usage import ROLLUP_DIMS, Filters, Reader, ident

from ._series import local_midnight, local_today

METRICS = {"spend": "cost_usd", "requests": "requests"}
SHORT_DAYS = 2  # days with data at or below which the minute scan runs
MINUTE_WINDOW = 60
KEY_SHARE = {"day": 0.20, "hour": 0.10}
TOTAL_SHARE = 0.02
MIN_EXCESS = {"spend": 1.0, "requests": 20.0}  # USD, calls
BASELINE_DAYS = 28
ATTRIBUTE_DIMS = ("user", "model", "task", "project", "org")
SEP = "\x1f"


@dataclass(frozen=True)
class Finding:
    """One anomaly of one series: ``dimension == key``'s ``metric`` at ``grain``."""

    anomaly: Anomaly  # ts: naive wall clock in tz; contributors filled when attributed
    dimension: str  # 'org' | 'model'
    metric: str  # 'spend' (USD) | 'requests' (calls)
    grain: str  # 'day' | 'hour' | 'minute'
    tz: str = "UTC"
    utc_offset: int | None = None  # an hour's or minute's offset from UTC (minutes east)
    # a spend finding's exact picodollars in its period, summed from the log (``scan_usage``
    # fills it for every attributed finding; the detector's ``anomaly.value`` is a float)
    spent_picousd: int | None = None

    @property
    def start_utc(self) -> pd.Timestamp:
        """The real instant the finding's period starts (the wall clock alone is ambiguous
        in the hour a DST fall-back repeats)."""
        if self.utc_offset is None or self.grain == "day":
            return _utc(self.ts, self.tz)
        return (self.ts - pd.Timedelta(minutes=self.utc_offset)).tz_localize("UTC")

    @property
    def end_utc(self) -> pd.Timestamp:
        """The real instant the finding's period ends (a local day may last 23 or 25 hours)."""
        if self.grain == "day":
            return _utc(self.ts.normalize() + pd.Timedelta(days=1), self.tz)
        return self.start_utc + pd.Timedelta(minutes=60 if self.grain == "hour" else 1)

    @property
    def offset_mark(self) -> str:
        """' UTC-04:00' when the wall-clock time is one a DST fall-back repeats (so the two
        01:00s of that night read apart), else ''."""
        if self.grain == "day" or self.utc_offset is None:
            return ""
        wall = self.ts.to_pydatetime().replace(tzinfo=ZoneInfo(self.tz))
        if wall.replace(fold=0).utcoffset() == wall.replace(fold=1).utcoffset():
            return ""
        m = self.utc_offset
        return f" UTC{'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"

    @property
    def clock(self) -> str:
        """The hour ('01:00', '01:00 UTC-05:00' when repeated) or minute of the finding."""
        return self.ts.strftime("%H:%M" if self.grain == "minute" else "%H:00") + self.offset_mark

    @property
    def key(self) -> str:
        return str(self.anomaly.key)

    @property
    def ts(self) -> pd.Timestamp:
        return pd.Timestamp(self.anomaly.ts)

    @property
    def subject(self) -> str:
        return f"{self.dimension}={self.key}"

    @property
    def day(self) -> str:
        return self.ts.strftime("%Y-%m-%d")

    @property
    def when(self) -> str:
        return self.day if self.grain == "day" else f"{self.day} {self.clock}"

    def top(self, dim: str) -> Contributor | None:
        return next((c for c in self.anomaly.contributors if c.dim == dim), None)

    def describe(self) -> str:
        """'spend of org=initech on 2026-11-12: $21.38 vs $11.89 expected (1.8x, +$9.49)'."""
        a = self.anomaly
        ratio = "new" if math.isinf(a.ratio) else f"{a.ratio:.1f}x"
        if self.metric == "spend":
            spent = (
                dollars_text(pico_to_usd(self.spent_picousd))
                if self.spent_picousd is not None
                else dollars_text(a.value)
            )
            amounts = (
                f"{spent} vs {dollars_text(a.expected)} expected ({ratio},"
                f" +{dollars_text(a.excess_usd)})"
            )
        else:
            amounts = f"{a.value:,.0f} calls vs {a.expected:,.0f} expected ({ratio})"
        return f"{self.metric} of {self.subject} on {self.when}: {amounts}"

    def culprits(self, dims: Sequence[str] = ("user", "model", "task")) -> str:
        """'user dmitri@initech.com (90%) · model claude-sonnet-4 (93%)'."""
        tops = [(d, self.top(d)) for d in dims if d != self.dimension]
        return " · ".join(f"{d} {c.value} ({c.share:.0%})" for d, c in tops if c is not None)


def lead(group: Sequence[Finding]) -> Finding:
    """The finding that speaks for its series and day (its alert): spend before calls, a day
    before an hour, then the largest excess."""
    return max(group, key=lambda f: (f.metric == "spend", f.grain == "day", f.anomaly.excess_usd))


def by_series_day(findings: Sequence[Finding]) -> dict[tuple[str, str], list[Finding]]:
    """Findings grouped by (subject, local day): one alert each."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for fd in findings:
        groups.setdefault((fd.subject, fd.day), []).append(fd)
    return groups


def _material(
    found: list[Anomaly],
    daily: pd.DataFrame,
    grain: str,
    least: float,
) -> list[Anomaly]:
    per_key = daily.groupby("key")["value"].median()
    total = float(daily.groupby("ds")["value"].sum().median()) if len(daily) else 0.0
    floor = max(least, TOTAL_SHARE * total)
    return [
        a
        for a in found
        if a.excess_usd >= max(floor, KEY_SHARE[grain] * float(per_key.get(a.key, 0.0)))
    ]


def _real_hours(frame: pd.DataFrame, tz: str) -> pd.Series:
    """Each row's period as a naive UTC instant: its wall clock ``ds`` less its ``offset``
    (minutes east of UTC, as ``spend_by`` gives it by hour and minute); without the column
    the wall clock is placed in ``tz`` (the repeated DST hour then taken once)."""
    ds = pd.to_datetime(frame["ds"])
    if "offset" in frame.columns:
        return ds - pd.to_timedelta(frame["offset"].astype("int64"), unit="min")
    here = ds.dt.tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    return here.dt.tz_convert("UTC").dt.tz_localize(None)


def _walls(utc: pd.Series, tz: str) -> tuple[pd.Series, pd.Series]:
    """Naive UTC instants as (naive wall clock in ``tz``, offset in minutes east of UTC)."""
    wall = utc.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
    return wall, ((wall - utc) // pd.Timedelta(minutes=1)).astype("int64")


Offsets = dict[int, int]  # id(anomaly) -> the UTC offset of its hour or minute


def _hourly(frame: pd.DataFrame, tz: str = "UTC") -> tuple[list[Anomaly], Offsets]:
    """(ds hourly, key, value[, offset]) -> anomalies against the same hour on earlier days:
    each (key, hour of day) is scanned as its own daily series. Hours are real hours (a
    fall-back day has 25, a spring-forward day 23): the hour a DST fall-back repeats is
    judged twice against the same wall-clock hour of the days before, each on its own."""
    real = frame.assign(ds=_real_hours(frame, tz))
    wide = real.pivot_table(index="ds", columns="key", values="value", aggfunc="sum")
    wide = wide.reindex(pd.date_range(wide.index.min(), wide.index.max(), freq="h"))
    wide = wide.fillna(0.0).where(wide.notna().cummax())  # NaN before a key's first hour
    long = wide.stack().dropna().reset_index()
    long.columns = pd.Index(["ts", "key", "value"])
    wall, offset = _walls(long["ts"], tz)
    day = wall.dt.floor("D")
    base = long["key"].astype(str) + SEP + wall.dt.hour.astype(str)
    again = pd.DataFrame({"k": base, "d": day}).duplicated(keep="first")  # the 2nd 01:00
    pkey = base.where(~again, base + SEP + "r")
    pseudo = pd.DataFrame({"ds": day, "key": pkey, "value": long["value"].astype(float)})
    copies = [  # a repeated hour's baseline: the same wall-clock hour on the days before
        pseudo[(pseudo["key"] == b) & (pseudo["ds"] < d)].assign(key=k)
        for b, d, k in zip(base[again], day[again], pkey[again], strict=True)
    ]
    where = {(k, d): (w, o) for k, d, w, o in zip(pkey, day, wall, offset, strict=True)}
    out, offsets = [], {}
    for a in scan(pd.concat([pseudo, *copies]), window=BASELINE_DAYS, min_periods=7):
        at = where.get((a.key, pd.Timestamp(a.ts)))
        if at is None:
            continue  # a baseline copy's own day
        b = replace(a, ts=at[0], key=str(a.key).split(SEP)[0], freq="h")
        offsets[id(b)] = int(at[1])
        out.append(b)
    return sorted(out, key=lambda a: (a.ts, str(a.key))), offsets


def _local(at: datetime, tz: str) -> pd.Timestamp:
    """Naive wall clock in ``tz`` (a naive ``at`` is taken as UTC, like Filters)."""
    ts = pd.Timestamp(at)
    return (ts if ts.tzinfo else ts.tz_localize("UTC")).tz_convert(tz).tz_localize(None)


def _utc(ts: pd.Timestamp, tz: str) -> pd.Timestamp:
    return ts.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")


def spent_picousd(reader: Reader, finding: Finding, filters: Filters | None = None) -> int:
    """The exact picodollars of ``finding``'s series in its period (before ``filters.end``):
    an integer sum from the log (pruned hours through their rollups), never a float's."""
    base = filters or Filters()
    start = finding.start_utc.to_pydatetime()
    end = finding.end_utc.to_pydatetime()
    if base.end is not None:  # naive is UTC, as in Filters
        end = min(end, base.end if base.end.tzinfo else base.end.replace(tzinfo=UTC))
    where, params = replace(base, start=start, end=end).where()
    column = ident(finding.dimension)
    if finding.key == "(none)":  # the series of calls without this dimension
        cond = f"{column} IS NULL"
    else:
        cond, params = f"{column} = ?", [*params, finding.key]
    where = f"{where} AND {cond}" if where else f" WHERE {cond}"
    facts = base.tag is None and finding.dimension in ROLLUP_DIMS
    sql = (
        "SELECT CAST(coalesce(sum(cost_picousd), 0) AS VARCHAR) AS spent"
        f" FROM {'facts' if facts else 'events'}{where}"
    )
    return int(reader.sql(sql, params)["spent"].iloc[0])


def _with_spent(reader: Reader, finding: Finding, filters: Filters) -> Finding:
    if finding.metric != "spend":
        return finding
    return replace(finding, spent_picousd=spent_picousd(reader, finding, filters))


def attribute(reader: Reader, finding: Finding, filters: Filters | None = None) -> Finding:
    """Fill the finding's contributors: its period against the 28 days before, restricted
    to its own series (request anomalies are attributed by calls, not dollars).

    DuckDB first sums the calls per (period or baseline, user, model, task, project, org),
    each group stamped at the start of its part, so ``attribute_anomaly`` sees a few hundred
    rows instead of every call, with the same sums."""
    a = finding.anomaly
    start = finding.start_utc
    step = {"hour": pd.Timedelta(hours=1), "minute": pd.Timedelta(minutes=1)}
    end = start + step.get(finding.grain, pd.Timedelta(days=1))
    back = timedelta(minutes=MINUTE_WINDOW) if finding.grain == "minute" else None
    since = (start - (back or timedelta(days=BASELINE_DAYS))).to_pydatetime()
    narrowed: dict[str, Any] = {finding.dimension: finding.key}
    base = replace(filters or Filters(), start=since, end=end.to_pydatetime(), **narrowed)
    where, params = base.where()
    amount = "count(*) * 1e12" if finding.metric == "requests" else "sum(cost_picousd)::DOUBLE"
    own = () if finding.dimension in ATTRIBUTE_DIMS else (finding.dimension,)  # e.g. "key"
    dims = ", ".join(f'"{d}"' for d in (*ATTRIBUTE_DIMS, *own))
    sql = (
        f"SELECT CASE WHEN ts >= ? THEN ? ELSE ? END AS ts, {dims},"
        f" {amount} AS cost_picousd FROM events{where} GROUP BY ALL"
    )
    first = start.to_pydatetime()
    groups = reader.sql(sql, [first, first, since, *params])
    groups["ts"] = pd.to_datetime(groups["ts"], utc=True)
    kept = [d for d in ATTRIBUTE_DIMS if d != finding.dimension]
    done = attribute_anomaly(
        groups,
        replace(a, ts=start),
        key_dim=finding.dimension,
        baseline_days=BASELINE_DAYS,
        dims=kept,
        top=5,
    )
    return replace(finding, anomaly=replace(a, contributors=done.contributors))


def _minutes(
    reader: Reader, dim: str, f: Filters, tz: str, least: float, col: str
) -> tuple[list[Anomaly], Offsets]:
    """Minute-grain anomalies of a short log: each minute against the 60 real minutes before
    it (the minutes a DST fall-back repeats are not merged)."""
    raw = reader.spend_by([dim], "minute", f, tz=tz)
    if raw.empty:
        return [], {}
    frame = pd.DataFrame(
        {
            "ds": pd.to_datetime(raw["period"]),
            "key": raw[dim].fillna("(none)").astype(str),
            "value": raw[col].astype(float),
            **({"offset": raw["utc_offset"]} if "utc_offset" in raw.columns else {}),
        }
    )
    frame["ds"] = _real_hours(frame, tz)
    wide = frame.pivot_table(index="ds", columns="key", values="value", aggfunc="sum")
    usual = wide.reindex(pd.date_range(wide.index.min(), wide.index.max(), freq="min"))
    median = usual.fillna(0.0).median()
    found = scan(frame[["ds", "key", "value"]], window=MINUTE_WINDOW, min_periods=15)
    out, offsets = [], {}
    for a in found:
        if a.excess_usd >= max(least, 2 * float(median.get(a.key, 0.0))):
            wall, offset = _walls(pd.Series([pd.Timestamp(a.ts)]), tz)
            b = replace(a, ts=pd.Timestamp(wall.to_numpy()[0]))
            offsets[id(b)] = int(offset.to_numpy()[0])
            out.append(b)
    return out, offsets


def scan_usage(
    reader: Reader,
    *,
    dims: Sequence[str] = ("org", "model"),
    metrics: Sequence[str] = ("spend", "requests"),
    grains: Sequence[str] = ("day", "hour", "minute"),
    filters: Filters | None = None,
    tz: str = "UTC",
    since: datetime | None = None,
    now: datetime | None = None,
    attribute_top: int = 40,
    min_excess_usd: float = MIN_EXCESS["spend"],
    min_excess_calls: float = MIN_EXCESS["requests"],
) -> list[Finding]:
    """Every material anomaly at or after ``since`` (default: 30 days ago), newest first.
    Attributed: the lead of every series and day (what its alert says, whatever else crossed
    a threshold that day) and the ``attribute_top`` largest by share of their series' usual
    day."""
    at = now or clock.now()
    least = {"spend": min_excess_usd, "requests": min_excess_calls}
    start = since or local_midnight(local_today(tz, at) - timedelta(days=30), tz)
    first = _local(start, tz)
    f = replace(filters or Filters(), start=None, end=at)
    hour_start = start - timedelta(days=BASELINE_DAYS)
    found: list[tuple[float, Finding]] = []
    for dim in dims:
        daily_all = reader.daily_series(f, by=dim, tz=tz)
        hourly_all = (
            reader.spend_by([dim], "hour", replace(f, start=hour_start), tz=tz)
            if "hour" in grains
            else None
        )
        for metric in metrics:
            col = METRICS[metric]
            daily = daily_all.rename(columns={col: "value"})[["ds", "key", "value"]]
            if daily.empty:
                continue
            usual = daily.groupby("key")["value"].median()
            runs: list[tuple[str, list[Anomaly]]] = []
            offsets: Offsets = {}
            if "day" in grains:
                runs.append(("day", _material(scan(daily), daily, "day", least[metric])))
            if "minute" in grains and daily["ds"].nunique() <= SHORT_DAYS:
                per_minute = least[metric] / 1440  # the day floor spread over its minutes
                minutes, more = _minutes(reader, dim, f, tz, per_minute, col)
                runs.append(("minute", minutes))
                offsets |= more
            if hourly_all is not None and not hourly_all.empty:
                hourly = pd.DataFrame(
                    {
                        "ds": hourly_all["period"],
                        "key": hourly_all[dim].fillna("(none)").astype(str),
                        "value": hourly_all[col].astype(float),
                        **(
                            {"offset": hourly_all["utc_offset"]}
                            if "utc_offset" in hourly_all.columns
                            else {}
                        ),
                    }
                )
                hours, more = _hourly(hourly, tz)
                runs.append(("hour", _material(hours, daily, "hour", least[metric])))
                offsets |= more
            for grain, anomalies in runs:
                for a in anomalies:
                    if pd.Timestamp(a.ts) < first:
                        continue
                    weight = a.excess_usd / max(float(usual.get(a.key, 0.0)), 1e-9)
                    fd = Finding(a, dim, metric, grain, tz, offsets.get(id(a)))
                    found.append((weight, fd))
    ranked = {id(fd) for _, fd in sorted(found, key=lambda x: -x[0])[:attribute_top]}
    ranked |= {id(lead(g)) for g in by_series_day([fd for _, fd in found]).values()}
    out = [
        _with_spent(reader, attribute(reader, fd, filters), f) if id(fd) in ranked else fd
        for _, fd in found
    ]
    return sorted(out, key=lambda fd: (fd.ts, fd.dimension, fd.key, fd.metric), reverse=True)
