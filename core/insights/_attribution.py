"""Who caused an anomaly: each value's spend in the anomaly window minus its baseline.

Windows are half-open [start, end); a ``date`` means midnight. The baseline is the per-day
spend in [baseline_start, baseline_end) scaled to the anomaly window's length, per value of
each dimension. ``dims`` entries may be a column name or a tuple of names ('user', 'model')
for combinations, reported as dim 'user+model' and value 'alice / gpt-4o'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import pandas as pd

from core.errors import ConfigError
from core.insights._detect import Anomaly, Contributor
from core.types import PICO

Dim = str | tuple[str, ...]


def _ts(value: date | datetime | pd.Timestamp, like: pd.Series) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    tz = getattr(like.dtype, "tz", None)
    if tz is not None and ts.tzinfo is None:
        return ts.tz_localize(tz)
    if tz is None and ts.tzinfo is not None:
        return ts.tz_convert("UTC").tz_localize(None)
    return ts


def _days(start: pd.Timestamp, end: pd.Timestamp, name: str) -> float:
    days = (end - start) / pd.Timedelta(days=1)
    if days <= 0:
        raise ConfigError(f"{name} window is empty (end <= start)", field=name)
    return float(days)


def attribute(
    events: pd.DataFrame,
    start: date | datetime | pd.Timestamp,
    end: date | datetime | pd.Timestamp,
    baseline_start: date | datetime | pd.Timestamp,
    baseline_end: date | datetime | pd.Timestamp,
    dims: Sequence[Dim] = ("user", "model", "task"),
    top: int = 5,
    *,
    filters: Mapping[str, object] | None = None,
) -> list[Contributor]:
    """Top ``top`` contributors to the excess per dim (largest excess first), dims in order."""
    ts = pd.to_datetime(events["ts"])
    s, e = _ts(start, ts), _ts(end, ts)
    bs, be = _ts(baseline_start, ts), _ts(baseline_end, ts)
    window_days, base_days = _days(s, e, "start"), _days(bs, be, "baseline_start")
    mask = pd.Series(True, index=events.index)
    for col, want in (filters or {}).items():
        mask &= events[col] == want
    in_win = mask & (ts >= s) & (ts < e)
    in_base = mask & (ts >= bs) & (ts < be)
    usd = events["cost_picousd"].astype(float) / PICO
    out: list[Contributor] = []
    for dim in dims:
        cols = [dim] if isinstance(dim, str) else list(dim)
        missing = [c for c in cols if c not in events.columns]
        if missing:
            raise ConfigError(f"events have no column {missing[0]!r}", field="dims")
        label = (
            events[cols].astype(str).agg(" / ".join, axis=1)
            if len(cols) > 1
            else (events[cols[0]].astype(str))
        )
        spend = usd[in_win].groupby(label[in_win]).sum()
        base = usd[in_base].groupby(label[in_base]).sum() * (window_days / base_days)
        table = pd.DataFrame({"spend": spend, "expected": base}).fillna(0.0)
        table["excess"] = table["spend"] - table["expected"]
        total = float(table["excess"].sum())
        best = table[table["excess"] > 0].sort_values("excess", ascending=False).head(top)
        name = dim if isinstance(dim, str) else "+".join(dim)
        out += [
            Contributor(
                dim=name,
                value=str(value),
                spend_usd=float(row.spend),
                expected_usd=float(row.expected),
                excess_usd=float(row.excess),
                share=float(row.excess) / total if total > 0 else 0.0,
            )
            for value, row in best.iterrows()
        ]
    return out


def attribute_anomaly(
    events: pd.DataFrame,
    anomaly: Anomaly,
    *,
    key_dim: str | None = "org",
    baseline_days: float = 28,
    dims: Sequence[Dim] = ("user", "model", "task"),
    top: int = 5,
) -> Anomaly:
    """The anomaly with ``contributors`` filled: its own period vs the ``baseline_days``
    before it, restricted to ``key_dim == anomaly.key`` when the anomaly has a key."""
    start = pd.Timestamp(anomaly.ts)
    step = {"h": pd.Timedelta(hours=1), "min": pd.Timedelta(minutes=1)}
    end = start + step.get(anomaly.freq, pd.Timedelta(days=1))
    if anomaly.freq == "min":  # a minute is judged against the hour before it
        baseline_days = 1 / 24
    filters = {key_dim: anomaly.key} if key_dim and anomaly.key is not None else None
    found = attribute(
        events,
        start,
        end,
        start - timedelta(days=baseline_days),
        start,
        dims,
        top,
        filters=filters,
    )
    return replace(anomaly, contributors=found)
