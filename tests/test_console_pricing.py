"""Pricing page: the searchable catalog for everyone; overrides and LiteLLM imports for admins
(audited, picked up by a new Router's Controls snapshot); unpriced models in the log."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from core import clock
from core.control import ControlPlane
from core.pricing import load_catalog, price
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Message
from core.usage import UsageEvent, UsageLog
from tests.console_support import ADMIN_PASSWORD, app, choose, make_users

PAGE = "app_pages/pricing.py"
TODAY = clock.today()
LITELLM = {
    "sample_spec": {"mode": "chat"},
    "dryrun-small": {  # changed: input 0.15 -> 0.20, output 0.60 -> 0.80 per 1M
        "litellm_provider": "dryrun",
        "mode": "chat",
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        "input_cost_per_token": 2e-07,
        "output_cost_per_token": 8e-07,
        "cache_read_input_token_cost": 7.5e-08,
        "input_cost_per_token_batches": 7.5e-08,
        "output_cost_per_token_batches": 3e-07,
    },
    "acme/brand-new-1": {
        "litellm_provider": "acme",
        "mode": "chat",
        "max_tokens": 8192,
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06,
    },
    "acme/broken": {
        "litellm_provider": "acme",
        "mode": "chat",
        "max_tokens": 8192,
        "input_cost_per_token": -1,
        "output_cost_per_token": 2e-06,
    },
    "text-embedding-x": {"litellm_provider": "openai", "mode": "embedding"},
}


@pytest.fixture
def home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    return costline_home


def pricing(role: str):  # type: ignore[no-untyped-def]
    at = app(role).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def table(at, column: str):  # type: ignore[no-untyped-def]
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with {column!r}"
    return found[0]


def overrides() -> list:  # type: ignore[type-arg]
    with ControlPlane() as plane:
        return plane.price_overrides()


def test_viewer_sees_the_searchable_catalog_but_no_controls(home: Path) -> None:
    at = pricing("viewer")
    catalog = table(at, "context_window")
    cat = load_catalog()
    assert set(catalog["model"]) == set(cat.models())
    gpt = catalog[(catalog["model"] == "dryrun-small")].iloc[0]
    assert (gpt["input"], gpt["output"], gpt["batch_input"]) == (0.15, 0.6, 0.075)
    assert gpt["provider"] == "dryrun" and gpt["status"] == "current"
    at.text_input(key="pr_search").input("dryrun").run()
    assert set(table(at, "context_window")["provider"]) == {"dryrun"}
    assert not at.file_uploader and not [b for b in at.button if b.key == "pr_del"]
    assert not [f for f in at.get("form")]
    assert "Changing prices needs the admin role." in [c.value for c in at.caption]


def test_admin_override_is_audited_and_a_new_router_prices_with_it(home: Path) -> None:
    at = pricing("admin")
    choose(at, "pr_ov_model", "dryrun-small")
    at.date_input(key="pr_ov_from").set_value(TODAY - timedelta(days=1))
    at.text_input(key="pr_ov_input").input("0.5")
    at.text_input(key="pr_ov_output").input("2")
    at.text_input(key="pr_ov_note").input("negotiated")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success][0].startswith("Override saved for dryrun-small")
    [o] = overrides()
    assert (o.model, o.provider, o.input, o.output) == (
        "dryrun-small",
        "dryrun",
        Decimal("0.5"),
        Decimal("2"),
    )
    with ControlPlane() as plane:
        assert plane.audit(limit=1)[0].actor == "admin"
        assert plane.audit(limit=1)[0].action.startswith("price_override")
    with Router(Settings.from_env()) as router:  # a new Controls snapshot
        done = router.complete(ChatRequest([Message("user", "hi")], model="dryrun-small"))
        row = router.catalog.lookup("dryrun-small")
        assert (row.input, row.output, row.cached_input) == (500_000, 2_000_000, 500_000)
        assert done.cost == price(done.usage, row) and done.cost.total > 0
    shown = table(at, "context_window")
    current = shown[(shown["model"] == "dryrun-small") & (shown["status"] == "current")]
    assert list(current["input"]) == [0.5] and "negotiated" in current["source"].iloc[0]


def test_a_rate_finer_than_a_picodollar_per_token_is_saved_and_priced_exactly(
    home: Path,
) -> None:
    """LiteLLM's 4.6875e-09 USD per token typed per token: the override held whole pUSD per
    token only ('has more decimals than 0.000001 allows'); now it is kept exactly and a new
    Router prices calls with the exact rate, each class rounded half to even."""
    at = pricing("admin")
    choose(at, "pr_ov_model", "dryrun-small")
    at.date_input(key="pr_ov_from").set_value(TODAY - timedelta(days=1))
    at.radio(key="pr_ov_unit").set_value("token")
    at.text_input(key="pr_ov_input").input("0.0000000046875")
    at.text_input(key="pr_ov_output").input("0.000000003")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [o] = overrides()
    assert (o.input, o.output) == (Decimal("0.0046875"), Decimal("0.003"))
    assert list(table(at, "note")["input"]) == ["0.0046875"]
    with Router(Settings.from_env()) as router:  # a new Controls snapshot
        done = router.complete(ChatRequest([Message("user", "hi")], model="dryrun-small"))
        row = router.catalog.lookup("dryrun-small")
        assert (row.input, row.output) == (Fraction(9_375, 2), 3_000)
        u = done.usage
        assert u.input_tokens and not u.cached_input_tokens and not u.cache_write_tokens
        # n x 4,687.5 pUSD is whole for even n, else ends in .5: rounded to the even neighbour
        half, odd = divmod(u.input_tokens * 9_375, 2)
        assert done.cost.input == half + (odd and half % 2)
        assert done.cost.output == 3_000 * u.output_tokens
    shown = table(at, "context_window")
    current = shown[(shown["model"] == "dryrun-small") & (shown["status"] == "current")]
    assert list(current["input"]) == [0.0046875]


def test_self_hosted_cost_per_token_and_new_models(home: Path) -> None:
    at = pricing("admin")
    assert {"dryrun-small", "smollm2-135m-instruct"} <= set(at.selectbox(key="pr_ov_model").options)
    assert "vllm" in at.selectbox(key="pr_ov_provider").options  # providers are picked too
    choose(at, "pr_ov_model", "smollm2-135m-instruct")
    at.radio(key="pr_ov_unit").set_value("token")
    at.text_input(key="pr_ov_input").input("0.00000002")  # $0.02 per 1M tokens
    at.text_input(key="pr_ov_output").input("0.00000004")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert not at.exception and not at.error
    choose(at, "pr_ov_model", "acme-private-7b")
    at.text_input(key="pr_ov_input").input("0.0000001")  # still per token
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert any("not a model in the price catalog" in e.value for e in at.error), (
        [e.value for e in at.error],
        [s.value for s in at.success],
    )
    at.checkbox(key="pr_ov_new").check()
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert any("a new model needs its provider" in e.value for e in at.error)
    choose(at, "pr_ov_provider", "vllm")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert not at.error
    got = {(o.model, o.provider): (o.input, o.output) for o in overrides()}
    assert got == {
        ("smollm2-135m-instruct", "local"): (Decimal("0.02"), Decimal("0.04")),
        ("acme-private-7b", "vllm"): (Decimal("0.1"), Decimal("0.04")),
    }


def test_missing_rate_is_a_clear_error_and_delete_removes(home: Path) -> None:
    at = pricing("admin")
    choose(at, "pr_ov_model", "dryrun-large")
    at.text_input(key="pr_ov_input").input("1")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert [e.value for e in at.error] == ["output: a rate is required"]
    at.text_input(key="pr_ov_output").input("abc")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert [e.value for e in at.error] == ["output: 'abc' is not a number"]
    at.text_input(key="pr_ov_output").input("4")
    at.button(key="FormSubmitter:pr_override-Save override").click().run()
    assert len(overrides()) == 1
    saved = overrides()[0].effective_from  # the form's default: today when it was drawn
    at.button(key="pr_del").click().run()  # asks first: nothing deleted yet
    assert not at.exception and len(overrides()) == 1
    assert any("Delete the override of dryrun-large" in w.value for w in at.warning)
    cancel = next(b for b in at.button if b.key.startswith("pr_delete_no_"))
    cancel.click().run()
    assert len(overrides()) == 1 and not any("Delete the" in w.value for w in at.warning)
    at.button(key="pr_del").click().run()
    next(b for b in at.button if b.key.startswith("pr_delete_yes_")).click().run()
    assert not at.exception and overrides() == []
    assert "No price overrides." in [i.value for i in at.info]
    assert saved in (TODAY, TODAY + timedelta(days=1))  # midnight may pass during the test
    assert f"Override of dryrun-large from {saved} deleted." in [s.value for s in at.success]


def test_litellm_import_shows_a_diff_and_applies_only_on_confirm(home: Path) -> None:
    at = pricing("admin")
    at.file_uploader(key="pr_import_file").set_value(
        ("prices.json", json.dumps(LITELLM).encode(), "application/json")
    ).run()
    at.date_input(key="pr_import_from").set_value(TODAY + timedelta(days=7))
    at.run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}  # by default only the catalog's providers
    assert (shown["Changed models"], shown["New models"]) == ("1", "0")
    assert any("1 providers the catalog does not have (acme)" in c.value for c in at.caption)
    at.checkbox(key="pr_import_own").uncheck().run()
    at.multiselect(key="pr_import_kinds").set_value(["changed", "added"]).run()
    shown = {m.label: m.value for m in at.metric}
    assert (shown["Problems"], shown["Changed models"], shown["New models"]) == ("1", "1", "1")
    diff = table(at, "field")
    assert set(zip(diff["provider"], diff["model"], strict=True)) == {
        ("dryrun", "dryrun-small"),
        ("acme", "brand-new-1"),
    }
    changed = {
        f: (old, new)
        for m, k, f, old, new in zip(
            diff["model"], diff["change"], diff["field"], diff["old"], diff["new"], strict=True
        )
        if k == "changed"
    }
    assert changed["input"] == ("0.15", "0.2") and changed["output"] == ("0.6", "0.8")
    assert ("brand-new-1", "added") in set(zip(diff["model"], diff["change"], strict=True))
    assert table(at, "reason")["entry"].tolist() == ["acme/broken"]
    at.button(key="pr_import_apply").click().run()
    assert overrides() == [] and any("Write 1 price override " in w.value for w in at.warning)
    at.button(key="pr_import_cancel").click().run()
    assert overrides() == []
    at.checkbox(key="pr_import_add_new").check().run()
    at.button(key="pr_import_apply").click().run()
    assert overrides() == []
    at.button(key="pr_import_confirm").click().run()
    assert not at.exception and not at.error
    got = {o.model: o for o in overrides()}
    assert set(got) == {"dryrun-small", "brand-new-1"}
    small = got["dryrun-small"]
    assert (small.provider, small.effective_from) == ("dryrun", TODAY + timedelta(days=7))
    assert (small.input, small.output, small.cached_input) == (
        Decimal("0.2"),
        Decimal("0.8"),
        Decimal("0.075"),
    )
    assert got["brand-new-1"].provider == "acme"
    with Router(Settings.from_env()) as router:  # scheduled: today still the old rate
        assert router.controls is not None and router.controls.snapshot().price_overrides
        assert router.catalog.lookup("dryrun-small").input == 150_000
        assert router.catalog.lookup("dryrun-small", TODAY + timedelta(days=7)).input == 200_000


def test_engineer_previews_an_import_but_cannot_apply(home: Path) -> None:
    at = pricing("engineer")
    at.file_uploader(key="pr_import_file").set_value(
        ("prices.json", json.dumps(LITELLM).encode(), "application/json")
    )
    at.run()
    assert not at.exception
    assert len(table(at, "field")) > 0
    assert not [b for b in at.button if b.key in ("pr_import_apply", "pr_import_confirm")]
    assert "Applying an import needs the admin role." in [c.value for c in at.caption]


def test_unpriced_models_from_the_log_with_call_counts(home: Path) -> None:
    now = clock.now()
    with UsageLog(home) as log:
        for i, model in enumerate(["mystery-a", "mystery-a", "mystery-b", "mystery-a"]):
            log.append(
                UsageEvent(
                    request_id=f"req_u{i}",
                    ts=now - timedelta(minutes=i),
                    provider="vllm",
                    model=model,
                    input_tokens=10,
                    output_tokens=5,
                    unpriced=True,
                )
            )
        log.append(
            UsageEvent(
                request_id="req_priced",
                ts=now,
                provider="dryrun",
                model="dryrun-small",
                cost_picousd=1_000,
            )
        )
    at = pricing("viewer")
    unpriced = table(at, "priced_now")
    assert list(zip(unpriced["model"], unpriced["calls"], strict=True)) == [
        ("mystery-a", 3),
        ("mystery-b", 1),
    ]
    assert not unpriced["priced_now"].any()
    assert {m.label: m.value for m in at.metric}["Unpriced calls"] == "4"


def test_an_override_naming_another_provider_keeps_the_catalog_working(home: Path) -> None:
    from core.control import SYSTEM, PriceOverride

    with ControlPlane() as plane:  # written past the console: a second provider for a model
        plane.upsert_price_override(
            PriceOverride("dryrun-small", "openai", TODAY, Decimal("1"), Decimal("2")), SYSTEM
        )
    at = pricing("admin")
    assert not at.exception and not at.error  # the model keeps its catalog provider
    assert len(table(at, "context_window")) > 0
    at.button(key="pr_del").click().run()
    next(b for b in at.button if b.key.startswith("pr_delete_yes_")).click().run()
    assert not at.exception and not at.error and overrides() == []
