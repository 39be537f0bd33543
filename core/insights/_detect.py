"""Spend (or request-count) anomalies: robust trailing baselines, many series at once.

    scan(frame (ds, key, value), method='mad') -> list[Anomaly]

Methods (each compares a point with the ``window`` points before it, the point excluded):

| method    | expected           | flagged when                                 | threshold |
|-----------|--------------------|----------------------------------------------|-----------|
| 'mad'     | rolling median     | (x - median) / (1.4826 * MAD) > threshold    | 3.5       |
| 'iqr'     | rolling median     | x > Q3 + threshold * IQR (about 3.4 sigma)   | 2.0       |
| 'prophet' | Prophet fit (yhat) | x outside ``interval`` (0.99); one fit/key   | -         |

Flat-series guard: the spread (1.4826*MAD, IQR, Prophet's half-interval) is floored at
``rel_floor`` (default 5%) of the expected level, so a constant series (MAD == 0) or one with
tiny noise reports nothing. ``direction='up'`` (default) reports spikes only; 'both' adds drops.
Windows default to 28 points for daily data, 168 for hourly and 60 for minutes (frequency is
inferred from the smallest step); a point needs ``min_periods`` (default a quarter of the
window) earlier points to be judged.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ConfigError
from core.insights._windows import trailing_stats

METHODS = ("mad", "iqr", "prophet")
THRESHOLDS = {"mad": 3.5, "iqr": 2.0}
WINDOWS = {"D": 28, "h": 168, "min": 60}
ABS_FLOOR = 1e-9
MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.349


@dataclass(frozen=True)
class Contributor:
    """One value of one dimension and its share of an anomaly's excess spend."""

    dim: str  # 'user', 'model', 'task' or a combination like 'user+model'
    value: str
    spend_usd: float  # in the anomaly window
    expected_usd: float  # baseline per-day spend scaled to the window
    excess_usd: float
    share: float  # of the total excess (can exceed 1 when other values fell)


@dataclass(frozen=True)
class Anomaly:
    ts: pd.Timestamp
    value: float
    expected: float
    ratio: float  # value / expected (inf when expected is 0)
    excess_usd: float  # value - expected (series units when the series is not dollars)
    score: float  # robust z (mad), fences' multiple (iqr), z vs the interval (prophet)
    method: str
    key: Hashable | None = None
    contributors: list[Contributor] = field(default_factory=list)
    freq: str = "D"  # 'D' daily, 'h' hourly, 'min' minutes: it covers [ts, ts + 1 freq)


def _infer_freq(ds: pd.Series) -> str:
    if isinstance(ds.dtype, pd.DatetimeTZDtype):
        ds = ds.dt.tz_localize(None)  # wall clock: a DST day is 23 h but still a day
    uniq = np.unique(ds.to_numpy(dtype="datetime64[ns]"))
    if len(uniq) < 2:
        return "D"
    step = np.diff(uniq).min()
    if step < np.timedelta64(1, "h"):
        return "min"
    return "h" if step < np.timedelta64(1, "D") else "D"


def to_wide(frame: pd.DataFrame, value_col: str = "value") -> tuple[pd.DataFrame, str]:
    """(ds, key, value) -> a (ds x key) matrix, gaps as 0, NaN before a key's first point."""
    if "ds" not in frame.columns:
        raise ConfigError("frame needs a ds column", field="frame")
    if value_col not in frame.columns:
        alt = [c for c in ("cost_usd", "y", "requests") if c in frame.columns]
        if not alt:
            raise ConfigError(f"frame needs a {value_col} column", field="frame")
        value_col = alt[0]
    ds = pd.to_datetime(frame["ds"])  # tz-aware stays tz-aware: days are local days
    freq = _infer_freq(ds)
    keys = frame["key"] if "key" in frame.columns else pd.Series(0, index=frame.index)
    values = pd.to_numeric(frame[value_col].astype(float), errors="coerce")
    slot = ds.dt.floor(freq, ambiguous=False, nonexistent="shift_forward")
    wide = values.groupby([keys.to_numpy(), slot]).sum().unstack(0)
    if wide.empty:
        return wide, freq
    wide = wide.reindex(pd.date_range(wide.index.min(), wide.index.max(), freq=freq))
    started = wide.notna().cummax()
    return wide.fillna(0.0).where(started), freq


def scan(
    frame: pd.DataFrame,
    method: str = "mad",
    *,
    window: int | None = None,
    threshold: float | None = None,
    rel_floor: float = 0.05,
    min_excess: float = 0.0,
    direction: str = "up",
    min_periods: int | None = None,
    interval: float = 0.99,
    value_col: str = "value",
) -> list[Anomaly]:
    """Anomalies in every key's series of ``frame`` (ds, key, value), by time then key."""
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}", field="method")
    if direction not in ("up", "both"):
        raise ConfigError("direction must be 'up' or 'both'", field="direction")
    wide, freq = to_wide(frame, value_col)
    if wide.empty:
        return []
    has_key = "key" in frame.columns
    x = wide.to_numpy(dtype=float)
    if method == "prophet":
        from core.insights._anomaly_prophet import prophet_flags

        exp, score, flags = prophet_flags(wide, freq, interval, rel_floor, direction)
    else:
        w = window or WINDOWS[freq]
        if w < 3:
            raise ConfigError("window must be at least 3", field="window")
        thr = THRESHOLDS[method] if threshold is None else threshold
        need = min_periods or max(3, w // 4)
        exp, score, flags = _robust_flags(x, method, w, thr, need, rel_floor, direction)
    with np.errstate(invalid="ignore"):
        flags &= np.abs(x - exp) >= min_excess
    return _collect(wide, exp, score, flags, method, freq, has_key)


def _robust_flags(
    x: np.ndarray,
    method: str,
    window: int,
    thr: float,
    need: int,
    rel_floor: float,
    direction: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected, score, flags) for 'mad' or 'iqr' on a (time x keys) matrix."""
    st = trailing_stats(x, window)
    floor = np.maximum(rel_floor * np.abs(st.median), ABS_FLOOR)  # the flat-series guard
    if method == "mad":
        sigma = np.maximum(MAD_TO_SIGMA * st.mad, floor)
        high = (x - st.median) / sigma
        low = -high
    else:
        spread = np.maximum(st.q3 - st.q1, IQR_TO_SIGMA * floor)
        high = (x - st.q3) / spread
        low = (st.q1 - x) / spread
    with np.errstate(invalid="ignore"):
        flags = (st.count >= need) & (high > thr)
        if direction == "both":
            flags |= (st.count >= need) & (low > thr)
        score = np.where(high > thr, high, -low)
    return st.median, score, flags


def _collect(
    wide: pd.DataFrame,
    expected: np.ndarray,
    score: np.ndarray,
    flags: np.ndarray,
    method: str,
    freq: str,
    has_key: bool,
) -> list[Anomaly]:
    rows, cols = np.nonzero(flags)
    x = wide.to_numpy(dtype=float)
    out = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        v, e = float(x[r, c]), float(expected[r, c])
        out.append(
            Anomaly(
                ts=wide.index[r],
                value=v,
                expected=e,
                ratio=v / e if e > 0 else math.inf,
                excess_usd=v - e,
                score=float(score[r, c]),
                method=method,
                key=wide.columns[c] if has_key else None,
                freq=freq,
            )
        )
    return out


def _series_frame(series: pd.Series | pd.DataFrame) -> pd.DataFrame:
    if isinstance(series, pd.DataFrame):
        return series
    return pd.DataFrame({"ds": series.index, "value": series.to_numpy()})


def detect(
    series: pd.Series | pd.DataFrame, method: str = "mad", *, key: Hashable = None, **kw: Any
) -> list[Anomaly]:
    """One series (a Series indexed by time, or a (ds, value) frame); ``key`` is stamped on."""
    found = scan(_series_frame(series).drop(columns="key", errors="ignore"), method, **kw)
    return [a if key is None else _with_key(a, key) for a in found]


def _with_key(a: Anomaly, key: Hashable) -> Anomaly:
    from dataclasses import replace

    return replace(a, key=key)


def detect_mad(series: pd.Series | pd.DataFrame, **kw: Any) -> list[Anomaly]:
    return detect(series, "mad", **kw)


def detect_iqr(series: pd.Series | pd.DataFrame, **kw: Any) -> list[Anomaly]:
    return detect(series, "iqr", **kw)


def detect_prophet(series: pd.Series | pd.DataFrame, **kw: Any) -> list[Anomaly]:
    return detect(series, "prophet", **kw)
