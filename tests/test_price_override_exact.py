"""Price overrides hold any rate the catalog holds, exactly (issue 14: LiteLLM's 4.6875e-09
USD per token is 4687.5 pUSD, $0.0046875 per 1M). An override held whole picodollars per
token only ('has more decimals than 0.000001 allows'); now it is stored exactly on SQLite
and PostgreSQL, read back unchanged, and a call priced with it costs the exact product
rounded half to even per token class. Rows written before keep reading as they did."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.control import (
    MIGRATIONS,
    SYSTEM,
    ControlPlane,
    PriceOverride,
    make_engine,
    migrate,
    validate_price_override,
)
from core.errors import ConfigError
from core.pricing import PriceRow, load_catalog, plan_import, price
from core.pricing.overrides import catalog_in_force
from core.types import Usage
from tests.servers.api import ApiServer

DAY = date(2026, 3, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, costline_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{costline_home / 'control.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def api(url: str, costline_home: Path) -> Iterator[ApiServer]:
    plane = ControlPlane(url, scrypt_n=2**4)  # test-only hash cost
    try:
        with ApiServer(costline_home, plane=plane) as server:
            yield server
    finally:
        plane.close()


def raw_rates(url: str, column: str) -> tuple[int, str | None]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            got = conn.execute(
                sa.text(f"SELECT {column}, {column}_exact FROM price_overrides")
            ).one()
    finally:
        engine.dispose()
    return got[0], got[1]


def test_an_override_at_a_fraction_of_a_picodollar_is_written_and_priced_exactly(
    api: ApiServer, url: str
) -> None:
    admin = api.client(api.user("root", "admin"))
    body = {
        "model": "gpt-4o",
        "provider": "openai",
        "effective_from": DAY.isoformat(),
        "input": "2.5",
        "output": "0.0046875",  # 4687.5 pUSD per token
        "cached_input": "0.0000015",  # 1.5 pUSD per token
        "reasoning": "0.000000000000000001",  # 10**-12 pUSD: the finest the catalog holds
    }
    made = admin.post("/prices/overrides", json=body)
    assert made.status_code == 201, made.text
    sent = {k: body[k] for k in ("input", "output", "cached_input", "reasoning")}
    assert {k: made.json()[k] for k in sent} == sent
    (listed,) = admin.get("/prices/overrides").json()["data"]
    assert {k: listed[k] for k in sent} == sent
    rows = admin.get("/prices", params={"model": "gpt-4o"}).json()["data"]
    (row_json,) = [r for r in rows if r["effective_from"] == DAY.isoformat()]
    assert row_json["output_usd_per_mtok"] == "0.0046875"
    assert row_json["cached_input_usd_per_mtok"] == "0.0000015"
    # stored: the integer column rounded half to even, the exact value beside it
    assert raw_rates(url, "output_picousd_per_token") == (4_688, "4687.5")
    assert raw_rates(url, "input_picousd_per_token") == (2_500_000, None)

    fresh = ControlPlane(url)  # another process reading the same control plane
    try:
        (o,) = fresh.price_overrides()
        assert (o.input, o.output) == (Decimal("2.5"), Decimal("0.0046875"))
        assert o.cached_input == Decimal("0.0000015")
        assert o.reasoning == Decimal("1E-18") and o.cache_write is None
        row = catalog_in_force(fresh, load_catalog()).lookup("openai/gpt-4o", DAY)
    finally:
        fresh.close()
    assert (row.output, row.cached_input) == (Fraction(9_375, 2), Fraction(3, 2))
    assert row.cache_write == 2_500_000  # empty: the input rate
    usage = Usage(input_tokens=1_000, cached_input_tokens=3, output_tokens=3)
    cost = price(usage, row)
    # input 1,000 x 2,500,000 = 2,500,000,000; cached 3 x 1.5 = 4.5 -> 4 (half to even);
    # output 3 x 4,687.5 = 14,062.5 -> 14,062 (half to even)
    assert (cost.input, cost.cached_input, cost.output) == (2_500_000_000, 4, 14_062)
    assert cost.total == 2_500_014_066


def test_an_import_applied_through_the_api_writes_a_sub_picodollar_rate(
    api: ApiServer,
) -> None:
    admin = api.client(api.user("root", "admin"))
    content = {
        "gemini-exact-test": {
            "litellm_provider": "vertex_ai-language-models",
            "mode": "chat",
            "input_cost_per_token": 7.5e-08,
            "output_cost_per_token": 4.6875e-09,
            "max_input_tokens": 1_000_000,
            "max_output_tokens": 8_192,
        }
    }
    body = {"content": content, "effective_from": DAY.isoformat(), "add_new": True}
    dry = admin.post("/prices/import", json=body).json()
    assert dry["problems"] == []
    assert [(o["model"], o["output"]) for o in dry["new_models"]] == [
        ("gemini-exact-test", "0.0046875")
    ]
    done = admin.post("/prices/import", json={**body, "confirm": True}).json()
    assert (done["written"], done["errors"]) == (1, [])
    (o,) = api.plane.price_overrides()
    assert (o.provider, o.input, o.output) == ("vertex_ai", Decimal("0.075"), Decimal("0.0046875"))
    row = catalog_in_force(api.plane, load_catalog()).lookup("vertex_ai/gemini-exact-test", DAY)
    # 7 x 4,687.5 = 32,812.5 -> 32,812 (half to even); 2 x 75,000 = 150,000
    assert price(Usage(input_tokens=2, output_tokens=7), row).total == 182_812


def test_rows_written_before_the_exact_columns_read_unchanged(url: str) -> None:
    engine = make_engine(url)
    before = [m for m in MIGRATIONS if m.__name__ != "m010_exact_price_overrides"]
    migrate(engine, before)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO price_overrides (provider, model, effective_from,"
                " input_picousd_per_token, cached_input_picousd_per_token,"
                " output_picousd_per_token, note) VALUES ('openai', 'gpt-4o', :day, 2500000,"
                " 1, 10000000, 'old')"
            ),
            {"day": DAY},
        )
    assert migrate(engine) == ["m010_exact_price_overrides"]
    engine.dispose()
    plane = ControlPlane(url)
    try:
        (o,) = plane.price_overrides()
        rates = (o.input, o.cached_input, o.cache_write, o.output, o.reasoning)
        assert rates == (Decimal("2.5"), Decimal("0.000001"), None, Decimal("10"), None)
        assert o.note == "old"
        row = catalog_in_force(plane, load_catalog()).lookup("openai/gpt-4o", DAY)
        assert (row.input, row.cached_input, row.output) == (2_500_000, 1, 10_000_000)
    finally:
        plane.close()
    assert raw_rates(url, "output_picousd_per_token") == (10_000_000, None)


def test_an_integer_rewritten_without_the_exact_column_wins(url: str) -> None:
    """A version that knows only the integer column (a rollback) rewrites it and leaves the
    exact text stale: the integer it wrote is read, not the stale text."""
    plane = ControlPlane(url)
    try:
        o = PriceOverride("gpt-4o", "openai", DAY, Decimal("2.5"), Decimal("0.0046875"))
        plane.upsert_price_override(o, SYSTEM)
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE price_overrides SET output_picousd_per_token = 5000"))
        engine.dispose()
        (got,) = plane.price_overrides()
        assert got.output == Decimal("0.005")
    finally:
        plane.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-0.0046875", ">= 0"),
        ("NaN", ">= 0"),
        ("Infinity", ">= 0"),
        ("0.0000000000000000001", "more than 18 decimals"),  # 10**-13 pUSD per token
        ("1e-999999", "more than 18 decimals"),
        ("9223372036854.775808", "must be <="),  # one step over a BIGINT of pUSD per token
        ("1e400", "must be <="),
        ("twelve", "must be a number"),
    ],
)
def test_a_rate_an_override_cannot_hold_exactly_is_refused(value: str, problem: str) -> None:
    o = PriceOverride("gpt-4o", "openai", DAY, Decimal("1"), value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=problem) as err:
        validate_price_override(o)
    assert err.value.field == "output"


def test_the_extremes_an_override_holds_are_kept_exactly() -> None:
    o = PriceOverride(
        "gpt-4o",
        "openai",
        DAY,
        Decimal("9223372036854.775807"),  # a BIGINT of pUSD per token
        Decimal("1234567.000000000000000001"),  # 25 digits, the last 10**-12 pUSD
        cached_input=Decimal("0.004687500000"),
    )
    got = validate_price_override(o)
    assert (got.input, got.output) == (o.input, o.output)
    assert str(got.cached_input) == "0.0046875"
    assert got.picousd_per_token(got.output) == Fraction(1_234_567_000_000_000_000_000_001, 10**12)


def test_an_import_plan_writes_sub_picodollar_rates_refusing_only_what_none_holds() -> None:
    catalog = load_catalog()
    exact = PriceRow.from_usd("exact-test", "acme", input="0.075", output="0.0046875")
    too_fine = PriceRow(  # 10**-13 pUSD per token: finer than the catalog's CSV accepts
        "too-fine-test", "acme", DAY, 0, 8_192, 1_024, 1, 1, 1, Fraction(1, 10**13), 1
    )
    plan = plan_import(catalog, [exact, too_fine])
    assert [r.model for r in plan.additions] == ["exact-test"]
    assert plan.additions[0].output == Fraction(9_375, 2)
    (problem,) = plan.unwritable_problems
    assert problem.key == "acme/too-fine-test" and "output 1/10000000000000" in problem.reason
