"""Money past int64 picodollars (about $9.22M): a budget limit the live counters cannot
enforce exactly is refused naming the maximum, over the REST API as in core; a counter
never wraps or turns into a float."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.budgets import hard_cap
from core.control import Budget, max_limit_usd, validate_budget
from core.errors import ConfigError
from core.state import COUNTER_MAX, BudgetItem, MemoryState, RedisState, SharedState
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


def test_a_reconcile_raise_on_redis_is_exact_past_two_to_the_53(redis_url: str) -> None:
    """RAISE moved counters through Lua numbers (doubles): past 2**53 pUSD ($9,007) the
    committed value and what was added came out rounded, and every raise re-wrote the
    budget key rounded even when it added nothing."""
    st = RedisState(redis_url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=5.0)
    try:
        base = 10**16 + 1  # $10,000.000000000001: odd, so not a double
        st.apply_deltas([("b", base + 2, 100.0), ("b:c", base, 100.0)])  # 2 pUSD held
        assert st.raise_committed([("b", base + 1, 100.0)]) == [1]
        assert st.get_values(["b", "b:c"]) == [base + 3, base + 1]
        assert st.raise_committed([("b", base, 100.0)]) == [0]  # below: nothing moves
        assert st.get_values(["b", "b:c"]) == [base + 3, base + 1]
        st.apply_deltas([("low", 5, 100.0), ("low:c", base, 100.0)])  # K below K:c
        assert st.raise_committed([("low", base, 100.0)]) == [0]
        assert st.get_values(["low", "low:c"]) == [base, base]  # lifted to K:c exactly
    finally:
        st.close()


@pytest.fixture(params=["memory", "shared", "redis"])
def counters(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryState("t:")
        return
    if request.param == "shared":
        st: Any = SharedState(tmp_path)
    else:
        url = request.getfixturevalue("redis_url")
        st = RedisState(url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=5.0)
    yield st
    st.close()


def test_a_counter_past_int64_stops_at_the_edge_never_a_float_or_an_error(counters: Any) -> None:
    """An alert-only budget's window can spend past $9.22M: SQLite turned the sum into a
    REAL (rounded, silently) and Redis's INCRBY failed the settle script half-way. Now the
    counter stops at COUNTER_MAX (above every limit a budget may have), an exact int; memory
    holds Python ints, exact either way."""
    near = COUNTER_MAX - 5
    assert counters.apply_deltas([("w", near, 100.0), ("w:c", near, 100.0)]) == [near, near]
    got = counters.apply_deltas([("w", 10**12, 100.0), ("w:c", 10**12, 100.0)])
    exact = isinstance(counters, MemoryState)
    want = near + 10**12 if exact else COUNTER_MAX
    assert got == [want, want] and all(type(v) is int for v in got)
    assert counters.get_values(["w", "w:c"]) == [want, want]
    assert all(type(v) is int for v in counters.get_values(["w", "w:c"]))
    # still refuses: every limit is below the edge
    item = BudgetItem("w", limit=COUNTER_MAX - 1, amount=1, ttl_s=100.0)
    assert counters.admit([], [item]).reason == "budget"
    assert counters.apply_deltas([("w", -(10**12), 100.0)]) == [want - 10**12]
    if not exact:  # the reconciler raising to a log sum past int64: to the edge, no error
        counters.apply_deltas([("r", 7, 100.0), ("r:c", 7, 100.0)])
        assert counters.raise_committed([("r", 2**64, 100.0)]) == [COUNTER_MAX - 7]
        assert counters.get_values(["r", "r:c"]) == [COUNTER_MAX, COUNTER_MAX]


def test_an_import_past_int64_in_total_is_exact_and_a_row_past_it_names_the_maximum(
    costline_home: Path,
) -> None:
    from core.importer import import_csv
    from core.usage import Reader

    text = "\n".join(
        [
            "date,model,input,output,cost",
            "2026-11-01,gpt-4o,10,10,5000000.000000000001",
            "2026-11-01,gpt-4o,10,10,5000000.000000000002",
            "2026-11-02,gpt-4o,10,10,9000000",
            "2026-11-02,gpt-4o,10,10,10000000",
        ]
    )
    path = costline_home / "big.csv"
    path.write_text(text)
    mapping = {"timestamp": "date", "model": "model", "input_tokens": "input"}
    mapping |= {"output_tokens": "output", "cost": "cost"}
    result = import_csv(path, mapping, now=datetime(2026, 12, 1, tzinfo=UTC), skip_bad_rows=True)
    [bad] = result.bad_rows
    assert bad.line == 5 and "at most $9,223,372.036854775807" in bad.reason, bad
    assert result.cost_total == Decimal("19000000.000000000003")
    with Reader() as rd:
        assert rd.totals()["cost_picousd"] == 19_000_000 * 10**12 + 3


def test_a_budget_shows_its_unpriced_calls_beside_the_spend(api: ApiServer) -> None:
    """Calls logged unpriced (an unknown model let through) have no cost: the Budgets page and
    GET /budgets/{id}/status read the priced spend, and said nothing of the calls left out,
    so a window full of unpriced calls looked like $0 spent."""
    from console.frames.budgets import utilisation_text
    from core import clock, reports
    from core.usage import Reader, UsageEvent, UsageLog

    eng = api.client(api.user("eng", "engineer"))
    r = eng.post("/budgets", json={**ANNUAL, "limit_usd": "10", "action": "alert"})
    assert r.status_code == 201, r.text
    log = UsageLog(api.home)
    at = clock.now() - timedelta(minutes=1)
    for i in range(5):
        priced = i < 2
        log.append(
            UsageEvent(
                request_id=f"r{i}",
                ts=at,
                provider="openai",
                model="gpt-4o-mini" if priced else "my-finetune",
                cost_picousd=10**12 if priced else None,
                unpriced=not priced,
            )
        )
    log.close()
    got = eng.get("/budgets/annual/status").json()
    assert (got["spent_usd"], got["unpriced"]) == ("2", 3), got
    b = api.plane.budget("annual")
    assert b is not None
    with Reader(api.home) as rd:
        (u,) = reports.utilisation(rd, api.plane, [b], clock.now())
    assert utilisation_text(u) == (
        "$2.00 of $10.00 (20%) · 3 unpriced calls (cost unknown, not in the spend)"
    )


def test_a_quarantined_segment_records_its_cost_to_the_picodollar(costline_home: Path) -> None:
    """What a quarantined segment held was summed by numpy: through float64, so a segment
    with one unpriced call (a null cost) recorded its cost as unknown, and past $9,007 the
    sum was rounded."""
    from test_usage_support import event

    from core.usage import quarantine_summary, rows_to_table, segments_dir, write_segment
    from core.usage._schema import event_row
    from core.usage._segments import quarantine_segment

    costs = [10**16 + 1, 10**16 + 2, None]  # $10,000.000000000001 ... and an unpriced call
    rows = [event_row(event(i, cost_picousd=c, unpriced=c is None)) for i, c in enumerate(costs)]
    path = write_segment(rows_to_table(rows), segments_dir(costline_home), "a")
    assert quarantine_segment(path, "a test")
    (item,) = quarantine_summary(costline_home).items
    assert (item.rows, item.cost_picousd) == (3, 2 * 10**16 + 3)


def test_a_row_stored_before_the_rule_still_routes_and_blocks_at_the_edge(
    costline_home: Path,
) -> None:
    """A $5M blocking budget stored before such limits were refused: the guard validates the
    rows it applies, so refusing them there would stop every call; it applies the row, its
    critical cap no higher than the counters hold, and the console or API asks for a
    smaller limit at the next edit."""
    import sqlalchemy as sa
    from test_controls_support import ENGINEER, make_plane, make_router

    from core.errors import BudgetExceeded
    from core.types import ChatRequest, Message

    plane = make_plane()
    plane.upsert_budget(
        Budget(id="big", name="big", limit_usd=Decimal(1), action="block"), ENGINEER
    )
    with plane.engine.begin() as conn:  # as an older version stored it
        conn.execute(sa.text("UPDATE budgets SET limit_picousd = :v"), {"v": 5 * 10**18})
    stored = plane.budget("big")
    assert stored is not None and stored.limit_usd == Decimal(5_000_000)
    with pytest.raises(ConfigError, match=r"\$4,611,686\.01"):
        plane.upsert_budget(replace(stored, name="renamed"), ENGINEER)
    state = MemoryState("t:")
    with make_router(plane, state) as r:
        ask = ChatRequest([Message("user", "hi")], model="dryrun-large", max_tokens=20)
        assert r.complete(ask).cost.total > 0
        win = r.controls.guard.window(stored)  # type: ignore[union-attr]
        state.apply_deltas([(win.usd_key, COUNTER_MAX - 10, 100.0)])  # at the edge
        critical = replace(ask, criticality="critical", cache=False)
        with pytest.raises(BudgetExceeded):
            r.complete(critical)
    plane.close()
