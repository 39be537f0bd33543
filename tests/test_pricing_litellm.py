"""Importing LiteLLM's model_prices_and_context_window.json format, and catalog diffs."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.pricing import (
    Catalog,
    Change,
    PriceRow,
    diff_catalogs,
    import_litellm,
    load_catalog,
    rows_from_litellm,
)

FIXTURE = Path(__file__).parent / "data" / "litellm_prices.json"
DAY = date(2026, 1, 15)


@pytest.fixture(scope="module")
def imported() -> tuple[dict[tuple[str, int], PriceRow], list[tuple[str, str]]]:
    rows, problems = import_litellm(FIXTURE, effective_from=DAY)
    return (
        {(r.model, r.above_prompt_tokens): r for r in rows},
        [(p.key, p.reason) for p in problems],
    )


def test_rates_are_exact_picodollars(imported: tuple[dict, list]) -> None:
    rows, _ = imported
    gpt4o = rows[("gpt-4o", 0)]
    # 2.5e-06 USD/token = 2.5e-06 * 10**12 pUSD/token
    assert (gpt4o.input, gpt4o.cached_input, gpt4o.cache_write) == (2_500_000, 1_250_000, 2_500_000)
    assert (gpt4o.output, gpt4o.reasoning) == (10_000_000, 10_000_000)
    assert (gpt4o.batch_input, gpt4o.batch_output) == (1_250_000, 5_000_000)
    assert (gpt4o.provider, gpt4o.context_window, gpt4o.max_output_tokens) == (
        "openai",
        128_000,
        16_384,
    )
    assert gpt4o.effective_from == DAY and "LiteLLM" in gpt4o.source
    assert rows[("o4-mini", 0)].cached_input == 275_000  # 2.75e-07


def test_context_tiers(imported: tuple[dict, list]) -> None:
    rows, _ = imported
    tier = rows[("claude-sonnet-4-5", 200_000)]
    assert (tier.input, tier.cached_input, tier.cache_write, tier.output) == (
        6_000_000,
        600_000,
        7_500_000,
        22_500_000,
    )
    assert rows[("claude-sonnet-4-5", 0)].cache_write == 3_750_000
    gem = rows[("gemini-1.5-pro", 128_000)]  # provider prefix stripped, gemini -> google
    assert gem.provider == "google"
    assert (gem.input, gem.output) == (2_500_000, 10_000_000)
    assert gem.cached_input == gem.cache_write == gem.input  # no cache price given: = input


def test_reasoning_and_fallbacks(imported: tuple[dict, list]) -> None:
    rows, _ = imported
    flash = rows[("gemini-2.5-flash-preview-04-17", 0)]
    assert (flash.output, flash.reasoning, flash.cached_input) == (600_000, 3_500_000, 37_500)
    mistral = rows[("mistral-small-latest", 0)]  # only max_tokens given
    assert (mistral.context_window, mistral.max_output_tokens) == (32_000, 32_000)
    assert mistral.batch_input is None
    assert rows[("llama-3.3-70b-versatile", 0)].provider == "groq"


def test_only_chat_entries_and_bad_entries_reported(imported: tuple[dict, list]) -> None:
    rows, problems = imported
    names = {name for name, _ in rows}
    assert "text-embedding-3-small" not in names and "dall-e-3" not in names
    assert "sample_spec" not in names
    by_key = dict(problems)
    assert set(by_key) == {
        "bad/negative-price",
        "bad/string-price",
        "bad/no-provider",
        "bad/no-output-price",
        "bad/no-window",
        "bad/not-an-object",
        "openai/gpt-4o",
    }
    assert "negative" in by_key["bad/negative-price"]
    assert "litellm_provider" in by_key["bad/no-provider"]
    assert "gpt-4o" in by_key["openai/gpt-4o"]  # same provider and model once stripped
    assert not any(n.startswith("bad") for n in names)
    assert rows[("too-precise", 0)].provider == "bad"  # "bad/" named the provider
    # 1.2345678912e-07 USD = 123456.78912 pUSD per token: kept exactly, not rejected
    assert rows[("too-precise", 0)].input == Fraction(12345678912, 100000)


def test_unreadable_files_raise_config_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    for name in ("x.json", "list.json", "missing.json"):
        with pytest.raises(ConfigError):
            import_litellm(tmp_path / name)
    with pytest.raises(ConfigError):
        rows_from_litellm("not a dict")


def test_bytes_upload_matches_file() -> None:
    rows, problems = import_litellm(FIXTURE.read_bytes(), effective_from=DAY)
    from_file, _ = import_litellm(FIXTURE, effective_from=DAY)
    assert [(r.model, r.input, r.output) for r in rows] == [
        (r.model, r.input, r.output) for r in from_file
    ]
    assert len(problems) == 7


def test_floats_are_read_as_the_decimal_the_file_wrote() -> None:
    entry = {
        "litellm_provider": "x",
        "mode": "chat",
        "max_input_tokens": 1000,
        "input_cost_per_token": 0.1 + 0.2 - 0.3 + 3e-07,  # written 3.0000000005551114e-07
        "output_cost_per_token": 1.875e-05,
    }
    rows, problems = rows_from_litellm(
        {"ok": {**entry, "input_cost_per_token": 3e-07}, "noisy": entry}
    )
    assert [r.input for r in rows] == [300_000, Fraction("300000.00005551114")]
    assert rows[0].output == 18_750_000
    assert problems == []


def test_diff_small_catalogs() -> None:
    old = Catalog(
        [
            PriceRow.from_usd("a", "p", input="1.00", output="2.00"),
            PriceRow.from_usd("b", "p", input="1.00", output="2.00", aliases=("b-2025",)),
            PriceRow.from_usd("gone", "p", input="1", output="1"),
        ]
    )
    new = [
        PriceRow.from_usd("a", "p", input="1.00", output="2.00"),
        PriceRow.from_usd("b-2025", "p", input="0.80", output="2.00"),  # via alias
        PriceRow.from_usd("c", "p", input="1", output="1"),
    ]
    assert diff_catalogs(old, new) == [
        Change("b", "changed", 0, "input", Decimal("1"), Decimal("0.8"), "p"),
        Change("b", "changed", 0, "cached_input", Decimal("1"), Decimal("0.8"), "p"),
        Change("b", "changed", 0, "cache_write", Decimal("1"), Decimal("0.8"), "p"),
        Change("b", "changed", 0, "cache_write_1h", Decimal("1"), Decimal("0.8"), "p"),
        Change("c", "added", provider="p"),
        Change("gone", "removed", provider="p"),
    ]
    assert diff_catalogs(old, old) == []


def test_diff_shipped_catalog_against_import() -> None:
    rows, _ = import_litellm(FIXTURE, effective_from=DAY)
    changes = diff_catalogs(load_catalog(), rows)
    seen = {(c.model, c.kind, c.field) for c in changes}
    assert ("deepseek-chat", "changed", "output") in seen  # fixture holds the older V3 price
    assert ("gemini-2.5-flash-preview-04-17", "added", "") in seen
    assert ("gpt-5", "removed", "") in seen
    assert not any(c.model == "gpt-4o" for c in changes)  # identical prices: no change
    out = next(c for c in changes if c.model == "deepseek-chat" and c.field == "output")
    assert (out.old, out.new) == (Decimal("0.42"), Decimal("1.1"))
    # the dated snapshot is compared with the catalog model it aliases, not added
    assert not any(c.model == "claude-sonnet-4-5-20250929" for c in changes)


def test_imported_rows_layer_onto_the_catalog() -> None:
    rows, _ = import_litellm(FIXTURE, effective_from=DAY)
    cat = load_catalog().with_rows(rows)
    assert cat.lookup("deepseek-chat", DAY).output == 1_100_000
    assert cat.lookup("deepseek-chat", date(2025, 12, 1)).output == 420_000
    assert cat.has("gemini-2.5-flash-preview-04-17")
    assert json.loads(FIXTURE.read_text())["gpt-4o"]["mode"] == "chat"


def test_absurd_entries_are_refused_each_with_its_reason() -> None:
    """1e20 USD per token, a 1e30 context window, names with a space or a trailing slash
    were imported as prices; each is now a problem the preview lists, the rest import."""
    ok = {"litellm_provider": "openai", "mode": "chat", "max_input_tokens": 128000}
    rates = {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    data = {
        "good-model": {**ok, **rates},
        "dear": {**ok, **rates, "output_cost_per_token": 1e20},
        "dear-cache": {**ok, **rates, "cache_read_input_token_cost": 0.5},
        "huge": {**ok, **rates, "max_input_tokens": 1e30},
        "huge-out": {**ok, **rates, "max_output_tokens": 10**12},
        "gpt 4o": {**ok, **rates},
        "openai/": {**ok, **rates},
        "x//y": {**ok, **rates},
        "tab\tname": {**ok, **rates},
        "m" * 201: {**ok, **rates},
        "o1-pro": {**ok, "input_cost_per_token": 1.5e-04, "output_cost_per_token": 6e-04},
    }
    rows, problems = rows_from_litellm(data, effective_from=DAY)
    assert sorted(r.model for r in rows) == ["good-model", "o1-pro"]
    why = {p.key: p.reason for p in problems}
    assert set(why) == set(data) - {"good-model", "o1-pro"}
    assert "is more than 0.001" in why["dear"] and "$1,000 per 1M" in why["dear"]
    assert "cache_read_input_token_cost" in why["dear-cache"]
    assert "max_input_tokens" in why["huge"] and "1,000,000,000" in why["huge"]
    assert "max_output_tokens" in why["huge-out"]
    for key in ("gpt 4o", "openai/", "x//y", "tab\tname"):
        assert "model name" in why[key], key
    assert "1 to 200 characters" in why["m" * 201]
