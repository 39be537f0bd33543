"""Backtest: refit on all but the last N days and score the held-out days.

Error metric: MAPE over the held-out days whose actual spend is > 0 (zero days are skipped and
counted in ``zero_days_skipped``). When fewer than half the held-out days have spend, MAPE is
meaningless and WAPE (sum |error| / sum actual) is reported instead (``metric == 'wape'``).
Both the model and the seasonal-naive baseline are scored with the same metric.

Seasonal naive = "same weekday last week" from the forecast origin: held-out day i is predicted
by the last training week's day at the same weekday (no peeking into the held-out days).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.insights._projection import interval_label, project

SEASON = 7


@dataclass(frozen=True)
class Backtest:
    holdout_days: int
    mape: float | None  # fraction (0.1 = 10%); WAPE when metric == 'wape'; None: all zero
    naive_mape: float | None  # seasonal naive, same metric
    coverage: dict[str, float] = field(default_factory=dict)  # '80' -> share of days inside
    metric: str = "mape"  # 'mape' | 'wape'
    zero_days_skipped: int = 0
    method: str = "prophet"  # method used on the training part

    @property
    def coverage_80(self) -> float | None:
        return self.coverage.get("80")

    @property
    def coverage_95(self) -> float | None:
        return self.coverage.get("95")

    @property
    def beats_naive(self) -> bool | None:
        if self.mape is None or self.naive_mape is None:
            return None
        return self.mape < self.naive_mape


def default_holdout(n_days: int) -> int:
    return min(14, max(7, n_days // 5))


def error_metric(actual: np.ndarray, pred: np.ndarray) -> tuple[float | None, str, int]:
    """(value, 'mape'|'wape', zero days skipped) — see the module docstring."""
    nonzero = actual > 0
    k = int(nonzero.sum())
    if k == 0:
        return None, "mape", len(actual)
    if k * 2 < len(actual):
        return float(np.abs(actual - pred).sum() / actual.sum()), "wape", 0
    err = np.abs(actual[nonzero] - pred[nonzero]) / actual[nonzero]
    return float(err.mean()), "mape", len(actual) - k


def seasonal_naive(train_y: np.ndarray, horizon: int) -> np.ndarray:
    last_week = train_y[-SEASON:]
    return np.array([last_week[i % len(last_week)] for i in range(horizon)], dtype=float)


def run_backtest(
    hist: pd.DataFrame,
    holdout: int,
    widths: Sequence[float],
    *,
    holidays_country: str | None = None,
    samples: int = 300,
    seed: int = 0,
) -> Backtest | None:
    """None when there is not even a week of training data left after the holdout."""
    if len(hist) - holdout < SEASON or holdout < 1:
        return None
    train, test = hist.iloc[:-holdout], hist.iloc[-holdout:]
    proj = project(
        train, holdout, widths, holidays_country=holidays_country, samples=samples, seed=seed
    )
    fut = proj.frame[~proj.frame["is_history"]].iloc[:holdout]
    actual = test["y"].to_numpy(dtype=float)
    mape, metric, skipped = error_metric(actual, fut["yhat"].to_numpy(dtype=float))
    naive = seasonal_naive(train["y"].to_numpy(dtype=float), holdout)
    naive_mape, _, _ = error_metric(actual, naive)
    coverage = {}
    for w in widths:
        lab = interval_label(w)
        lo = fut[f"lower_{lab}"].to_numpy(dtype=float)
        hi = fut[f"upper_{lab}"].to_numpy(dtype=float)
        coverage[lab] = float(((actual >= lo) & (actual <= hi)).mean())
    return Backtest(holdout, mape, naive_mape, coverage, metric, skipped, proj.method)
