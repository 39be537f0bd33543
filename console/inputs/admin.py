"""Admin settings values: display rates typed as 'EUR=0.92, GBP=0.79'."""

from __future__ import annotations

from core.errors import ConfigError


def parse_rates(text: str) -> dict[str, str]:
    """'EUR=0.92, GBP=0.79' -> {'EUR': '0.92', 'GBP': '0.79'} (core validates the values)."""
    rates: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        code, sep, rate = part.partition("=")
        if not sep:
            raise ConfigError(
                f"currency_rates: write CODE=rate, not {part.strip()!r}", field="currency_rates"
            )
        rates[code.strip().upper()] = rate.strip()
    return rates
