"""Values the routing engine hands out: the route it chose and each model's health."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from core.state import BreakerState
from core.types import PICO

DEFAULT_OUTPUT_TOKENS = 256  # expected output when neither request nor policy sets max_tokens


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """Ordered candidates (best first, never empty), why the first one, and what was dropped.

    ``skipped`` pairs a model with a short reason ("circuit open (5 consecutive failures)",
    "context window 8192 < 9000 tokens", "unpriced"). ``strategy`` is the one applied
    ('explicit' for a request that names its model).
    """

    models: tuple[str, ...]
    reason: str
    skipped: tuple[tuple[str, str], ...] = ()
    strategy: str = "explicit"


@dataclass(frozen=True, slots=True)
class ModelHealth:
    """One model as this process saw it. ``breaker`` is the last state seen (not a fresh read:
    asking the shared breaker would use up a half-open probe)."""

    model: str
    ewma_latency_ms: float | None
    calls: int
    errors: int
    breaker: BreakerState
    consecutive_failures: int = 0


def usd_text(pico: int) -> str:
    """Display only: '$0.00042', '$0.013', '$1.25'. Two significant digits below one dollar;
    exact decimal arithmetic, half up (away from zero), a negative amount's sign first."""
    if pico == 0:
        return "$0"
    sign, size = ("-" if pico < 0 else ""), abs(pico)
    usd = Decimal(size) / PICO
    if size >= PICO:
        return f"{sign}${usd.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    decimals = max(2, 14 - len(str(size)))  # 1 - floor(log10(usd)), in exact integers
    return f"{sign}${usd.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP):f}"
