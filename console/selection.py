"""What the sidebar selected (Selection): a time range with dimension filters (Scope) and a
display currency (Money). Pure code, no Streamlit: time-range arithmetic and exact money
formatting.

Money stays integer picodollars until it is shown; conversion to another currency uses the
Decimal rate (units per 1 USD) and rounds half-up to the cent only for display.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.periods import PRESETS, kpi_windows, local_midnight, range_bounds, today_in
from core.types import PICO, usd_places
from core.usage import Filters

FILTER_DIMS: tuple[str, ...] = (
    "org",
    "project",
    "user",
    "model",
    "provider",
    "task",
    "key",
    "tag",
)
DEFAULT_RATES: dict[str, str] = {"USD": "1", "EUR": "0.92", "GBP": "0.79"}
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
CENT = Decimal("0.01")
_EXACT = 10**28  # Decimal's default precision: products below it are exact
__all__ = [
    "FILTER_DIMS",
    "PRESETS",
    "Money",
    "Scope",
    "Selection",
    "change",
    "kpi_windows",
    "local_midnight",
    "range_bounds",
    "rates_with_defaults",
    "today_in",
]


@dataclass(frozen=True)
class Scope:
    """Which events: [start, end) as aware UTC datetimes, the time zone for calendar
    buckets, and per-dimension value filters (an empty tuple means "all")."""

    start: datetime
    end: datetime
    tz: str = "UTC"
    org: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    user: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    key: tuple[str, ...] = ()  # gateway virtual keys, by name
    tag: tuple[str, ...] = ()  # calls carrying any of these tags (cost centres)

    def filters(self, **overrides: Any) -> Filters:
        """core.usage Filters for this scope; ``start``/``end``/``status`` may be overridden."""
        values: dict[str, Any] = {d: getattr(self, d) or None for d in FILTER_DIMS}
        values.update(start=self.start, end=self.end)
        values.update(overrides)
        return Filters(**values)


@dataclass(frozen=True)
class Money:
    """A display currency: ``rate`` units of ``currency`` per 1 USD (a Decimal string)."""

    currency: str = "USD"
    rate: str = "1"

    @property
    def symbol(self) -> str:
        return SYMBOLS.get(self.currency, self.currency + " ")

    def amount(self, pico: int) -> Decimal:
        """Exact amount in this currency."""
        return Decimal(int(pico)) * Decimal(self.rate) / PICO

    def cents(self, pico: int) -> Decimal:
        return self.amount(pico).quantize(CENT, rounding=ROUND_HALF_UP)

    def fmt(self, pico: int, places: int = 2) -> str:
        return self.text(self.amount(pico), places)

    def text(self, value: Decimal, places: int = 2) -> str:
        """An exact amount in this currency to ``places`` decimals, half up (away from zero),
        the sign first: '-$1.25'."""
        return usd_places(value, places, self.symbol)

    def table(self, pico: int, places: int = 2) -> str:
        """Table money, as the Budgets page shows it: to the cent (or ``places`` decimals),
        and a non-zero amount under half the last place reads '<$0.01' (never '$0.00'; to six
        places '<$0.000001'); a negative one (a refund or credit) keeps its sign first, as
        every negative amount does: '-<$0.01', '-$1.25'."""
        step = Decimal(1).scaleb(-places)
        value = self.amount(pico).quantize(step, rounding=ROUND_HALF_UP)
        if pico and value == 0:
            return f"{'-' if pico < 0 else ''}<{self.symbol}{step}"
        return self.fmt(pico, places)

    def tables(self, picos: Any) -> list[str]:
        """``table`` of many amounts, in integer arithmetic (a chart's tooltips: thousands of
        rows; the same text as ``table``, about ten times faster)."""
        num, den = Decimal(self.rate).as_integer_ratio()
        unit = 2 * den * PICO
        out = []
        for p in picos:
            p = int(p)
            cents = (2 * abs(p) * num * 100 + den * PICO) // unit  # half a cent up
            sign = "-" if p < 0 else ""
            if p and not cents:
                out.append(f"{sign}<{self.symbol}0.01")
                continue
            out.append(f"{sign}{self.symbol}{cents // 100:,}.{cents % 100:02d}")
        return out

    def floats(self, picos: Any) -> list[float]:
        """Chart values: the exact amount of each sum, as a float (display only). The same
        floats as ``float(self.amount(p))``, about four times faster: where that Decimal
        product is exact (under 28 digits: every real amount), the quotient of two integers,
        which Python rounds once, as ``float`` rounds the exact Decimal."""
        rate = Decimal(self.rate)
        num, den = rate.as_integer_ratio()
        digits = int("".join(map(str, rate.as_tuple().digits)) or 0)
        unit = den * PICO
        zero = float(self.amount(0))  # Decimal's signed zero
        out = []
        for p in picos:
            p = int(p)
            if 0 < abs(p) * digits < _EXACT:
                out.append(p * num / unit)
            else:
                out.append(zero if p == 0 else float(self.amount(p)))
        return out


@dataclass(frozen=True)
class Selection:
    """The sidebar's choice, which every spend page reads (``sidebar.current_selection``)."""

    scope: Scope
    money: Money = field(default_factory=Money)
    preset: str = "30d"

    def describe(self) -> str:
        zone = ZoneInfo(self.scope.tz)
        first = self.scope.start.astimezone(zone).date()
        last = (self.scope.end - timedelta(microseconds=1)).astimezone(zone).date()
        label = PRESETS.get(self.preset, "Custom")
        span = f"{first:%d %b %Y}" if first == last else f"{first:%d %b %Y} – {last:%d %b %Y}"
        return f"{label}: {span} ({self.scope.tz}) · {self.money.currency}"


def change(now_pico: int, before_pico: int) -> str | None:
    """'+12.5%' style change, or None when there is nothing to compare with."""
    if before_pico <= 0:
        return None
    pct = (Decimal(now_pico) - before_pico) * 100 / before_pico
    return f"{pct:+.1f}%"


def rates_with_defaults(stored: Mapping[str, Any] | None) -> dict[str, str]:
    """USD, the default EUR/GBP rates, and every configured rate (configured ones win)."""
    rates = dict(DEFAULT_RATES)
    for code, rate in (stored or {}).items():
        try:
            if Decimal(str(rate)) > 0:
                rates[str(code)] = str(rate)
        except ArithmeticError:
            continue
    rates["USD"] = "1"
    return rates
