"""Typed amounts in the console's forms: a comma only groups thousands, so a decimal comma is
an error naming the field, never a number 10 or 100 times larger ('2,50' per 1M tokens was
saved as $250, a key's '1,50' budget as $150, a token limit of '1,5' as 15)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from console.inputs.budgets import parse_usd
from console.inputs.keys import parse_key
from console.inputs.pricing import rate
from console.inputs.text import parse_int
from core.errors import ConfigError


@pytest.mark.parametrize("typed", ["2,50", "1,5", "12,34,5", "1,2345", ",5"])
def test_a_decimal_comma_is_an_error_naming_the_field(typed: str) -> None:
    with pytest.raises(ConfigError, match="^input: commas group thousands"):
        rate(typed, "input", False, optional=False)
    with pytest.raises(ConfigError, match="^limit_usd: commas group thousands"):
        parse_usd(typed, "limit_usd")
    with pytest.raises(ConfigError, match="^budget_usd: commas group thousands"):
        parse_key({"name": "k", "budget_usd": typed}, date(2026, 12, 5))
    with pytest.raises(ConfigError, match="^limit_tokens: commas group thousands"):
        parse_int(typed, "limit_tokens")


def test_thousands_commas_and_dollar_signs_still_read() -> None:
    assert rate("$1,250.50", "input", False, optional=False) == Decimal("1250.50")
    assert rate("0.000002", "input", True, optional=False) == Decimal("2")
    assert parse_usd(" $12,345.6 ", "limit_usd") == Decimal("12345.6")
    assert parse_key({"name": "k", "budget_usd": "1,000"}, date(2026, 12, 5)).budget_usd == 1000
    assert parse_int("2,500,000", "limit_tokens") == 2_500_000
