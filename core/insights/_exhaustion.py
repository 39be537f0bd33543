"""When does a budget run out? Cumulative forecast spend against a window's limit.

``spent_so_far`` is the actual spend from ``window_start`` through the forecast's last history
day; forecast days after that (and inside the window) are added on top. The crossing date is
the first day whose end-of-day cumulative spend reaches the limit: from ``yhat`` (expected),
from the upper bound of the widest interval (earliest) and from its lower bound (latest, None
when even the pessimistic-low path stays under the limit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd

from core.errors import ConfigError
from core.insights._forecast_model import Forecast
from core.insights._projection import interval_label

TAIL_DAYS = 7  # beyond the forecast horizon: extend flat at the mean of its last week


@dataclass(frozen=True)
class Exhaustion:
    date: dt.date | None  # expected day the limit is reached; None: not within the window
    earliest: dt.date | None  # from the interval's upper bound
    latest: dt.date | None  # from the interval's lower bound; None: may never be reached
    projected_total_usd: Decimal  # expected end-of-window total (spent + forecast)
    projected_low_usd: Decimal
    projected_high_usd: Decimal
    spent_usd: Decimal
    limit_usd: Decimal
    already_exceeded: bool
    message: str = ""

    @property
    def will_exceed(self) -> bool:
        return self.projected_total_usd >= self.limit_usd

    @property
    def over_by_usd(self) -> Decimal:
        """Projected end-of-window total minus the limit (negative: headroom)."""
        return self.projected_total_usd - self.limit_usd

    @property
    def utilisation(self) -> float:
        return float(self.projected_total_usd / self.limit_usd)


def _usd(x: float | Decimal) -> Decimal:
    """The model's total as an exact Decimal (a float read as its shortest decimal form), not
    rounded: it is rounded once, half up, where it is shown (after any currency conversion)."""
    return x if isinstance(x, Decimal) else Decimal(repr(float(x)))


def _decimal(x: Decimal | float) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _crossing(days: list[date], cumulative: np.ndarray, limit: float) -> date | None:
    hit = np.flatnonzero(cumulative >= limit)
    return days[int(hit[0])] if len(hit) else None


def exhaustion(
    forecast: Forecast,
    *,
    spent_so_far: Decimal | float,
    limit: Decimal | float,
    window_start: date,
    window_end: date,
) -> Exhaustion:
    if float(limit) <= 0:
        raise ConfigError("limit must be positive", field="limit")
    if window_end < window_start:
        raise ConfigError("window_end is before window_start", field="window_end")
    spent, lim = float(spent_so_far), float(limit)
    widest = interval_label(max(forecast.intervals))
    lo_col, hi_col = f"lower_{widest}", f"upper_{widest}"
    fut = forecast.future
    days_all = [ts.date() for ts in fut["ds"]]
    cols = {c: fut[c].to_numpy(dtype=float) for c in ("yhat", lo_col, hi_col)}
    notes = []
    last_fc = days_all[-1] if days_all else None
    if last_fc is not None and window_end > last_fc:
        extra = (window_end - last_fc).days
        days_all += [last_fc + timedelta(days=i) for i in range(1, extra + 1)]
        for c, v in cols.items():
            cols[c] = np.concatenate([v, np.full(extra, v[-TAIL_DAYS:].mean())])
        notes.append(
            f"forecast ends {last_fc}; the last {extra} days of the window use its final"
            " week's average"
        )
    keep = np.array([window_start <= d <= window_end for d in days_all], dtype=bool)
    days = [d for d, k in zip(days_all, keep, strict=True) if k]
    cum = {c: spent + np.cumsum(v[keep]) for c, v in cols.items()}
    total = {c: float(v[-1]) if len(v) else spent for c, v in cum.items()}
    already = spent >= lim
    if already:
        last_hist = forecast.last_history_day or window_start
        today = min(window_end, max(window_start, last_hist))
        when: tuple[date | None, date | None, date | None] = (today, today, today)
        notes.insert(0, "the limit is already reached")
    else:
        when = (
            _crossing(days, cum["yhat"], lim),
            _crossing(days, cum[hi_col], lim),
            _crossing(days, cum[lo_col], lim),
        )
    return Exhaustion(
        date=when[0],
        earliest=when[1],
        latest=when[2],
        projected_total_usd=_usd(total["yhat"]),
        projected_low_usd=_usd(total[lo_col]),
        projected_high_usd=_usd(total[hi_col]),
        spent_usd=_decimal(spent_so_far),
        limit_usd=_decimal(limit),
        already_exceeded=already,
        message="; ".join(notes),
    )


def window_spend(history: pd.DataFrame, window_start: date, through: date | None = None) -> float:
    """Actual spend in a (ds, y) history from ``window_start`` through ``through`` (inclusive)."""
    ds = pd.to_datetime(history["ds"]).dt.date
    mask = ds >= window_start
    if through is not None:
        mask &= ds <= through
    return float(history.loc[mask, "y"].astype(float).sum())
