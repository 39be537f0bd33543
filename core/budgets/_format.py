"""Human-readable amounts and the messages of blocked calls and threshold alerts."""

from __future__ import annotations

from decimal import Decimal

from core.control import Budget
from core.types import pico_to_usd, usd_places

from ._window import Window, scope_text

CENT = Decimal("0.01")


def usd(picousd: int) -> str:
    """'$93.10'; amounts under a cent keep up to six decimals ('$0.000042')."""
    d = pico_to_usd(picousd)
    if d != 0 and abs(d) < CENT:
        text = f"{d.quantize(Decimal('0.000001')).normalize():f}"
        return ("-$" + text[1:]) if text.startswith("-") else "$" + text
    return ("-" if d < 0 else "") + usd_places(abs(d))  # half a cent up, as the tables


def amount(metric: str, value: int) -> str:
    return usd(value) if metric == "usd" else f"{value:,} tokens"


def head(budget: Budget) -> str:
    return f"budget '{budget.name}' ({scope_text(budget)})"


def where(win: Window) -> str:
    return f"in window {win.label} ({win.period}, {win.tz})"


def exceeded(
    budget: Budget, win: Window, metric: str, spent: int, limit: int, hard: int, est: int, cap: int
) -> str:
    """Why a call was blocked: budget, limit, spend so far, window, and by how much."""
    text = f"{head(budget)}: spent {_of(metric, spent, limit)} {where(win)}"
    if hard > limit:
        text += f"; critical requests may reach {amount(metric, hard)}"
    which = "the hard cap" if cap == hard and hard > limit else "the limit"
    return text + (
        f"; this call's estimate of {amount(metric, est)} would go "
        f"{amount(metric, spent + est - cap)} past {which}"
    )


def threshold(budget: Budget, win: Window, pct: int, metric: str, spent: int, limit: int) -> str:
    return f"{head(budget)} reached {pct}% {where(win)}: spent {_of(metric, spent, limit)}"


def _of(metric: str, spent: int, limit: int) -> str:
    """'$93.10 of $100.00 limit' or '600 of 1,000 token limit'."""
    if metric == "usd":
        return f"{usd(spent)} of {usd(limit)} limit"
    return f"{spent:,} of {limit:,} token limit"
