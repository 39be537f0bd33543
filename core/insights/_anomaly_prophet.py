"""Prophet-residual anomalies: one in-sample fit per key, points outside the interval.

Slow (a fit per key) and optional; the rolling detectors in ``anomalies`` are the default.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd

from core.insights._prophet import fit_and_sample

MIN_POINTS = 14


def prophet_flags(
    wide: pd.DataFrame, freq: str, interval: float, rel_floor: float, direction: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected, score, flags) matrices shaped like ``wide``."""
    shape = wide.shape
    expected = np.full(shape, np.nan)
    score = np.full(shape, np.nan)
    flags = np.zeros(shape, dtype=bool)
    z = NormalDist().inv_cdf(0.5 + interval / 2)
    for c, col in enumerate(wide.columns):
        s = wide[col]
        valid = s.notna().to_numpy()
        if valid.sum() < MIN_POINTS:
            continue
        hist = pd.DataFrame({"ds": s.index[valid], "y": s.to_numpy(dtype=float)[valid]})
        run = fit_and_sample(
            hist, 0, (interval,), freq=freq, weekly=True, daily=freq == "h", samples=200
        )
        lo, hi = run.bounds[interval]
        yhat = run.yhat[: len(hist)]
        y = hist["y"].to_numpy(dtype=float)
        floor = np.maximum(rel_floor * np.abs(yhat), 1e-9)
        half = np.maximum((hi[: len(hist)] - lo[: len(hist)]) / 2, floor * z)
        sc = (y - yhat) / (half / z)
        big = np.abs(y - yhat) > floor
        up = (y > hi[: len(hist)]) & big
        down = (y < lo[: len(hist)]) & big if direction == "both" else np.zeros_like(up)
        idx = np.flatnonzero(valid)
        expected[idx, c] = yhat
        score[idx, c] = sc
        flags[idx, c] = up | down
    return expected, score, flags
