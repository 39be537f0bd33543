"""Reading typed text: a widget or table value as stripped text, a whole number."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError


def text_value(values: Mapping[Any, Any], name: str) -> str:
    value = values.get(name)
    return "" if value is None or value != value else str(value).strip()


THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?")


def ungrouped(text: str, field: str) -> str:
    """A typed number without its '$' and thousands commas: '$1,234.50' -> '1234.50'. A
    comma only groups thousands: '1,50' is an error (never 150, nor a guessed decimal comma)."""
    number = text.strip().removeprefix("$").strip()
    if "," in number and not THOUSANDS.fullmatch(number):
        raise ConfigError(
            f"{field}: commas group thousands (1,000.50); write decimals with a point"
            f" (got {text!r})",
            field=field,
        )
    return number.replace(",", "")


def parse_int(text: str, field: str) -> int | None:
    if not text:
        return None
    try:
        return int(ungrouped(text, field).replace("_", ""))
    except ValueError:
        raise ConfigError(f"{field}: must be a whole number (got {text!r})", field=field) from None
