"""Trailing-window robust statistics for many series at once (numpy, no loop per point).

``X`` is a (time x keys) matrix with NaN where a key has no data yet. Row t's window is the
``w`` rows before it (t excluded, so a spike never hides in its own baseline). Windows are
sorted once (NaN sorts last) and quantiles are read off with the per-window valid count.
Rows are processed in chunks so a year of hourly data for many keys stays small in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CHUNK_CELLS = 2_000_000  # rows * keys * window per chunk


@dataclass
class WindowStats:
    count: np.ndarray  # valid points in the window
    median: np.ndarray
    mad: np.ndarray  # median absolute deviation from the window's median
    q1: np.ndarray
    q3: np.ndarray


def _quantile(sorted_w: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile of each window's first ``count`` (non-NaN) values."""
    pos = np.maximum(count - 1, 0) * q
    lo = np.floor(pos).astype(np.intp)
    hi = np.ceil(pos).astype(np.intp)
    a = np.take_along_axis(sorted_w, lo[..., None], axis=-1)[..., 0]
    b = np.take_along_axis(sorted_w, hi[..., None], axis=-1)[..., 0]
    out = a + (b - a) * (pos - lo)
    return np.where(count > 0, out, np.nan)


def trailing_stats(x: np.ndarray, window: int) -> WindowStats:
    rows, keys = x.shape
    padded = np.vstack([np.full((window, keys), np.nan), x])
    step = max(1, CHUNK_CELLS // max(1, keys * window))
    parts: list[WindowStats] = []
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        win = sliding_window_view(padded[r0 : r1 + window - 1], window, axis=0)
        srt = np.sort(win, axis=-1)
        count = (~np.isnan(win)).sum(axis=-1)
        med = _quantile(srt, count, 0.5)
        dev = np.sort(np.abs(win - med[..., None]), axis=-1)
        parts.append(
            WindowStats(
                count=count,
                median=med,
                mad=_quantile(dev, count, 0.5),
                q1=_quantile(srt, count, 0.25),
                q3=_quantile(srt, count, 0.75),
            )
        )
    if len(parts) == 1:
        return parts[0]
    return WindowStats(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in WindowStats.__dataclass_fields__)
    )
