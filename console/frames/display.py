"""Tables as people read them: timestamps in the configured zone (with an offset only where a
DST fall-back repeats the wall-clock time), empty cells blank (not None / NaN), headers in
words (not snake_case)."""

from __future__ import annotations

import pandas as pd

WORDS = {"picousd": "", "usd": "(USD)", "ms": "ms", "id": "id"}


def header(name: str) -> str:
    """'error_type' -> 'error type', 'cost_then' -> 'cost then'."""
    return " ".join(w for w in str(name).split("_") if w).strip() or str(name)


HOUR = pd.Timedelta(hours=1)


def _offset(ts: pd.Series, tz: str) -> pd.Series:
    """Each UTC instant's offset from UTC in ``tz``."""
    return ts.dt.tz_convert(tz).dt.tz_localize(None) - ts.dt.tz_localize(None)


def local_time(values: pd.Series, tz: str) -> pd.Series:
    """Aware timestamps as 'YYYY-MM-DD HH:MM:SS' wall-clock text in ``tz`` ('' when empty).
    A wall-clock time a DST fall-back repeats ends with its UTC offset ('... -04:00'), so
    the two calls at 01:30 of that night read apart."""
    ts = pd.to_datetime(values, utc=True, errors="coerce")
    text = ts.dt.tz_convert(tz).dt.strftime("%Y-%m-%d %H:%M:%S")
    if tz != "UTC" and ts.notna().any():
        here = _offset(ts, tz)
        repeated = (_offset(ts + HOUR, tz) < here) | (_offset(ts - HOUR, tz) > here)
        if repeated.any():
            minutes = (here / pd.Timedelta(minutes=1)).fillna(0).astype("int64")
            marks = [
                f" {'-' if m < 0 else '+'}{abs(m) // 60:02d}:{abs(m) % 60:02d}" for m in minutes
            ]
            text = text.where(~repeated, text + pd.Series(marks, index=text.index))
    return text.where(ts.notna(), "")


def readable(frame: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Every datetime column in ``tz`` as text, object columns' None/NaN as '', headers in
    words."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s) or (
            s.dtype == object and len(s) and any(hasattr(v, "tzinfo") for v in s.dropna()[:1])
        ):
            out[col] = local_time(s, tz)
        elif s.dtype == object or (len(s) and s.isna().all()):
            out[col] = s.astype(object).where(s.notna(), "")
    return out.rename(columns={c: header(c) for c in out.columns})
