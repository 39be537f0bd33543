"""Pricing one call: hand-checked costs to the cent and to the picodollar, and exact sums.

Expected values are written as the provider's published USD-per-1M rates times token counts,
typed here by hand, not derived from the catalog or the code under test.
"""

from __future__ import annotations

import csv
import random
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest

from core.errors import UnpricedModel
from core.pricing import PriceRow, cost_of, default_catalog_path, load_catalog, max_cost, price
from core.types import PICO, Usage

MILLION = Decimal(10**6)


def usd(*terms: tuple[str, int]) -> Decimal:
    """Sum of (USD per 1M tokens, tokens) pairs, in USD."""
    return sum((Decimal(rate) * n for rate, n in terms), Decimal(0)) / MILLION


CASES = [
    # id, model, day, usage, batch, expected USD, expected cents (ROUND_HALF_UP)
    (
        "gpt-4o cached",
        "gpt-4o",
        None,
        Usage(input_tokens=1_000, cached_input_tokens=2_000, output_tokens=500),
        False,
        usd(("2.50", 1_000), ("1.25", 2_000), ("10.00", 500)),
        "0.01",
    ),
    (
        "sonnet-4.5 cache write+read",
        "claude-sonnet-4-5",
        None,
        Usage(
            input_tokens=500,
            cache_write_tokens=10_000,
            cached_input_tokens=20_000,
            output_tokens=800,
        ),
        False,
        usd(("3.00", 500), ("3.75", 10_000), ("0.30", 20_000), ("15.00", 800)),
        "0.06",
    ),
    (
        "haiku-4.5 cache write+read",
        "anthropic/claude-haiku-4-5-20251001",
        None,
        Usage(
            input_tokens=2_000,
            cache_write_tokens=5_000,
            cached_input_tokens=40_000,
            output_tokens=1_000,
        ),
        False,
        usd(("1.00", 2_000), ("1.25", 5_000), ("0.10", 40_000), ("5.00", 1_000)),
        "0.02",
    ),
    (
        "o3 reasoning",
        "o3",
        date(2025, 10, 1),
        Usage(input_tokens=2_000, output_tokens=300, reasoning_tokens=5_000),
        False,
        usd(("2.00", 2_000), ("8.00", 300), ("8.00", 5_000)),
        "0.05",
    ),
    (
        "o3 reasoning at launch price",
        "o3",
        date(2025, 5, 1),
        Usage(input_tokens=2_000, output_tokens=300, reasoning_tokens=5_000),
        False,
        usd(("10.00", 2_000), ("40.00", 300), ("40.00", 5_000)),
        "0.23",
    ),
    (
        "o4-mini reasoning + cached",
        "o4-mini",
        None,
        Usage(
            input_tokens=1_200, cached_input_tokens=800, output_tokens=150, reasoning_tokens=3_000
        ),
        False,
        usd(("1.10", 1_200), ("0.275", 800), ("4.40", 150), ("4.40", 3_000)),
        "0.02",
    ),
    (
        "sonnet-4 250k prompt: tier",
        "claude-sonnet-4",
        None,
        Usage(input_tokens=250_000, output_tokens=2_000),
        False,
        usd(("6.00", 250_000), ("22.50", 2_000)),
        "1.55",
    ),
    (
        "sonnet-4 exactly 200k: base",
        "claude-sonnet-4",
        None,
        Usage(input_tokens=200_000, output_tokens=2_000),
        False,
        usd(("3.00", 200_000), ("15.00", 2_000)),
        "0.63",
    ),
    (
        "sonnet-4.5 250k with cache: tier",
        "claude-sonnet-4-5",
        None,
        Usage(
            input_tokens=150_000,
            cache_write_tokens=60_000,
            cached_input_tokens=40_000,
            output_tokens=1_000,
        ),
        False,
        usd(("6.00", 150_000), ("7.50", 60_000), ("0.60", 40_000), ("22.50", 1_000)),
        "1.40",
    ),
    (
        "gemini-2.5-pro 250k: tier",
        "gemini-2.5-pro",
        None,
        Usage(input_tokens=200_000, cached_input_tokens=50_000, output_tokens=4_000),
        False,
        usd(("2.50", 200_000), ("0.25", 50_000), ("15.00", 4_000)),
        "0.57",
    ),
    (
        "gemini-1.5-pro 130k: tier",
        "google/gemini-1.5-pro",
        None,
        Usage(input_tokens=130_000, output_tokens=1_000),
        False,
        usd(("2.50", 130_000), ("10.00", 1_000)),
        "0.34",
    ),
    (
        "gpt-4.1-mini batch",
        "gpt-4.1-mini",
        None,
        Usage(input_tokens=100_000, output_tokens=20_000),
        True,
        usd(("0.20", 100_000), ("0.80", 20_000)),
        "0.04",
    ),
    (
        "sonnet-4.5 batch: the cache-read discount stacks (Anthropic)",
        "claude-sonnet-4-5",
        None,
        Usage(input_tokens=10_000, cached_input_tokens=5_000, output_tokens=2_000),
        True,
        usd(("1.50", 10_000), ("0.15", 5_000), ("7.50", 2_000)),
        "0.03",
    ),
    (
        "o4-mini batch reasoning",
        "o4-mini",
        None,
        Usage(input_tokens=1_000, output_tokens=100, reasoning_tokens=2_000),
        True,
        usd(("0.55", 1_000), ("2.20", 100), ("2.20", 2_000)),
        "0.01",
    ),
    (
        "deepseek batch: no batch API",
        "deepseek-chat",
        date(2025, 11, 1),
        Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=100_000),
        True,
        usd(("0.28", 1_000_000), ("0.028", 1_000_000), ("0.42", 100_000)),
        "0.35",
    ),
    (
        "deepseek history",
        "deepseek-chat",
        date(2025, 3, 1),
        Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000, output_tokens=100_000),
        False,
        usd(("0.27", 1_000_000), ("0.07", 1_000_000), ("1.10", 100_000)),
        "0.45",
    ),
    (
        "gpt-5 1M+1M",
        "gpt-5",
        None,
        Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        False,
        usd(("1.25", 1_000_000), ("10.00", 1_000_000)),
        "11.25",
    ),
    (
        "groq gpt-oss cached",
        "groq/openai/gpt-oss-120b",
        None,
        Usage(input_tokens=3_000, cached_input_tokens=7_000, output_tokens=900),
        False,
        usd(("0.15", 3_000), ("0.075", 7_000), ("0.60", 900)),
        "0.00",
    ),
    (
        "dryrun shows money",
        "dryrun-large",
        None,
        Usage(input_tokens=1_000, output_tokens=1_000),
        False,
        usd(("3.00", 1_000), ("15.00", 1_000)),
        "0.02",
    ),
    (
        "local model is free",
        "smollm2-135m-instruct",
        None,
        Usage(input_tokens=5_000, output_tokens=5_000),
        False,
        Decimal(0),
        "0.00",
    ),
]


@pytest.mark.parametrize(
    ("model", "day", "usage", "batch", "expected", "cents"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_cost_table(
    model: str, day: date | None, usage: Usage, batch: bool, expected: Decimal, cents: str
) -> None:
    catalog = load_catalog()
    cost = cost_of(catalog, model, usage, at=day, batch=batch)
    assert not cost.unpriced
    pico = expected * PICO
    assert pico == pico.to_integral_value()
    assert cost.total == int(pico)  # to the picodollar
    assert cost.usd == expected
    assert cost.usd.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) == Decimal(cents)
    row = catalog.lookup(model, day, usage.prompt_tokens)
    assert price(usage, row, batch=batch) == cost


def test_each_class_priced_once_at_its_rate() -> None:
    row = load_catalog().lookup("gpt-4o")
    cost = price(Usage(input_tokens=1_000, cached_input_tokens=2_000, output_tokens=500), row)
    assert cost.input == 1_000 * 2_500_000
    assert cost.cached_input == 2_000 * 1_250_000
    assert cost.cache_write == 0 and cost.reasoning == 0
    assert cost.output == 500 * 10_000_000
    assert cost.total == cost.input + cost.cached_input + cost.output


def test_unknown_model() -> None:
    catalog = load_catalog()
    with pytest.raises(UnpricedModel, match="no-such-model") as err:
        catalog.lookup("no-such-model")
    assert err.value.model == "no-such-model"
    cost = cost_of(catalog, "no-such-model", Usage(input_tokens=10, output_tokens=10))
    assert cost.unpriced is True and cost.total == 0


def test_max_cost_reserves_at_the_dearer_output_rate() -> None:
    row = load_catalog().lookup("claude-sonnet-4-5")
    assert max_cost(row, 1_000, 2_000) == int(usd(("3.00", 1_000), ("15.00", 2_000)) * PICO)
    odd = PriceRow.from_usd("x", "p", input="1", output="2", reasoning="3")
    assert max_cost(odd, 10, 10) == int(usd(("1", 10), ("3", 10)) * PICO)


def _csv_rates() -> dict[str, dict[str, Decimal]]:
    """Base-tier USD-per-1M rates straight from data/prices.csv, empties resolved by hand."""
    out: dict[str, dict[str, Decimal]] = {}
    with default_catalog_path().open(newline="") as f:
        for r in csv.DictReader(row for row in f if not row.startswith("#")):
            if r["above_prompt_tokens"] != "0":
                continue
            out[r["model"]] = {
                "input": Decimal(r["input"]),
                "cached_input": Decimal(r["cached_input"] or r["input"]),
                "cache_write": Decimal(r["cache_write"] or r["input"]),
                "output": Decimal(r["output"]),
                "reasoning": Decimal(r["reasoning"] or r["output"]),
            }
    return out


def test_integer_sums_are_exact_over_a_million_calls() -> None:
    models = [
        "gpt-4o",
        "gpt-5-nano",
        "claude-haiku-4-5",
        "gemini-2.0-flash-lite",
        "gpt-4.1-nano",
        "claude-3-haiku",
        "openai/gpt-oss-20b",
        "o4-mini",
    ]
    catalog = load_catalog()
    rows = [catalog.lookup(m) for m in models]
    dec = _csv_rates()
    rates = [dec[m] for m in models]
    rng = random.Random(20251001)
    bits = rng.getrandbits
    total_pico = 0
    total = Decimal(0)  # exact: sums of rate * tokens (USD per 1M) need ~20 digits, context has 28
    for i in range(1_000_000):
        k = i % len(models)
        a, b, c, d, e = bits(16), bits(15), bits(12), bits(13), bits(14)
        total_pico += price(Usage(a, b, c, d, e), rows[k]).total
        r = rates[k]
        total += (
            r["input"] * a
            + r["cached_input"] * b
            + r["cache_write"] * c
            + r["output"] * d
            + r["reasoning"] * e
        )
    assert Decimal(total_pico).scaleb(-12) == total.scaleb(-6)
    assert total_pico > 0
