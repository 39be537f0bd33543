"""The price catalog: shipped data, CSV validation, lookups, layering and display."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

import core.pricing
from core.errors import ConfigError, UnpricedModel
from core.pricing import (
    COLUMNS,
    Catalog,
    PriceRow,
    load_catalog,
    parse_usd_per_mtok,
    usd_per_mtok,
)

# -- shipped data -------------------------------------------------------------------------


def test_catalog_has_at_least_30_models_from_every_provider() -> None:
    catalog = load_catalog()
    assert len(catalog.models()) >= 30
    providers = {catalog.provider_of(m) for m in catalog.models()}
    assert {
        "openai",
        "anthropic",
        "google",
        "groq",
        "deepseek",
        "mistral",
        "local",
        "dryrun",
    } <= providers
    for model in (
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4o-mini",
        "o3",
        "o1",
        "o3-mini",
        "gpt-3.5-turbo",
        "claude-opus-4-1",
        "claude-opus-4",
        "claude-sonnet-4-5",
        "claude-3-7-sonnet",
        "claude-haiku-4-5",
        "claude-3-5-haiku",
        "gemini-2.5-flash",
        "gemini-2.5-flash-lite",
        "gemini-2.0-flash",
        "gemini-1.5-flash",
        "llama-3.3-70b-versatile",
        "llama-3.1-8b-instant",
        "openai/gpt-oss-120b",
        "deepseek-reasoner",
        "mistral-large-latest",
        "mistral-medium-latest",
        "mistral-small-latest",
        "codestral-latest",
        "smollm2-135m-instruct",
        "dryrun-small",
        "dryrun-large",
    ):
        assert catalog.has(model), model


def test_every_row_has_source_and_effective_from() -> None:
    for row in load_catalog().rows():
        assert isinstance(row.effective_from, date)
        assert re.search(r"\d{4}-\d{2}-\d{2}", row.source), row
        if row.provider not in ("local", "dryrun"):
            assert row.source.startswith("https://"), row


def test_shipped_rates_follow_provider_rules() -> None:
    for r in load_catalog().rows():
        # 5-minute cache write 1.25x, cache read 0.1x; Anthropic publishes Haiku 3 rounded
        # to $0.30 / $0.03 on $0.25 input.
        if r.provider == "anthropic" and r.model != "claude-3-haiku":
            assert r.cache_write * 4 == r.input * 5, r.model
            assert r.cached_input * 10 == r.input, r.model
        if r.batch_input is not None and r.batch_output is not None:  # batch APIs: 50% off
            assert r.batch_input * 2 == r.input and r.batch_output * 2 == r.output, r.model
        if r.provider == "openai":
            assert r.reasoning == r.output, r.model
        if r.provider == "dryrun" and "embed" not in r.model:
            assert r.input > 0 and r.output > 0
        if "embed" in r.model or "minilm" in r.model:  # embeddings: input tokens only
            assert r.output == 0 and r.max_output_tokens == 1, r.model
    assert load_catalog().lookup("smollm2-135m-instruct").output == 0


def test_tier_rows_price_the_whole_request() -> None:
    catalog = load_catalog()
    for model, threshold in (
        ("claude-sonnet-4", 200_000),
        ("claude-sonnet-4-5", 200_000),
        ("gemini-2.5-pro", 200_000),
        ("gemini-1.5-pro", 128_000),
        ("gemini-1.5-flash", 128_000),
    ):
        base = catalog.lookup(model, prompt_tokens=threshold)
        tier = catalog.lookup(model, prompt_tokens=threshold + 1)
        assert base.above_prompt_tokens == 0
        assert tier.above_prompt_tokens == threshold
        assert tier.input > base.input and tier.output > base.output
        assert catalog.context_window(model) > threshold


# -- lookups --------------------------------------------------------------------------------


def test_lookup_names_aliases_and_provider_prefixes() -> None:
    catalog = load_catalog()
    row = catalog.lookup("gpt-4o")
    for name in ("GPT-4o", "gpt-4o-2024-08-06", "openai/gpt-4o", " openai/GPT-4O-2024-11-20 "):
        assert catalog.lookup(name) is row, name
    assert catalog.canonical("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert catalog.lookup("groq/openai/gpt-oss-120b").provider == "groq"
    assert catalog.provider_of("gemini/gemini-2.5-flash") == "google"
    assert "gpt-4o" in catalog and "gpt-404" not in catalog
    assert catalog.has("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not catalog.has("openai/no-such-model")
    with pytest.raises(UnpricedModel, match="openai/no-such-model"):
        catalog.lookup("openai/no-such-model")


def test_lookup_by_day() -> None:
    catalog = load_catalog()
    assert catalog.lookup("o3", date(2025, 6, 9)).input == parse_usd_per_mtok("10.00")
    assert catalog.lookup("o3", date(2025, 6, 10)).input == parse_usd_per_mtok("2.00")
    assert catalog.lookup("o3", date(2020, 1, 1)).input == parse_usd_per_mtok("10.00")  # earliest
    assert catalog.lookup("o3").input == parse_usd_per_mtok("2.00")  # today
    assert catalog.lookup("deepseek-chat", date(2025, 9, 10)).output == parse_usd_per_mtok("1.68")


def test_metadata_accessors() -> None:
    catalog = load_catalog()
    assert catalog.provider_of("claude-haiku-4-5") == "anthropic"
    assert catalog.context_window("gpt-4.1") == 1_047_576
    assert catalog.max_output("gpt-4o") == 16_384
    assert 0 <= catalog.quality("gpt-5") <= 100
    assert catalog.quality("gpt-5") > catalog.quality("gpt-5-nano")
    assert catalog.models() == sorted(catalog.models())
    assert len(catalog.rows()) > len(catalog.models())
    with pytest.raises(UnpricedModel):
        catalog.context_window("nope")


def test_default_catalog_is_loaded_once() -> None:
    assert load_catalog() is load_catalog()


def test_to_frame_shows_exact_usd_per_million() -> None:
    frame = load_catalog().to_frame()
    assert list(frame.columns) == list(COLUMNS)
    gpt4o = frame[frame.model == "gpt-4o"].iloc[0]
    assert gpt4o["input"] == Decimal("2.5") and isinstance(gpt4o["input"], Decimal)
    assert gpt4o["cached_input"] == Decimal("1.25")
    assert frame[frame.model == "chatgpt-4o-latest"].iloc[0]["batch_input"] is None


# -- layering -------------------------------------------------------------------------------


def test_with_rows_later_effective_from_wins() -> None:
    base = load_catalog()
    deal = PriceRow.from_usd(
        "gpt-4o",
        "openai",
        input="2.00",
        output="8.00",
        cached_input="1.00",
        effective_from=date(2026, 1, 1),
        context_window=128_000,
        max_output_tokens=16_384,
    )
    cat = base.with_rows([deal])
    assert cat.lookup("gpt-4o", date(2026, 2, 1)).input == 2_000_000
    assert cat.lookup("gpt-4o-2024-08-06", date(2026, 2, 1)).output == 8_000_000
    assert cat.lookup("gpt-4o", date(2025, 12, 31)).input == 2_500_000
    assert base.lookup("gpt-4o", date(2026, 2, 1)).input == 2_500_000  # base unchanged


def test_with_rows_self_hosted_cost_and_new_models() -> None:
    base = load_catalog()
    own = PriceRow.from_usd(
        "smollm2-135m-instruct",
        "local",
        input="0.02",
        output="0.02",
        effective_from=date(2024, 11, 1),
        context_window=8192,
        max_output_tokens=2048,
    )
    vllm = PriceRow.from_usd("gpt-oss-120b", "vllm", input="0.05", output="0.10")
    cat = base.with_rows([own, vllm])
    assert cat.lookup("smollm2-135m-instruct").input == 20_000
    assert len(cat.rows()) == len(base.rows()) + 1  # same key replaced, one new model
    assert cat.provider_of("gpt-oss-120b") == "vllm"  # own name beats groq's alias
    assert cat.provider_of("openai/gpt-oss-120b") == "groq"


def test_price_row_validation() -> None:
    with pytest.raises(ConfigError):
        PriceRow.from_usd("m", "p", input="1", output="1", batch_input="0.5")
    with pytest.raises(ConfigError):
        PriceRow.from_usd("m", "p", input="1", output="1", quality=101)
    with pytest.raises(ValueError):
        PriceRow.from_usd("m", "p", input="-1", output="1")
    with pytest.raises(ConfigError, match="alias"):
        Catalog(
            [
                PriceRow.from_usd("a", "p", input="1", output="1", aliases=("b",)),
                PriceRow.from_usd("b", "p", input="1", output="1"),
            ]
        )


def test_usd_conversions_are_exact() -> None:
    assert parse_usd_per_mtok("2.50") == 2_500_000
    assert parse_usd_per_mtok("0.0375") == 37_500
    assert parse_usd_per_mtok("0.000001") == 1
    assert parse_usd_per_mtok("0") == 0
    for bad in ("1e-19", "-1", "abc", "NaN", "inf", ""):
        with pytest.raises(ValueError):
            parse_usd_per_mtok(bad)
    assert usd_per_mtok(2_500_000) == Decimal("2.5")
    assert str(usd_per_mtok(10_000_000)) == "10"
    assert str(usd_per_mtok(37_500)) == "0.0375"


# -- CSV validation -------------------------------------------------------------------------

GOOD = "m1,openai,2025-01-01,0,128000,4096,1.00,,,,2.00,,,,50,,https://x.test (as of 2025-01-01)"


def _write(tmp_path: Path, *rows: str, header: str = ",".join(COLUMNS)) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _with(**cells: str) -> str:
    values = dict(zip(COLUMNS, GOOD.split(","), strict=True))
    values.update(cells)
    return ",".join(values[c] for c in COLUMNS)


@pytest.mark.parametrize(
    ("row", "where", "phrase"),
    [
        (_with(model="m2", input="abc"), "column 7 (input)", "not a decimal"),
        (_with(model="m2", input="1e-19"), "column 7 (input)", "finer than 10**-24"),
        (_with(model="m2", output="-1"), "column 11 (output)", "negative"),
        (_with(model="m2", output=""), "column 11 (output)", "empty"),
        (_with(model="m2", effective_from="2025-1-1"), "column 3 (effective_from)", "date"),
        (_with(model="m2", quality="101"), "column 15 (quality)", "range"),
        (_with(model="m2", context_window="lots"), "column 5 (context_window)", "integer"),
        (_with(model="m2", batch_input="0.5"), "column 14 (batch_output)", "both"),
        (_with(model="m2", source=""), "column 17 (source)", "empty"),
        (_with(model="m2", cache_write_1h="x"), "column 10 (cache_write_1h)", "not a decimal"),
        (_with(), "column 1 (model)", "duplicates the row on line 2"),
    ],
)
def test_bad_csv_value_names_line_and_column(
    tmp_path: Path, row: str, where: str, phrase: str
) -> None:
    path = _write(tmp_path, GOOD, row)
    with pytest.raises(ConfigError) as err:
        load_catalog(path)
    assert f"line 3, {where}" in err.value.message
    assert phrase in err.value.message
    assert str(path) in err.value.message


def test_bad_csv_structure(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="header"):
        load_catalog(_write(tmp_path, GOOD, header=",".join(COLUMNS[:-1])))
    with pytest.raises(ConfigError, match="no base row"):
        load_catalog(_write(tmp_path, GOOD, _with(model="m2", above_prompt_tokens="200000")))
    with pytest.raises(ConfigError, match="cells"):
        load_catalog(_write(tmp_path, GOOD, "m2,openai"))
    with pytest.raises(ConfigError):
        load_catalog(tmp_path / "missing.csv")
    ok = load_catalog(_write(tmp_path, "# comment", GOOD, ""))
    assert ok.models() == ["m1"] and ok.lookup("m1").cached_input == 1_000_000


# -- package hygiene ------------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    names = core.pricing.__all__
    assert names == sorted(names)
    for sub in ("catalog", "cost", "csvfile", "litellm", "rows"):
        module = sys.modules[f"core.pricing.{sub}"]
        assert set(module.__all__) <= set(names) | {"utc_today"}, sub
    for name in names:
        assert hasattr(core.pricing, name)


def test_core_modules_import_no_ui_or_pandas() -> None:
    code = (
        "import sys, core.pricing, core.tokens; core.pricing.load_catalog();"
        "print(sorted(m for m in ('pandas', 'streamlit', 'altair', 'prophet')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(core.pricing.__file__).parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_lookup_accepts_datetimes() -> None:
    from datetime import UTC, datetime

    catalog = load_catalog()
    assert catalog.lookup("o3", datetime(2025, 6, 9, 23, 59, tzinfo=UTC)).input == 10_000_000
    assert catalog.lookup("o3", datetime(2025, 6, 10, 0, 1)).input == 2_000_000
