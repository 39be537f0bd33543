"""Money past int64 picodollars (about $9.22M): a budget limit the live counters cannot
enforce exactly is refused naming the maximum, over the REST API as in core; a counter
never wraps or turns into a float."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from core.budgets import hard_cap
from core.control import Budget, max_limit_usd, validate_budget
from core.errors import ConfigError
from core.state import MemoryState
from tests.servers.api import ApiServer

INT64_MAX = 2**63 - 1
ANNUAL = {"id": "annual", "name": "Annual", "period": "month", "action": "block"}


@pytest.fixture
def api(costline_home: Path) -> Iterator[ApiServer]:
    with ApiServer(costline_home, state=MemoryState("t:")) as server:
        yield server


@pytest.mark.parametrize(
    ("amount", "extra", "maximum"),
    [
        ("10000000", {}, "$4,611,686.01"),  # $10M: the default soft_multiplier 2.0
        ("50000000", {"action": "alert"}, "$9,223,372.03"),  # past int64 whatever the cap
        ("5000000", {}, "$4,611,686.01"),  # fits int64, but its 2x cap does not
        ("7000000", {"soft_multiplier": 1.5}, "$6,148,914.69"),
    ],
)
def test_a_budget_its_counters_cannot_hold_is_a_422_naming_the_maximum(
    api: ApiServer, amount: str, extra: dict[str, object], maximum: str
) -> None:
    eng = api.client(api.user("eng", "engineer"))
    version = api.plane.version()
    r = eng.post("/budgets", json={**ANNUAL, **extra, "limit_usd": amount})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "limit_usd"
    assert maximum in error["message"] and "64 bits" in error["message"], error
    assert api.plane.version() == version  # nothing written
    # the named maximum itself is taken, and its hard cap fits a counter exactly
    top = maximum.removeprefix("$").replace(",", "")
    r = eng.post("/budgets", json={**ANNUAL, **extra, "limit_usd": top})
    assert r.status_code == 201, r.text
    b = api.plane.budget("annual")
    assert b is not None and b.limit_usd == Decimal(top)
    assert b.limit_picousd is not None
    most = b.limit_picousd if b.action == "alert" else hard_cap(b, b.limit_picousd)
    assert most <= INT64_MAX


def test_the_maximum_is_the_largest_cent_whose_cap_fits() -> None:
    for m in (1.0, 1.5, 2.0, 3.0, 10.0):
        top = max_limit_usd(m)
        b = Budget(id="b", name="b", limit_usd=top, soft_multiplier=m, action="block")
        assert validate_budget(b).limit_usd == top
        assert b.limit_picousd is not None and hard_cap(b, b.limit_picousd) <= INT64_MAX
        over = replace(b, limit_usd=top + Decimal("0.01"))
        assert over.limit_picousd is not None and hard_cap(over, over.limit_picousd) > INT64_MAX
        with pytest.raises(ConfigError, match=r"limit_usd: must be <= ") as err:
            validate_budget(over)
        assert err.value.field == "limit_usd"
    tokens = Budget(id="t", name="t", limit_tokens=INT64_MAX, action="degrade")
    with pytest.raises(ConfigError, match="limit_tokens: must be <= 4611686018427387903"):
        validate_budget(tokens)
    assert validate_budget(replace(tokens, action="alert")).limit_tokens == INT64_MAX


def test_a_key_budget_past_the_maximum_names_it(api: ApiServer) -> None:
    eng = api.client(api.user("eng", "engineer"))
    r = eng.post("/keys", json={"name": "k-big", "budget_usd": "9223372.04"})
    assert r.status_code == 422, r.text
    assert "$9,223,372.03" in r.json()["error"]["message"]
    assert eng.get("/keys/k-big").status_code == 404
    r = eng.post("/keys", json={"name": "k-top", "budget_usd": "9223372.03"})
    assert r.status_code == 201, r.text
