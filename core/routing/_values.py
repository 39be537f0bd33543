"""Values the routing engine hands out: the route it chose and each model's health."""

from __future__ import annotations

from dataclasses import dataclass

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
    """Display only: '$0.00042', '$0.013', '$1.25'. Two significant digits below one dollar."""
    if pico <= 0:
        return "$0"
    usd = pico / PICO
    if pico >= PICO:
        return f"${usd:,.2f}"
    decimals = max(2, 14 - len(str(pico)))  # 1 - floor(log10(usd)), in exact integers
    return f"${usd:.{decimals}f}"
