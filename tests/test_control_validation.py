"""Every rejected edit raises ConfigError naming the field and the value, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from core.control import (
    SYSTEM,
    Budget,
    CacheSetting,
    ControlPlane,
    PriceOverride,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    Weights,
    validate_budget,
    validate_policy,
    validate_setting,
)
from core.errors import ConfigError

MODELS = {"gpt-4o", "gpt-4o-mini", "llama3-8b"}
BUDGET = Budget(id="b1", name="Global", limit_usd=Decimal("100"), timezone="UTC")
POLICY = RoutingPolicy(task="chat", primary_model="gpt-4o", fallbacks=("gpt-4o-mini",))
SAMPLING = SamplingStrategy(key="agent", strategy="periodic", params={"interval_s": 60})
PRICE = PriceOverride(
    model="gpt-4o",
    provider="openai",
    effective_from=date(2026, 1, 1),
    input=Decimal("2.5"),
    output=Decimal("10"),
)
RATE = RateLimit(id="r1")


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = ControlPlane(model_exists=MODELS.__contains__)
    p.upsert_budget(BUDGET, SYSTEM)
    p.upsert_policy(POLICY, SYSTEM)
    yield p
    p.close()


Write = Callable[[ControlPlane], object]


def budget(**kw: Any) -> Write:
    return lambda p: p.upsert_budget(replace(BUDGET, **kw), SYSTEM)


def policy(**kw: Any) -> Write:
    return lambda p: p.upsert_policy(replace(POLICY, **kw), SYSTEM)


def sampling(**kw: Any) -> Write:
    return lambda p: p.upsert_sampling(replace(SAMPLING, **kw), SYSTEM)


def price(**kw: Any) -> Write:
    return lambda p: p.upsert_price_override(replace(PRICE, **kw), SYSTEM)


def rate(**kw: Any) -> Write:
    return lambda p: p.upsert_rate_limit(replace(RATE, **kw), SYSTEM)


REJECTED: list[tuple[str, Write, str]] = [
    ("negative limit", budget(limit_usd=Decimal("-1")), "limit_usd"),
    ("NaN limit", budget(limit_usd=Decimal("NaN")), "limit_usd"),
    ("float NaN limit", budget(limit_usd=float("nan")), "limit_usd"),
    ("infinite limit", budget(limit_usd=Decimal("Infinity")), "limit_usd"),
    ("text limit", budget(limit_usd="lots"), "limit_usd"),
    ("negative tokens", budget(limit_tokens=-5), "limit_tokens"),
    ("no limit at all", budget(limit_usd=None, limit_tokens=None), "limit_usd"),
    ("unknown scope", budget(scope="galaxy", scope_value="x"), "scope"),
    ("missing scope value", budget(scope="org", scope_value=None), "scope_value"),
    ("global with a value", budget(scope="global", scope_value="acme"), "scope_value"),
    ("unknown period", budget(period="year"), "period"),
    ("thresholds out of order", budget(thresholds=(50, 90, 75)), "thresholds"),
    ("repeated threshold", budget(thresholds=(50, 50)), "thresholds"),
    ("zero threshold", budget(thresholds=(0, 50)), "thresholds"),
    ("threshold over 1000", budget(thresholds=(50, 1001)), "thresholds"),
    ("soft multiplier below 1", budget(soft_multiplier=0.5), "soft_multiplier"),
    ("NaN soft multiplier", budget(soft_multiplier=float("nan")), "soft_multiplier"),
    ("unknown action", budget(action="explode"), "action"),
    ("invalid time zone", budget(timezone="Mars/Olympus_Mons"), "timezone"),
    ("empty time zone", budget(timezone=""), "timezone"),
    ("unknown degrade model", budget(degrade_to="gpt-5-imaginary"), "degrade_to"),
    ("ftp webhook", budget(webhook_url="ftp://hooks.example.com/x"), "webhook_url"),
    ("webhook without host", budget(webhook_url="https://"), "webhook_url"),
    ("javascript webhook", budget(webhook_url="javascript:alert(1)"), "webhook_url"),
    ("bad budget id", budget(id="no spaces please"), "id"),
    ("empty name", budget(name="  "), "name"),
    ("unknown primary model", policy(primary_model="gpt-5-imaginary"), "primary_model"),
    ("unknown fallback", policy(fallbacks=("gpt-4o-mini", "nope")), "fallbacks"),
    ("fallback repeats primary", policy(fallbacks=("gpt-4o",)), "fallbacks"),
    ("unknown policy degrade", policy(degrade_to="nope"), "degrade_to"),
    ("unknown routing strategy", policy(strategy="random"), "strategy"),
    ("unknown criticality", policy(criticality="urgent"), "criticality"),
    ("negative weight", policy(weights=Weights(cost=-1)), "weights.cost"),
    ("zero weights", policy(strategy="balanced", weights=Weights(0, 0, 0)), "weights"),
    ("zero max tokens", policy(max_tokens=0), "max_tokens"),
    ("negative policy ttl", policy(cache_ttl_s=-1), "cache_ttl_s"),
    ("unknown sampling strategy", sampling(strategy="sometimes"), "strategy"),
    ("periodic without interval", sampling(params={}), "params.interval_s"),
    ("unknown sampling param", sampling(params={"interval_s": 5, "speed": 2}), "params.speed"),
    (
        "adaptive min over max",
        sampling(strategy="adaptive", params={"min_interval_s": 600, "max_interval_s": 60}),
        "params.max_interval_s",
    ),
    ("zero batch size", sampling(batch_size=0), "batch_size"),
    (
        "negative cache ttl",
        lambda p: p.upsert_cache_setting(CacheSetting("chat", -1), SYSTEM),
        "ttl_s",
    ),
    (
        "semantic threshold over 1",
        lambda p: p.upsert_cache_setting(CacheSetting("chat", 60, True, 1.5), SYSTEM),
        "semantic_threshold",
    ),
    ("unknown rate scope", rate(scope="planet"), "scope"),
    ("zero rate limit", rate(limit=0), "limit"),
    ("unknown algorithm", rate(algorithm="leaky_bucket"), "algorithm"),
    ("negative price", price(input=Decimal("-0.1")), "input"),
    ("price finer than 10**-24 USD a token", price(output=Decimal("1e-19")), "output"),
    ("unknown override model", price(model="gpt-5-imaginary"), "model"),
    ("bad timezone setting", lambda p: p.set_setting("timezone", "Nowhere", SYSTEM), "timezone"),
    (
        "bad fail policy",
        lambda p: p.set_setting("redis_fail_policy", "maybe", SYSTEM),
        "redis_fail_policy",
    ),
    (
        "unknown cache scope",
        lambda p: p.set_setting("cache_scope", "team", SYSTEM),
        "cache_scope",
    ),
    (
        "negative currency rate",
        lambda p: p.set_setting("currency_rates", {"EUR": "-1"}, SYSTEM),
        "currency_rates.EUR",
    ),
]


@pytest.mark.parametrize(
    ("write", "field"), [(w, f) for _, w, f in REJECTED], ids=[name for name, _, _ in REJECTED]
)
def test_rejected_write_names_the_field_and_changes_nothing(
    plane: ControlPlane, write: Write, field: str
) -> None:
    before, audit = plane.snapshot(), plane.audit(limit=1000)
    with pytest.raises(ConfigError) as err:
        write(plane)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert plane.snapshot() == before and plane.audit(limit=1000) == audit


def test_error_message_shows_the_value() -> None:
    with pytest.raises(ConfigError, match=r"timezone: .*'Mars/Olympus_Mons'"):
        validate_budget(replace(BUDGET, timezone="Mars/Olympus_Mons"))
    with pytest.raises(ConfigError, match=r"thresholds: must be strictly increasing .*90, 75"):
        validate_budget(replace(BUDGET, thresholds=(50, 90, 75)))


def test_valid_values_are_normalised() -> None:
    b = validate_budget(replace(BUDGET, limit_usd="12.3400", name=" Team ", webhook_url=""))
    assert (b.limit_usd, str(b.limit_usd), b.name, b.webhook_url) == (
        Decimal("12.34"),
        "12.34",
        "Team",
        None,
    )
    rounded = validate_budget(replace(BUDGET, limit_usd=Decimal("1.0000000000004")))
    assert rounded.limit_usd == 1  # to the picodollar, half-even
    with pytest.raises(ConfigError, match="below the smallest amount"):  # never a silent $0
        validate_budget(replace(BUDGET, limit_usd=Decimal("0.0000000000004")))
    assert (
        validate_budget(replace(BUDGET, limit_usd=Decimal("1E+2"))).limit_usd.as_tuple()
        == Decimal("100").as_tuple()
    )  # type: ignore[union-attr]
    assert validate_policy(POLICY, model_exists=None) == POLICY  # no catalog: names not checked
    assert validate_setting("currency_rates", {"EUR": Decimal("0.920")}) == {"EUR": "0.92"}


def test_new_model_price_needs_the_explicit_flag(plane: ControlPlane) -> None:
    custom = replace(PRICE, model="acme-finetune-1", provider="vllm")
    with pytest.raises(ConfigError):
        plane.upsert_price_override(custom, SYSTEM)
    assert plane.upsert_price_override(custom, SYSTEM, new_model=True) == custom


@pytest.mark.parametrize(
    ("security", "port"),
    [
        ({}, 25),
        ({"ssl": True}, 465),
        ({"starttls": True}, 587),
        ({"ssl": True, "port": 2465}, 2465),
    ],
)
def test_smtp_port_defaults_to_the_one_for_its_security(
    plane: ControlPlane, security: dict[str, Any], port: int
) -> None:
    """Before, ``ssl: true`` without a port stored 25 (a plain SMTP port: the TLS handshake
    of SMTP_SSL fails there); now SMTPS 465, and 587 (submission) with STARTTLS."""
    from core.worker import load_settings

    smtp = {"host": "mail.example.com", "sender": "cl@example.com", **security}
    plane.set_setting("notifications", {"email_to": ["a@example.com"], "smtp": smtp}, SYSTEM)
    assert plane.settings()["notifications"]["smtp"]["port"] == port
    assert load_settings(plane).smtp.port == port
