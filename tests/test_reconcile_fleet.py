"""Reconciliation in a fleet: several COSTLINE_HOMEs share one Redis and a SeaweedFS bucket.
A host's reconcile sees its own journals and the bucket, not another host's journal or
outbox, so it must never lower a shared counter on that view (real Redis, real bucket)."""

from __future__ import annotations

import os
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_controls_support import ENGINEER, make_plane

from core.control import Budget, ControlPlane
from core.controls import Controls
from core.errors import BudgetExceeded
from core.pricing import load_catalog
from core.router import Router
from core.settings import Settings
from core.state import make_state
from core.types import ChatRequest, Message
from core.usage import Reader, UsageLog
from core.usage._bucket import outbox_status, shipper_for
from tests.servers.seaweed import SeaweedS3

pytestmark = [pytest.mark.services, pytest.mark.timeout(180)]
LIMIT = Decimal("0.0001")


@pytest.fixture
def bucket(weed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"costline-{uuid.uuid4().hex[:10]}"
    weed.create_bucket(name)
    for k, v in weed.env(f"{name}/usage").items():
        monkeypatch.setenv(k, v)
    return name


def call(i: int) -> ChatRequest:
    return ChatRequest([Message("user", f"fleet {i}")], model="dryrun-small", max_tokens=30)


def host(name: Path, plane: ControlPlane, redis_url: str, log: UsageLog | None = None) -> Router:
    """One host of the fleet: its own COSTLINE_HOME, the fleet's Redis prefix and plane."""
    name.mkdir(parents=True, exist_ok=True)
    state = make_state(redis_url, prefix=os.environ["COSTLINE_TEST_PREFIX"])
    controls = Controls(load_catalog(), plane=plane, state=state, poll_s=0.02)
    settings = Settings.from_env(home=name, reconcile_interval_s=0)  # rounds run by the test
    return Router(settings, controls=controls, log=log or UsageLog(name))


def counter_key(r: Router) -> str:
    assert r.controls is not None
    b = next(b for b in r.controls.snapshot().budgets if b.id == "cap")
    return r.controls.guard.window(b).usd_key


def committed(r: Router) -> int:
    assert r.controls is not None
    return int(r.controls.state.get_values([counter_key(r) + ":c"])[0])


def spend_until_refused(r: Router, start: int) -> int:
    """Calls on ``r`` until the hard budget refuses one; how many were answered."""
    for i in range(200):
        try:
            r.complete(call(start + i))
        except BudgetExceeded:
            return i
    raise AssertionError("the budget never refused")


def test_a_reconcile_never_lowers_what_another_host_has_not_shipped(
    tmp_path: Path, bucket: str, redis_url: str
) -> None:
    """Host B spends the whole budget; its events are still in its journal (not converted,
    not uploaded). Host A reconciles twice (a lowering compares with the previous round). On
    main A lowered the shared counter to the log it could see ($0) and the fleet then spent
    past the hard limit."""
    plane = make_plane()
    plane.upsert_budget(Budget(id="cap", name="cap", limit_usd=LIMIT, action="block"), ENGINEER)
    # host B's journal is sealed only when the test says so (an hour, or 50,000 events)
    b_log = UsageLog(tmp_path / "hostB", flush_interval_s=3600)
    a = host(tmp_path / "hostA", plane, redis_url)
    b = host(tmp_path / "hostB", plane, redis_url, log=b_log)
    try:
        answered_b = spend_until_refused(b, 0)
        assert answered_b > 0
        spent_b = committed(b)
        assert spent_b > 0
        assert a.reconciler is not None
        a.reconciler.reconcile()  # notes the counters
        time.sleep(1.1)  # a lowering compares counters at least MIN_LAG_S old
        a.reconciler.reconcile()
        after = committed(a)
        # the hard limit holds fleet-wide: host A is refused too
        answered_a = spend_until_refused(a, 1000)
        for r in (a, b):  # each journal becomes a segment, shipped to the bucket
            r.close()
            shipper = shipper_for(r.settings.home)
            assert shipper is not None and shipper.drain(60), shipper.status()
        with Reader(tmp_path / "hostA") as rd:
            ev = rd.events(columns=["cost_picousd", "status"])
            total = int(ev[ev.status == "ok"].cost_picousd.sum())
        print(
            f"B answered {answered_b}, spent {spent_b}; counter after A's rounds {after};"
            f" A answered {answered_a};"
            f" logged {total} = {Decimal(total).scaleb(-12) / LIMIT:.3f}x the limit"
        )
        assert after >= spent_b, f"host A lowered the fleet's counter {spent_b} to {after}"
        assert answered_a == 0
        assert total == spent_b
        assert Decimal(total).scaleb(-12) <= LIMIT
    finally:
        a.close()
        b.close()
        plane.close()


def test_a_reconcile_never_lowers_what_waits_in_its_own_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One host, the bucket unreachable: its events are sealed into segments that wait in
    the outbox, so they are in neither its journals nor the bucket's listing. On main its
    reconcile lowered the counter to $0 and the host spent the limit a second time."""
    import socket

    with socket.socket() as s:  # a port nobody listens on: the bucket is away
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("COSTLINE_EVENTS_URL", "s3://away/usage")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "costline")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "costline-secret")
    plane = make_plane()
    plane.upsert_budget(Budget(id="cap", name="cap", limit_usd=LIMIT, action="block"), ENGINEER)
    home = tmp_path / "host"
    home.mkdir()
    state = make_state("", home=home)  # the embedded counters (SQLite in the home)
    controls = Controls(load_catalog(), plane=plane, state=state, poll_s=0.02)
    r = Router(Settings.from_env(home=home, reconcile_interval_s=0), controls=controls)
    try:
        answered = spend_until_refused(r, 0)
        spent = committed(r)
        r.log.flush()  # sealed: the segments wait in the outbox
        assert outbox_status(home)["segments"] >= 1
        assert r.reconciler is not None
        r.reconciler.reconcile()
        time.sleep(1.1)
        r.reconciler.reconcile()
        after = committed(r)
        again = spend_until_refused(r, 1000)
        print(f"answered {answered}, spent {spent}, counter after {after}, then {again} more")
        assert after == spent
        assert again == 0
    finally:
        r.close()
        plane.close()


def away_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """COSTLINE_EVENTS_URL on a port nobody listens on: the bucket is away."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("COSTLINE_EVENTS_URL", "s3://away/usage")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "costline")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "costline-secret")


def test_redis_emptied_while_the_bucket_is_away_is_rebuilt_from_the_outbox_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    """One host: the bucket is away, so its spend waits in the outbox as segments; then
    Redis loses the counters (restart, flush). The rebuild read the journals and the bucket's
    cache, not the outbox: on main it raised the counter to $0 and the host spent the limit a
    second time."""
    import redis

    away_bucket(monkeypatch)
    plane = make_plane()
    plane.upsert_budget(Budget(id="cap", name="cap", limit_usd=LIMIT, action="block"), ENGINEER)
    r = host(tmp_path / "host", plane, redis_url)
    state = r.controls.state if r.controls else None
    assert state is not None
    state.retry_interval_s = 0.05  # type: ignore[union-attr]
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    try:
        answered = spend_until_refused(r, 0)
        spent = committed(r)
        r.log.flush()  # sealed: the segments wait in the outbox
        assert outbox_status(tmp_path / "host")["segments"] >= 1
        client = redis.Redis.from_url(redis_url)
        client.delete(*client.keys(prefix + "*"))  # Redis came back empty
        client.close()
        refused = 0
        again = 0
        for i in range(100):  # until the rebuilt Redis counters refuse (not the fallback's)
            try:
                r.complete(call(1000 + i))
                again += 1
            except BudgetExceeded:
                refused += 1
                if state.healthy and refused >= 3:  # type: ignore[union-attr]
                    break
            time.sleep(0.02)
        after = committed(r)
        print(f"answered {answered}, spent {spent}; after the flush {again} more, counter {after}")
        assert again == 0
        assert after == spent
    finally:
        r.close()
        plane.close()


def test_redis_back_while_postgresql_is_down_serves_from_the_fallback(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    """Redis came back empty while the control plane (PostgreSQL) was restarting: the
    rebuild, which reads the budgets' last resets there, failed. On main that error went
    up through ResilientState to the call (a raw OperationalError: an HTTP 500 at the
    gateway) every retry interval; now the call is served on the fallback, as in any Redis
    outage, and the rebuild is tried again."""
    import redis
    import sqlalchemy as sa

    plane = make_plane(pg_url)
    plane.upsert_budget(
        Budget(id="cap", name="cap", limit_usd=Decimal(1), action="block"), ENGINEER
    )
    plane.reset_budget("cap", ENGINEER)  # the rebuild asks PostgreSQL when it was reset
    r = host(tmp_path / "host", plane, redis_url)
    state: Any = r.controls.state if r.controls else None
    state.retry_interval_s = 0.05
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    name = pg_url.rsplit("/", 1)[1]
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        r.complete(call(0))
        with admin.connect() as c:  # PostgreSQL goes away for this database
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            c.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
        client = redis.Redis.from_url(redis_url)
        client.delete(*client.keys(prefix + "*"))  # and Redis comes back empty
        before = committed(r)
        errors, spent = [], Decimal(0)
        for i in range(20):
            try:
                spent += r.complete(call(1 + i)).cost_usd
            except Exception as exc:  # noqa: BLE001 - what the caller got
                errors.append(exc)
            time.sleep(0.03)
        assert not errors, f"{len(errors)} of 20 calls failed, e.g. {errors[0]!r}"
        assert not state.healthy  # not trusted before the rebuild
        # the fallback enforces from everything spent, the outage's calls included (their
        # deltas went to Redis at each try; its next seed must still hold them)
        key = counter_key(r)
        local = state.get_values([key])[0]
        assert local >= before + int(spent.scaleb(12)), (local, before, spent)
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        deadline = time.monotonic() + 20
        while not state.healthy and time.monotonic() < deadline:
            r.complete(call(100))
            time.sleep(0.05)
        assert state.healthy and client.get(state.primary.epoch_key) is not None
        client.close()
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        r.close()
        plane.close()
