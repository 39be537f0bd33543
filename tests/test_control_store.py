"""ControlPlane contract, run against a real SQLite file and a real PostgreSQL database:
round trips, audit rows, versions, roles, alert de-duplication, resets and the Watcher."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from core import clock
from core.control import (
    SYSTEM,
    Actor,
    Budget,
    CacheSetting,
    ControlPlane,
    ModelScore,
    PriceOverride,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    Watcher,
    Weights,
)
from core.errors import ConfigError, PermissionDenied
from tests.child_death import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"gpt-4o", "gpt-4o-mini", "claude-3-5-haiku", "llama3-8b"}
ADMIN, ENGINEER, VIEWER = Actor("ada", "admin"), Actor("eve", "engineer"), Actor("vic", "viewer")
PASSWORD = "correct horse battery"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, costline_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{costline_home / 'control.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def plane(url: str) -> Iterator[ControlPlane]:
    p = ControlPlane(url, model_exists=MODELS.__contains__, scrypt_n=2**4)  # test-only cost
    for actor in (ADMIN, ENGINEER, VIEWER):
        p.create_user(actor.username, PASSWORD, actor.role, SYSTEM)
    yield p
    p.close()


@dataclass(frozen=True)
class Case:
    entity: str
    first: Any
    second: Any  # an edit of first (same key)
    upsert: Callable[[ControlPlane, Any, Actor], Any]
    read: Callable[[ControlPlane], list[Any]]
    delete: Callable[[ControlPlane, Any, Actor], bool]
    entity_id: str


BUDGET = Budget(
    id="team-a",
    name="Team A",
    scope="project",
    scope_value="alpha",
    period="week",
    limit_usd=Decimal("125.50"),
    limit_tokens=2_000_000,
    soft_multiplier=1.5,
    thresholds=(25, 50, 100, 150),
    action="degrade",
    degrade_to="gpt-4o-mini",
    timezone="Europe/Paris",
    webhook_url="https://hooks.example.com/costline",
)
POLICY = RoutingPolicy(
    task="summarize",
    primary_model="gpt-4o",
    fallbacks=("claude-3-5-haiku",),
    degrade_to="llama3-8b",
    criticality="high",
    strategy="balanced",
    weights=Weights(0.6, 0.1, 0.3),
    cache_ttl_s=1800,
    max_tokens=512,
)
SAMPLING = SamplingStrategy(
    key="market_regime",
    strategy="periodic",
    params={"interval_s": 300},
    min_interval_s=45,
    batch_size=8,
    batch_timeout_s=120,
)
PRICE = PriceOverride(
    model="gpt-4o",
    provider="openai",
    effective_from=date(2026, 5, 1),
    input=Decimal("2.5"),
    output=Decimal("10"),
    cached_input=Decimal("1.25"),
    note="negotiated",
)
CASES = [
    Case(
        "budget",
        BUDGET,
        replace(BUDGET, limit_usd=Decimal("0.000000000001"), enabled=False),
        lambda p, x, a: p.upsert_budget(x, a),
        lambda p: p.budgets(),
        lambda p, x, a: p.delete_budget(x.id, a),
        "team-a",
    ),
    Case(
        "routing_policy",
        POLICY,
        replace(POLICY, fallbacks=(), strategy="cheapest"),
        lambda p, x, a: p.upsert_policy(x, a),
        lambda p: p.policies(),
        lambda p, x, a: p.delete_policy(x.task, a),
        "summarize",
    ),
    Case(
        "sampling_strategy",
        SAMPLING,
        replace(
            SAMPLING, strategy="adaptive", params={"min_interval_s": 30, "max_interval_s": 600}
        ),
        lambda p, x, a: p.upsert_sampling(x, a),
        lambda p: p.sampling(),
        lambda p, x, a: p.delete_sampling(x.key, a),
        "market_regime",
    ),
    Case(
        "cache_setting",
        CacheSetting("chat", 300),
        CacheSetting("chat", 60, False, 0.92),
        lambda p, x, a: p.upsert_cache_setting(x, a),
        lambda p: p.cache_settings(),
        lambda p, x, a: p.delete_cache_setting(x.task, a),
        "chat",
    ),
    Case(
        "rate_limit",
        RateLimit("per-user", "user", None, "requests", 60, 60),
        RateLimit("per-user", "user", None, "tokens", 100_000, 3600, "sliding_window", 5000),
        lambda p, x, a: p.upsert_rate_limit(x, a),
        lambda p: p.rate_limits(),
        lambda p, x, a: p.delete_rate_limit(x.id, a),
        "per-user",
    ),
    Case(
        "price_override",
        PRICE,
        replace(PRICE, output=Decimal("9.999999"), reasoning=Decimal(12)),
        lambda p, x, a: p.upsert_price_override(x, a),
        lambda p: p.price_overrides(),
        lambda p, x, a: p.delete_price_override(x.provider, x.model, x.effective_from, a),
        "openai/gpt-4o/2026-05-01",
    ),
    Case(
        "model_score",
        ModelScore("gpt-4o", 0.9),
        ModelScore("gpt-4o", 0.85, "after eval"),
        lambda p, x, a: p.upsert_model_score(x, a),
        lambda p: p.model_scores(),
        lambda p, x, a: p.delete_model_score(x.model, a),
        "gpt-4o",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.entity for c in CASES])
def test_round_trip_audit_and_version(plane: ControlPlane, case: Case) -> None:
    v0 = plane.version()
    assert case.upsert(plane, case.first, ADMIN) == case.first
    assert case.read(plane) == [case.first]
    assert plane.version() == v0 + 1
    case.upsert(plane, case.second, ADMIN)
    assert case.read(plane) == [case.second]
    assert plane.version() == v0 + 2
    case.upsert(plane, case.second, ADMIN)  # unchanged: no write, no audit, no version
    assert plane.version() == v0 + 2
    assert case.delete(plane, case.second, ADMIN) is True
    assert case.read(plane) == []
    assert case.delete(plane, case.second, ADMIN) is False
    assert plane.version() == v0 + 3

    log = plane.audit(entity=case.entity)
    assert [e.action for e in log] == [f"{case.entity}.{a}" for a in ("delete", "update", "create")]
    assert {e.actor for e in log} == {"ada"} and {e.entity_id for e in log} == {case.entity_id}
    deleted, updated, created = log
    assert created.before is None and created.after == updated.before
    assert updated.after == deleted.before and deleted.after is None
    assert created.after != updated.after


def test_money_is_stored_as_exact_integer_picodollars(plane: ControlPlane) -> None:
    # the largest whole cent an alert-only budget's int64 picodollar counter holds
    largest, alert = Decimal("9223372.03"), replace(BUDGET, action="alert")
    with pytest.raises(ConfigError, match="limit_usd"):
        plane.upsert_budget(replace(alert, limit_usd=largest + Decimal("1e-12")), ADMIN)
    plane.upsert_budget(replace(alert, limit_usd=largest - Decimal("1e-12")), ADMIN)
    plane.upsert_price_override(replace(PRICE, input=Decimal("0.075")), ADMIN)
    with plane.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT limit_picousd FROM budgets")) == 9223372029999999999
        assert conn.scalar(sa.text("SELECT input_picousd_per_token FROM price_overrides")) == 75_000
    assert plane.budgets()[0].limit_usd == largest - Decimal("1e-12")
    assert plane.budgets()[0].limit_picousd == 9223372029999999999
    assert plane.price_overrides()[0].input == Decimal("0.075")


def test_budget_timezone_defaults_to_the_setting(plane: ControlPlane) -> None:
    assert plane.get_setting("timezone") == "UTC"
    assert plane.get_setting("nope", 7) == 7 and plane.get_setting("nope") is None
    plane.set_setting("timezone", "America/New_York", ADMIN)
    stored = plane.upsert_budget(replace(BUDGET, timezone=None), ENGINEER)
    assert stored.timezone == "America/New_York"
    assert plane.get_setting("timezone") == "America/New_York"
    entry = plane.audit(limit=1, entity="setting")[0]
    assert (entry.before, entry.after) == (None, {"value": "America/New_York"})


def test_costline_timezone_is_the_default_zone(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTLINE_TIMEZONE", "Asia/Tokyo")
    assert plane.get_setting("timezone") == "Asia/Tokyo"  # nothing stored: the environment's
    stored = plane.upsert_budget(replace(BUDGET, timezone=None), ENGINEER)
    assert stored.timezone == "Asia/Tokyo"  # budget windows follow it
    plane.set_setting("timezone", "Europe/Paris", ADMIN)
    assert plane.get_setting("timezone") == "Europe/Paris"  # a stored setting wins
    monkeypatch.setenv("COSTLINE_TIMEZONE", "Mars/Olympus")
    plane.delete_setting("timezone", ADMIN)
    with pytest.raises(ConfigError, match="COSTLINE_TIMEZONE 'Mars/Olympus'"):
        plane.get_setting("timezone")


def test_viewer_cannot_write_anything(plane: ControlPlane) -> None:
    plane.upsert_budget(BUDGET, ADMIN)
    v0, audit0 = plane.version(), len(plane.audit(limit=1000))
    writes: list[Callable[[], object]] = [
        *(lambda c=c: c.upsert(plane, c.first, VIEWER) for c in CASES),
        *(lambda c=c: c.delete(plane, c.first, VIEWER) for c in CASES),
        lambda: plane.reset_budget(BUDGET.id, VIEWER),
        lambda: plane.set_setting("timezone", "UTC", VIEWER),
        lambda: plane.delete_setting("timezone", VIEWER),
        lambda: plane.record_alert("team-a", "w", 50, message="m", actor=VIEWER),
        lambda: plane.ack_alert(1, VIEWER),
        lambda: plane.create_user("mallory", PASSWORD, "admin", VIEWER),
        lambda: plane.set_password("vic", PASSWORD + "!", VIEWER),
        lambda: plane.set_role("vic", "admin", VIEWER),
        lambda: plane.disable_user("ada", VIEWER),
    ]
    for write in writes:
        with pytest.raises(PermissionDenied):
            write()
    assert plane.version() == v0 and len(plane.audit(limit=1000)) == audit0
    assert [u.role for u in plane.users() if u.username == "vic"] == ["viewer"]


def test_engineer_edits_routing_but_not_users_prices_or_settings(plane: ControlPlane) -> None:
    for case in CASES:
        if case.entity == "price_override":
            with pytest.raises(PermissionDenied, match="price_override"):
                case.upsert(plane, case.first, ENGINEER)
        else:
            assert case.upsert(plane, case.first, ENGINEER) == case.first
    plane.reset_budget(BUDGET.id, ENGINEER)
    for denied in (
        lambda: plane.create_user("mallory", PASSWORD, "viewer", ENGINEER),
        lambda: plane.set_role("eve", "admin", ENGINEER),
        lambda: plane.set_setting("currency", "EUR", ENGINEER),
    ):
        with pytest.raises(PermissionDenied):
            denied()
    assert [u.role for u in plane.users() if u.username == "eve"] == ["engineer"]


def test_role_is_checked_against_the_users_table(plane: ControlPlane) -> None:
    with pytest.raises(PermissionDenied, match="viewer"):
        plane.upsert_budget(BUDGET, Actor("vic", "admin"))  # forged role
    with pytest.raises(PermissionDenied):
        plane.upsert_budget(BUDGET, Actor("ghost", "admin"))  # no such user
    plane.disable_user("eve", ADMIN)
    with pytest.raises(PermissionDenied):
        plane.upsert_budget(BUDGET, ENGINEER)
    plane.set_role("vic", "engineer", ADMIN)
    assert plane.upsert_budget(BUDGET, Actor("vic", "engineer")) == BUDGET
    with pytest.raises(ConfigError, match="last enabled admin"):
        plane.set_role("ada", "viewer", ADMIN)


def test_reset_changes_the_window_key_and_survives_stale_edits(plane: ControlPlane) -> None:
    plane.upsert_budget(BUDGET, ENGINEER)
    at = datetime(2026, 5, 14, 12, tzinfo=UTC)
    assert plane.budget(BUDGET.id).window_key(at) == "2026-W20"  # type: ignore[union-attr]
    after = plane.reset_budget(BUDGET.id, ENGINEER)
    assert after.reset_generation == 1 and after.window_key(at) == "2026-W20.r1"
    plane.upsert_budget(replace(BUDGET, name="Team A2"), ENGINEER)  # stale generation 0
    stored = plane.budget(BUDGET.id)
    assert stored is not None and (stored.name, stored.reset_generation) == ("Team A2", 1)
    entry = plane.audit(entity="budget", limit=2)[1]
    assert entry.action == "budget.reset" and entry.before and entry.after
    assert (entry.before["reset_generation"], entry.after["reset_generation"]) == (0, 1)
    assert plane.last_resets([BUDGET.id, "missing"]) == {BUDGET.id: entry.ts}
    with pytest.raises(ConfigError) as err:
        plane.reset_budget("missing", ENGINEER)
    assert err.value.field == "id"


def test_alert_fires_once_per_window_and_threshold(plane: ControlPlane, url: str) -> None:
    kw = dict(message="Team A at 50%", spent_picousd=63 * 10**12, limit_picousd=125 * 10**12)
    assert plane.record_alert("team-a", "2026-W20", 50, **kw) is True  # type: ignore[arg-type]
    v1 = plane.version()
    assert plane.record_alert("team-a", "2026-W20", 50, **kw) is False  # type: ignore[arg-type]
    assert plane.version() == v1
    assert plane.record_alert("team-a", "2026-W20", 75, message="75%") is True
    assert plane.record_alert("team-a", "2026-W20.r1", 50, message="after reset") is True
    assert plane.record_alert("team-a", "2026-W20", 50, message="x", kind="anomaly") is True
    # several processes' planes racing for one threshold: exactly one wins
    others = [ControlPlane(url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        won = list(
            pool.map(lambda p: p.record_alert("team-a", "2026-W21", 90, message="90%"), others)
        )
    for p in others:
        p.close()
    assert sorted(won) == [False, False, False, True]
    alerts = plane.alerts()
    assert len(alerts) == 5 and alerts[-1].spent_picousd == 63 * 10**12
    assert plane.alerts(since=clock.now() + timedelta(days=365 * 70)) == []
    assert plane.set_alert_delivery("team-a", "2026-W20", 75, error="HTTP 500") is True
    assert plane.ack_alert(alerts[-1].id, ENGINEER) is True
    by_threshold = {(a.window_key, a.threshold_pct, a.kind): a for a in plane.alerts()}
    failed = by_threshold[("2026-W20", 75, "budget")]
    assert (failed.delivered, failed.delivery_error) == (False, "HTTP 500")
    acked = by_threshold[("2026-W20", 50, "budget")]
    assert acked.acked_by == "eve" and acked.acked_at is not None
    assert [e.action for e in plane.audit(limit=2, entity="alert")] == [
        "alert.ack",
        "alert.delivery",
    ]


def test_snapshot_holds_everything_at_one_version(plane: ControlPlane) -> None:
    for case in CASES:
        case.upsert(plane, case.first, ADMIN)
    plane.set_setting("currency_rates", {"EUR": Decimal("0.92")}, ADMIN)
    snap = plane.snapshot()
    assert snap.version == plane.version()
    assert snap.budgets == (BUDGET,) and snap.policy("summarize") == POLICY
    assert snap.sampling_for("market_regime") == SAMPLING
    assert snap.price_overrides_for("gpt-4o", date(2026, 5, 2)) == (PRICE,)
    assert snap.price_overrides_for("gpt-4o", date(2026, 4, 30)) == ()
    assert snap.quality("gpt-4o") == 0.9 and snap.rate_limits == (CASES[4].first,)
    assert snap.setting("currency_rates")["EUR"] == "0.92"
    assert snap.setting("redis_fail_policy") == "open"
    assert snap.cache_ttl("summarize") == 1800  # the policy's own TTL
    assert snap.cache_ttl("chat") == 300  # the cache setting
    assert snap.cache_ttl("translation") == 86_400 and snap.cache_ttl("search") == 3600
    with pytest.raises(TypeError):
        snap.settings["timezone"] = "UTC"  # type: ignore[index]


CHILD = """
import sys, time
from decimal import Decimal
from core.control import SYSTEM, Budget, ControlPlane
plane = ControlPlane(sys.argv[1])
time.sleep(0.5)
plane.upsert_budget(Budget(id="from-child", name="Child", limit_usd=Decimal(1)), SYSTEM)
print(time.monotonic(), flush=True)  # one clock for both processes
"""


def test_watcher_sees_an_edit_from_another_process(plane: ControlPlane, url: str) -> None:
    watcher = Watcher(plane, min_interval_s=0.25)
    assert watcher.current().budgets == ()
    child = subprocess.Popen(
        [sys.executable, "-c", die_with_parent() + CHILD, url],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen_at = None
    deadline = time.monotonic() + 30  # generous for the child's start; the lag is asserted
    while time.monotonic() < deadline and seen_at is None:
        if [b.id for b in watcher.current().budgets] == ["from-child"]:
            seen_at = time.monotonic()  # the child's clock (a moved wall clock is not)
        time.sleep(0.02)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert seen_at is not None, "the watcher never saw the child's edit"
    lag = seen_at - float(out.strip())
    print(f"watcher lag {lag:.3f}s")
    assert lag < 5.0
    assert watcher.reloads == 1


class FlakyPlane:
    """version() fails on demand; snapshot() counts reloads."""

    def __init__(self) -> None:
        self.v, self.down, self.version_calls, self.snapshots = 1, False, 0, 0

    def version(self) -> int:
        self.version_calls += 1
        if self.down:
            raise OperationalError("SELECT version", {}, Exception("connection refused"))
        return self.v

    def snapshot(self) -> Any:
        from core.control import ControlSnapshot

        self.snapshots += 1
        return ControlSnapshot(version=self.v)


def test_watcher_polls_at_most_once_per_interval_and_survives_outages() -> None:
    now = [100.0]
    fake = FlakyPlane()
    w = Watcher(fake, min_interval_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(50):
        w.current()
    assert fake.version_calls == 0 and fake.snapshots == 1
    now[0] += 1.0
    fake.v = 2
    assert w.current().version == 2 and (fake.version_calls, fake.snapshots) == (1, 2)
    now[0] += 1.0
    fake.down = True
    assert w.current().version == 2 and w.last_error is not None
    now[0] += 1.0
    fake.down, fake.v = False, 3
    assert w.current().version == 3 and w.last_error is None
