"""What every kind of advice shares: the Advice value, the callables' types, money helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from numbers import Integral

import pandas as pd

from core.types import PICO, usd_places

DAYS_PER_MONTH = 30
TOKEN_CLASSES = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)

# reprice(model, {token class: count}) -> picodollars, None when the model has no price
Reprice = Callable[[str, Mapping[str, int]], int | None]
Candidates = Callable[[str], Sequence[str]]  # task -> models allowed for it
CachedRateRatio = Callable[[str], float | None]  # model -> cached/uncached input price
Quality = Callable[[str, str], float | None]  # (task, model) -> quality score, higher is better


@dataclass(frozen=True)
class Advice:
    kind: str  # 'model_switch' | 'response_cache' | 'prompt_cache'
    task: str
    title: str
    detail: str
    monthly_saving_usd: Decimal  # cents; 30-day month scaled from the observed period
    confidence: str  # 'high' | 'medium' | 'low'
    link: str  # console page to act on it: 'routing' | 'budgets'
    model: str | None = None  # the model the advice is about
    alternative: str | None = None  # model_switch: the suggested model


def monthly_usd(pico: int | float, period_days: float) -> Decimal:
    """Picodollars observed over ``period_days`` -> dollars per 30-day month, to the cent."""
    usd = Decimal(int(round(pico))) * DAYS_PER_MONTH / (Decimal(str(period_days)) * PICO)
    return usd.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def usd_text(pico: int | float) -> str:
    """'$1,234.57': exact picodollars (or a float of them) to the cent, half a cent up, as
    the console's tables round ($1.005 is '$1.01', not the binary float's '$1.00')."""
    # any integer (a numpy int64 of a pandas sum too) exactly: read as a float it lost the
    # picodollars past 2**53 (~$9,007) and could round the cent the other way
    exact = Decimal(int(pico)) if isinstance(pico, Integral) else Decimal(repr(float(pico)))
    return dollars_text(exact / PICO)


def dollars_text(usd: Decimal | float) -> str:
    """'$2.68' for 2.675 dollars: to the cent, half up. A float is read as its shortest
    decimal form (repr), so 2.675 is 2.675, not 2.67499999... as '{:.2f}' reads it."""
    d = usd if isinstance(usd, Decimal) else Decimal(repr(float(usd)))
    if not d.is_finite():
        return f"${d}"
    return ("-" if d < 0 else "") + usd_places(abs(d))


def observed_days(events: pd.DataFrame) -> float:
    """Calendar days the events span (first to last day, inclusive); at least 1."""
    if events.empty:
        return 1.0
    ts = pd.to_datetime(events["ts"])
    return float(max(1, (ts.max().normalize() - ts.min().normalize()).days + 1))


def billed_calls(events: pd.DataFrame) -> pd.DataFrame:
    """Calls that reached a model: not response-cache hits, not skipped by sampling."""
    keep = events["model"].notna()
    if "cache_hit" in events.columns:
        keep &= ~events["cache_hit"].fillna(False).astype(bool)
    if "ai_called" in events.columns:
        keep &= events["ai_called"].fillna(True).astype(bool)
    return events[keep]
