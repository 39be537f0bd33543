"""LiteLLM 1.80.0's real price file (tests/data): every proposed rate comes from the catalog
entry's own provider, other providers' same-named entries are their own rows, and the
catalog holds one model name under several providers."""

from __future__ import annotations

import gzip
import json
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from core.pricing import (
    Catalog,
    PriceRow,
    cost_of,
    diff_catalogs,
    import_litellm,
    load_catalog,
    price,
)
from core.types import Usage

REAL = Path(__file__).parent / "data" / "litellm_model_prices_1.80.0.json.gz"
DAY = date(2026, 1, 15)
# Costline rate field -> LiteLLM key (the test's own reading of LiteLLM's format)
KEYS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cached_input": "cache_read_input_token_cost",
    "cache_write": "cache_creation_input_token_cost",
    "cache_write_1h": "cache_creation_input_token_cost_above_1hr",
    "reasoning": "output_cost_per_reasoning_token",
    "batch_input": "input_cost_per_token_batches",
    "batch_output": "output_cost_per_token_batches",
}
# LiteLLM provider names as Costline names them (written out here, not taken from core)
OWN = {
    "openai": {"openai", "text-completion-openai"},
    "anthropic": {"anthropic"},
    "google": {"gemini"},
    "groq": {"groq"},
    "deepseek": {"deepseek"},
    "mistral": {"mistral"},
    "xai": {"xai"},
    "cohere": {"cohere_chat", "cohere"},
}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(gzip.decompress(REAL.read_bytes()))
    return data


@pytest.fixture(scope="module")
def imported() -> tuple[list[PriceRow], list[Any]]:
    return import_litellm(REAL, effective_from=DAY)


def _usd_per_mtok(value: float) -> Decimal:
    return (Decimal(repr(value)) * 1_000_000).normalize()


def _own_entries(raw: dict[str, Any], provider: str, names: set[str]) -> list[dict[str, Any]]:
    """The raw entries of ``provider`` whose key (with or without the provider's own
    prefix) is one of ``names``."""
    out = []
    for key, e in raw.items():
        if not isinstance(e, dict) or e.get("litellm_provider") not in OWN.get(provider, ()):
            continue
        lp = e["litellm_provider"]
        bare = (
            key.split("/", 1)[1] if key.startswith(lp + "/") or key.startswith("gemini/") else key
        )
        if bare.lower() in names:
            out.append(e)
    return out


def test_every_proposed_rate_comes_from_the_catalog_entrys_own_provider(
    raw: dict[str, Any], imported: tuple[list[PriceRow], list[Any]]
) -> None:
    rows, _ = imported
    catalog = load_catalog()
    changes = diff_catalogs(catalog, rows)
    rate_changes = [c for c in changes if c.kind == "changed" and c.field in KEYS]
    assert rate_changes  # the file does move some prices
    for c in rate_changes:
        assert c.provider == catalog.provider_of(c.model), c
        row = catalog.lookup(c.model)
        names = {row.model.lower(), *(a.lower() for a in row.aliases)}
        entries = _own_entries(raw, c.provider, names)
        suffix = {0: "", 128_000: "_above_128k_tokens", 200_000: "_above_200k_tokens"}
        key = KEYS[c.field] + suffix[c.above_prompt_tokens]
        stated = {_usd_per_mtok(e[key]) for e in entries if e.get(key) is not None}
        assert c.new in stated, (c, stated)


def test_the_issues_cross_provider_cases(imported: tuple[list[PriceRow], list[Any]]) -> None:
    rows, _ = imported
    changes = diff_catalogs(load_catalog(), rows)

    def of(model: str) -> list[tuple[str, str, str, object]]:
        return [(c.provider, c.kind, c.field, c.new) for c in changes if c.model == model]

    # openai's gpt-4o-mini equals the catalog; azure's $0.165/$0.66 is azure's own new row
    assert of("gpt-4o-mini") == [("azure", "added", "", None)]
    assert ("mistral", "changed", "input", Decimal("8")) not in of("mistral-large-latest")
    assert {p for p, *_ in of("mistral-large-latest")} == {"mistral", "azure", "azure_ai"}
    # codestral-latest: mistral's own entry ($1/$3), never the codestral endpoint's $0
    mistral = {(f, n) for p, k, f, n in of("codestral-latest") if p == "mistral"}
    assert ("input", Decimal("1")) in mistral and ("output", Decimal("3")) in mistral
    assert ("codestral", "added", "", None) in of("codestral-latest")
    # gemini-2.5-pro: the Gemini API's entry (gemini/...), not Vertex's bare key
    google = {(f, n) for p, k, f, n in of("gemini-2.5-pro") if p == "google"}
    assert ("cached_input", Decimal("0.3125")) in google
    assert ("vertex_ai", "added", "", None) in of("gemini-2.5-pro")


def test_responses_mode_integral_floats_and_fractional_rates(
    imported: tuple[list[PriceRow], list[Any]],
) -> None:
    rows, problems = imported
    by = {(r.provider, r.model, r.above_prompt_tokens): r for r in rows}
    pro = by[("openai", "gpt-5-pro", 0)]  # mode "responses"
    assert (pro.input, pro.output) == (15_000_000, 120_000_000)
    assert ("openai", "o1-pro", 0) in by and ("openai", "o3-pro", 0) in by
    fast = by[("xai", "grok-4-fast-reasoning", 0)]  # "max_input_tokens": 2000000.0
    assert fast.context_window == 2_000_000
    # 4.6875e-09 USD per token = 4687.5 pUSD: stored exactly, shown as USD 0.0046875 / 1M
    flash = by[("vertex_ai", "gemini-1.5-flash-exp-0827", 0)]
    assert flash.output == Fraction(9375, 2) and flash.usd("output") == Decimal("0.0046875")
    reasons = " ".join(p.reason for p in problems)
    assert "picodollar" not in reasons and "2000000.0" not in reasons
    assert not any("same model name" in p.reason for p in problems)


def test_one_model_name_under_two_providers(imported: tuple[list[PriceRow], list[Any]]) -> None:
    rows, _ = imported
    cat = load_catalog().with_rows(rows)
    # the bare name is the catalog's own (default) provider; provider/model names the other
    assert cat.provider_of("gpt-4o-mini") == "openai"
    assert cat.lookup("gpt-4o-mini", DAY).input == 150_000
    assert cat.lookup("azure/gpt-4o-mini", DAY).input == 165_000  # 1.65e-07 USD per token
    assert cat.provider_of("azure/gpt-4o-mini") == "azure"
    assert cat.canonical("azure/gpt-4o-mini") == "azure/gpt-4o-mini"
    assert cat.canonical("openai/gpt-4o-mini") == "gpt-4o-mini"
    assert cat.lookup("codestral/codestral-latest", DAY).input == 0
    assert cat.lookup("codestral-latest", DAY).provider == "mistral"
    # Groq's model named "openai/gpt-oss-120b" is still Groq's; openai has no such model
    assert cat.provider_of("openai/gpt-oss-120b") == "groq"
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_of(cat, "azure/gpt-4o-mini", u, DAY).total == (165_000 + 660_000) * 10**6
    assert cost_of(cat, "gpt-4o-mini", u, DAY).total == (150_000 + 600_000) * 10**6


def test_a_catalog_csv_may_list_a_name_under_two_providers(tmp_path: Path) -> None:
    rows = [
        PriceRow.from_usd("m", "first", input="1", output="2"),
        PriceRow.from_usd("m", "second", input="3", output="4", aliases=("m-2025",)),
    ]
    cat = Catalog(rows)
    assert cat.provider_of("m") == "first" and cat.lookup("second/m").input == 3_000_000
    assert cat.lookup("m-2025").provider == "second"  # an alias only one provider has
    assert cat.models() == ["m", "second/m"]
    assert not cat.has("first/m-2025")  # never another provider's alias
    assert not cat.has("first/nope")  # a known provider without the model: unpriced
    # layering keeps "first" the default even when the overlay lists "second" first
    layered = cat.with_rows([PriceRow.from_usd("m", "second", input="5", output="5")])
    assert layered.provider_of("m") == "first" and layered.lookup("second/m").input == 5_000_000
    row = layered.lookup("second/m")
    assert price(Usage(input_tokens=2), row).total == 10_000_000


def test_the_import_plan_updates_only_own_provider_entries(
    imported: tuple[list[PriceRow], list[Any]],
) -> None:
    from core.pricing import plan_import

    rows, _ = imported
    catalog = load_catalog()
    plan = plan_import(catalog, rows, providers=catalog.providers())
    updated = {(model, r.provider): r for model, r in plan.updates}
    assert all(r.provider == catalog.provider_of(m) for (m, _), r in updated.items())
    assert ("gpt-4o-mini", "openai") not in updated  # identical: nothing to update
    code = updated[("codestral-latest", "mistral")]
    assert (code.usd("input"), code.usd("output")) == (Decimal("1"), Decimal("3"))
    assert plan.skipped_providers["azure"] > 50  # other providers: counted, not proposed
    assert not any(r.provider == "azure" for r in plan.additions)
    everyone = plan_import(catalog, rows)
    azure = [r for r in everyone.additions if r.provider == "azure" and r.model == "gpt-4o-mini"]
    assert [r.usd("input") for r in azure] == [Decimal("0.165")]  # its own new row


def test_an_override_prices_the_provider_entry_it_names() -> None:
    from core.control import PriceOverride
    from core.controls import override_row

    base = load_catalog()
    azure = PriceOverride("gpt-4o-mini", "azure", DAY, Decimal("0.165"), Decimal("0.66"))
    own = PriceOverride("claude-sonnet-4-5", "anthropic", DAY, Decimal("2"), Decimal("10"))
    cat = base.with_rows([override_row(azure, base), override_row(own, base)])
    assert cat.lookup("gpt-4o-mini", DAY).input == 150_000  # OpenAI's is untouched
    assert cat.lookup("azure/gpt-4o-mini", DAY).input == 165_000
    sonnet = cat.lookup("claude-sonnet-4-5", DAY)
    assert (sonnet.input, sonnet.cache_write_1h) == (2_000_000, 4_000_000)  # 1h write: 2x


def test_the_api_price_import_writes_each_entry_its_own_providers_rates(
    raw: dict[str, Any],
) -> None:
    """POST /prices/import's overrides (core.pricing.overrides) hold the rates of the
    (provider, model) entry they are written for: they took the first same-named entry of
    any provider (Cerebras' $0.25/$0.69 for Groq's gpt-oss-120b, the free 'codestral'
    provider's $0 for Mistral's codestral-latest, Vertex's rates for Google's Gemini)."""
    from core.pricing.overrides import preview_import

    catalog = load_catalog()
    preview = preview_import(REAL.read_bytes(), catalog, DAY)
    assert preview.overrides
    for o in preview.overrides:
        assert o.provider == catalog.provider_of(f"{o.provider}/{o.model}"), o
        row = catalog.lookup(f"{o.provider}/{o.model}")
        names = {row.model.lower(), *(a.lower() for a in row.aliases)}
        entries = _own_entries(raw, o.provider, names)
        stated = {
            (_usd_per_mtok(e["input_cost_per_token"]), _usd_per_mtok(e["output_cost_per_token"]))
            for e in entries
        }
        assert (o.input, o.output) in stated, (o, stated)
    got = {(o.provider, o.model): (o.input, o.output) for o in preview.overrides}
    assert got[("mistral", "codestral-latest")] == (Decimal("1"), Decimal("3"))
    assert got[("groq", "openai/gpt-oss-120b")] == (Decimal("0.15"), Decimal("0.75"))
    assert got[("google", "gemini-1.5-pro")] == (Decimal("3.5"), Decimal("10.5"))


def test_an_import_keeps_the_catalogs_rates_the_file_does_not_state(
    imported: tuple[list[PriceRow], list[Any]],
) -> None:
    """A rate the entry does not state is no change in the diff, and no change in the
    override either (it was written as 'same as input': Gemini 1.5 Pro's cached input at
    $3.50 instead of $0.3125, Groq's gpt-oss cached reads at full price); a rate that was
    the catalog's own fallback (an empty cell: reasoning = output) follows the new rate."""
    from core.pricing import plan_import
    from core.pricing.overrides import preview_import

    rows, _ = imported
    catalog = load_catalog()
    plan = plan_import(catalog, rows, providers=catalog.providers())
    updated = {(r.provider, model): r for model, r in plan.updates}
    api = {
        (o.provider, o.model): o for o in preview_import(REAL.read_bytes(), catalog, DAY).overrides
    }
    for key, usd in (
        (("google", "gemini-1.5-pro"), Decimal("0.3125")),
        (("groq", "openai/gpt-oss-120b"), Decimal("0.075")),
    ):
        assert updated[key].usd("cached_input") == usd
        assert api[key].cached_input == usd
    groq = updated[("groq", "openai/gpt-oss-120b")]
    assert groq.reasoning == groq.output and groq.cache_write == groq.input
    for (provider, model), r in updated.items():  # every stated rate is the file's
        mine = next(
            x
            for x in rows
            if x.provider == provider
            and x.above_prompt_tokens == 0
            and (catalog.name_under(provider, x.model) or x.model).lower() == model.lower()
        )
        assert (r.input, r.output) == (mine.input, mine.output)


def test_an_override_naming_its_provider_in_capitals_prices_that_provider() -> None:
    """'OpenAI' is the catalog's openai: the override was stored as an entry of a provider
    'OpenAI' that nothing priced with, and gpt-4o-mini kept its old rate."""
    from core.control import SYSTEM, ControlPlane, PriceOverride
    from core.controls import override_row
    from core.pricing.overrides import catalog_in_force

    base = load_catalog()
    old = PriceOverride("gpt-4o-mini", "OpenAI", DAY, Decimal("0.1"), Decimal("0.4"))
    assert base.with_rows([override_row(old, base)]).lookup("gpt-4o-mini", DAY).input == 100_000
    plane = ControlPlane()
    try:
        plane.upsert_price_override(
            PriceOverride("gpt-4o-mini", "OpenAI", DAY, Decimal("0.12"), Decimal("0.5")), SYSTEM
        )
        assert [o.provider for o in plane.price_overrides()] == ["openai"]
        assert catalog_in_force(plane, base).lookup("gpt-4o-mini", DAY).input == 120_000
    finally:
        plane.close()


def test_one_providers_entries_with_different_prices_are_never_guessed(
    raw: dict[str, Any], imported: tuple[list[PriceRow], list[Any]]
) -> None:
    """LiteLLM 1.80.0 lists DeepSeek's deepseek-chat twice: 'deepseek-chat' at $0.60/$1.70
    per 1M and 'deepseek/deepseek-chat' at $0.27/$1.10 (deepseek-reasoner likewise). The
    import took whichever came first in the file and proposed more than doubling DeepSeek's
    prices, the other entry named only as 'same provider and model'. Neither is imported
    now: each is a problem naming both entries and their prices. Entries of one provider
    that agree (Azure's two computer-use-preview) are still one row."""
    from core.pricing import plan_import

    rows, problems = imported
    reasons = {p.key: p.reason for p in problems}
    for model in ("deepseek-chat", "deepseek-reasoner"):
        bare, prefixed = raw[model], raw[f"deepseek/{model}"]  # the file, read here
        assert bare["litellm_provider"] == prefixed["litellm_provider"] == "deepseek"
        assert bare["input_cost_per_token"] != prefixed["input_cost_per_token"]
        assert not [r for r in rows if (r.provider, r.model.lower()) == ("deepseek", model)]
        for key in (model, f"deepseek/{model}"):
            assert "different prices" in reasons[key], reasons[key]
            assert repr(model) in reasons[key] and repr(f"deepseek/{model}") in reasons[key]
        want = (
            _usd_per_mtok(bare["input_cost_per_token"]),
            _usd_per_mtok(prefixed["input_cost_per_token"]),
        )
        assert all(f" {usd}/" in reasons[model] for usd in want)
    catalog = load_catalog()
    plan = plan_import(catalog, rows, providers=catalog.providers())
    assert not [m for m, r in plan.updates if r.provider == "deepseek"]
    assert not [c for c in plan.changes if c.provider == "deepseek" and c.kind == "changed"]
    azure = [r for r in rows if (r.provider, r.model) == ("azure", "computer-use-preview")]
    assert [r.usd("input") for r in azure] == [Decimal("3")]
    assert "same provider and model (azure)" in reasons["computer-use-preview"]


def test_rates_finer_than_a_picodollar_are_written_as_exact_overrides_by_the_import(
    raw: dict[str, Any],
) -> None:
    """Two Vertex AI entries of LiteLLM 1.80.0 charge 4.6875e-09 USD per output token
    (4687.5 pUSD). A price override held whole picodollars per token only, so the import
    listed them as problems and never wrote them. Applying the import (new models too)
    now writes them, they read back exactly, and a call priced with one is the exact cost
    rounded half to even."""
    from core.control import SYSTEM, ControlPlane
    from core.pricing.overrides import apply_import, catalog_in_force, preview_import

    rates = ("input", "output", "cached_input", "cache_write", "reasoning")
    finer: dict[str, dict[str, Decimal]] = {}  # model -> its file's rates, USD per 1M
    for key, e in raw.items():
        vertex = isinstance(e, dict) and e.get("litellm_provider", "").startswith("vertex_ai")
        if vertex and e.get("mode") in ("chat", "responses"):
            usd = {f: Decimal(repr(e[KEYS[f]])) for f in rates if isinstance(e.get(KEYS[f]), float)}
            if any(v.scaleb(12) != v.scaleb(12).to_integral_value() for v in usd.values()):
                finer[key.split("/", 1)[-1]] = {f: v.scaleb(6) for f, v in usd.items()}
    assert finer  # the file has some
    catalog = load_catalog()
    preview = preview_import(REAL.read_bytes(), catalog, DAY, providers={"vertex_ai"})
    assert not [p for p in preview.problems if p.key.split("/", 1)[-1] in finer]
    proposed = [*preview.overrides, *preview.new_models]
    assert set(finer) <= {o.model for o in proposed}
    plane = ControlPlane()
    try:
        written, errors = apply_import(plane, SYSTEM, preview, True, catalog)
        assert (written, errors) == (len(proposed), [])
        stored = {o.model: o for o in plane.price_overrides() if o.model in finer}
        assert set(stored) == set(finer)
        for model, usd in finer.items():
            for f, v in usd.items():
                assert getattr(stored[model], f) == v, (model, f)
        # the file: input 4.688e-09, output 4.6875e-09 USD per token
        row = catalog_in_force(plane, catalog).lookup("vertex_ai/gemini-1.5-flash-exp-0827", DAY)
        assert (row.input, row.output) == (4_688, Fraction(9_375, 2))
        # 1,000 x 4,688 = 4,688,000; 3 x 4,687.5 = 14,062.5 -> 14,062 (half to even)
        assert price(Usage(input_tokens=1_000, output_tokens=3), row).total == 4_702_062
        # 1 x 4,687.5 -> 4,688 (half to even, up this time)
        assert price(Usage(output_tokens=1), row).total == 4_688
    finally:
        plane.close()
