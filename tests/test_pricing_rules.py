"""Pricing rules: exact fractional rates and their rounding, batch without a batch API,
batch and cache discounts that stack (or not) per provider, 1-hour cache writes, prompts
over the context window, the prompt-cache saving, and the shipped rows for the new
providers. Expected values are worked out by hand from the published rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest

from core.errors import ConfigError
from core.pricing import (
    FLAG_BATCH_UNAVAILABLE,
    FLAG_OVER_CONTEXT,
    Catalog,
    PriceRow,
    cost_of,
    load_catalog,
    max_cost,
    price,
    prompt_cache_saving,
)
from core.types import Usage

M = 10**6  # pUSD per token for USD 1 per 1M tokens


def usd(*terms: tuple[str, int]) -> int:
    """Sum of (USD per 1M tokens, tokens) as exact pUSD (rates with <= 6 decimals)."""
    return sum(int(Decimal(rate) * M) * tokens for rate, tokens in terms)


# ---- exact fractional rates -------------------------------------------------------------
FRACTIONAL = PriceRow.from_usd(
    "frac", "p", input="0.0046875", output="0.12345678912", context_window=10**9
)


def test_a_fractional_rate_is_stored_exactly_and_each_class_rounds_half_to_even() -> None:
    assert FRACTIONAL.input == Fraction(9375, 2)  # 4687.5 pUSD per token
    assert FRACTIONAL.output == Fraction("123456.78912")
    assert FRACTIONAL.usd("input") == Decimal("0.0046875") and not FRACTIONAL.whole
    one = price(Usage(input_tokens=1), FRACTIONAL)  # 4687.5 -> 4688 (even)
    three = price(Usage(input_tokens=3), FRACTIONAL)  # 14062.5 -> 14062 (even)
    assert (one.input, three.input) == (4688, 14062)
    out = price(Usage(output_tokens=7), FRACTIONAL)  # 864197.52384 -> 864198
    assert out.output == 864198 and out.total == 864198
    both = price(Usage(input_tokens=1, output_tokens=7), FRACTIONAL)
    assert both.total == 4688 + 864198  # the call's cost is the sum of its rounded classes
    assert max_cost(FRACTIONAL, 1, 1) == 4688 + 123457  # reservations round up


def test_whole_rates_stay_integers_and_price_as_before() -> None:
    row = load_catalog().lookup("gpt-4o")
    assert row.whole and isinstance(row.input, int)
    u = Usage(input_tokens=1000, cached_input_tokens=400, output_tokens=200)
    assert price(u, row).total == 1000 * 2_500_000 + 400 * 1_250_000 + 200 * 10_000_000


# ---- batch ------------------------------------------------------------------------------
def test_batch_without_a_batch_api_is_priced_at_standard_rates_and_flagged() -> None:
    cat = load_catalog()
    u = Usage(input_tokens=10_000, cached_input_tokens=10_000, output_tokens=1_000)
    batch = cost_of(cat, "deepseek-chat", u, date(2025, 11, 1), batch=True)
    plain = cost_of(cat, "deepseek-chat", u, date(2025, 11, 1))
    assert batch.total == plain.total == usd(("0.28", 10**4), ("0.028", 10**4), ("0.42", 10**3))
    assert batch.flags == (FLAG_BATCH_UNAVAILABLE,) and plain.flags == ()
    for model in ("grok-4", "command-r"):  # new providers: no batch API priced
        assert cost_of(cat, model, Usage(input_tokens=10), batch=True).flags == (
            FLAG_BATCH_UNAVAILABLE,
        )


def test_anthropic_batch_discount_stacks_with_cache_reads_and_writes() -> None:
    u = Usage(
        input_tokens=10_000,
        cached_input_tokens=20_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=1_000,
        output_tokens=2_000,
    )
    got = cost_of(load_catalog(), "claude-sonnet-4-5", u, batch=True)
    # 50% of input 3.00, read 0.30, 5m write 3.75, 1h write 6.00, output 15.00
    want = usd(("1.50", 10_000), ("0.15", 20_000), ("1.875", 2_000), ("3.00", 1_000))
    assert got.total == want + usd(("7.50", 2_000)) and got.flags == ()


def test_openai_batch_halves_cached_input_google_keeps_the_cache_rate() -> None:
    cat = load_catalog()
    u = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000)
    assert cost_of(cat, "gpt-5", u, batch=True).total == usd(("0.625", 10**6), ("0.0625", 10**6))
    gem = cost_of(cat, "gemini-2.5-flash", u, batch=True)
    g = cat.lookup("gemini-2.5-flash")
    assert gem.cached_input == 10**6 * g.cached_input  # not discounted
    assert gem.input == 10**6 * g.batch_input  # type: ignore[operator]


# ---- cache writes, context window, saving ------------------------------------------------
def test_one_hour_cache_writes_cost_twice_the_input_rate() -> None:
    row = load_catalog().lookup("claude-sonnet-4-5")
    assert (row.cache_write, row.cache_write_1h) == (3_750_000, 6_000_000)
    u = Usage(input_tokens=100, cache_write_tokens=1_000, cache_write_1h_tokens=400)
    got = price(u, row)
    assert got.cache_write == usd(("3.75", 600), ("6.00", 400))
    assert got.total == usd(("3.00", 100)) + got.cache_write
    for r in load_catalog().rows():
        if r.provider == "anthropic":
            assert r.cache_write_1h == 2 * r.input, r.model


def test_a_prompt_over_the_context_window_is_priced_and_flagged() -> None:
    cat = load_catalog()
    over = cost_of(cat, "gpt-4o", Usage(input_tokens=100_000, cached_input_tokens=30_000))
    assert over.flags == (FLAG_OVER_CONTEXT,)
    assert over.total == usd(("2.50", 100_000), ("1.25", 30_000))
    assert cost_of(cat, "gpt-4o", Usage(input_tokens=128_000)).flags == ()


def test_prompt_cache_saving_is_reads_saved_less_the_write_premium() -> None:
    row = load_catalog().lookup("claude-sonnet-4-5")
    u = Usage(input_tokens=50, cached_input_tokens=10_000, cache_write_tokens=2_000)
    saved = prompt_cache_saving(u, row)
    # reads: 10,000 x (3.00 - 0.30); premium: 2,000 x (3.75 - 3.00)
    assert saved.total == usd(("2.70", 10_000)) - usd(("0.75", 2_000)) == 25_500_000_000
    first = prompt_cache_saving(Usage(cache_write_tokens=1_000, cache_write_1h_tokens=1_000), row)
    assert first.total == -usd(("3.00", 1_000))  # a 1h write only: the premium, 2x - 1x


# ---- shipped rows ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "provider", "inp", "out"),
    [
        ("claude-3-5-sonnet", "anthropic", "3", "15"),
        ("claude-3-5-sonnet-20241022", "anthropic", "3", "15"),
        ("grok-4", "xai", "3", "15"),
        ("grok-3-mini", "xai", "0.3", "0.5"),
        ("command-a-03-2025", "cohere", "2.5", "10"),
        ("command-r", "cohere", "0.15", "0.6"),
    ],
)
def test_new_rows_and_providers(model: str, provider: str, inp: str, out: str) -> None:
    row = load_catalog().lookup(model)
    assert row.provider == provider
    assert (row.usd("input"), row.usd("output")) == (Decimal(inp), Decimal(out))
    assert row.source.startswith("https://") and row.effective_from <= date(2025, 11, 20)


def test_grok_long_context_tier() -> None:
    cat = load_catalog()
    assert cat.lookup("grok-4-fast-reasoning", prompt_tokens=128_001).usd("input") == Decimal("0.4")
    assert cat.lookup("grok-4-fast-reasoning", prompt_tokens=128_000).usd("input") == Decimal("0.2")


def test_catalog_rejects_rates_no_decimal_writes() -> None:
    with pytest.raises(ConfigError, match="input 1/3 is not a finite decimal"):
        PriceRow(
            model="x",
            provider="p",
            effective_from=date(2025, 1, 1),
            above_prompt_tokens=0,
            context_window=10,
            max_output_tokens=10,
            input=Fraction(1, 3),
            cached_input=0,
            cache_write=0,
            output=0,
            reasoning=0,
        )
    assert Catalog([FRACTIONAL]).lookup("frac").input == Fraction(9375, 2)
