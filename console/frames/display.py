"""Tables as people read them: timestamps in the configured zone without an offset, empty
cells blank (not None / NaN), headers in words (not snake_case)."""

from __future__ import annotations

import pandas as pd

WORDS = {"picousd": "", "usd": "(USD)", "ms": "ms", "id": "id"}


def header(name: str) -> str:
    """'error_type' -> 'error type', 'cost_then' -> 'cost then'."""
    return " ".join(w for w in str(name).split("_") if w).strip() or str(name)


def local_time(values: pd.Series, tz: str) -> pd.Series:
    """Aware timestamps as 'YYYY-MM-DD HH:MM:SS' wall-clock text in ``tz`` ('' when empty)."""
    ts = pd.to_datetime(values, utc=True, errors="coerce")
    text = ts.dt.tz_convert(tz).dt.strftime("%Y-%m-%d %H:%M:%S")
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
