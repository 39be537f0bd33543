"""Reading typed text: a widget or table value as stripped text, a whole number."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.errors import ConfigError


def text_value(values: Mapping[Any, Any], name: str) -> str:
    value = values.get(name)
    return "" if value is None or value != value else str(value).strip()


def parse_int(text: str, field: str) -> int | None:
    if not text:
        return None
    try:
        return int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise ConfigError(f"{field}: must be a whole number (got {text!r})", field=field) from None
