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
from tests.child_clock import preamble
from tests.servers.ports import free_port
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
    away_bucket(monkeypatch)
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
    """COSTLINE_EVENTS_URL on a port nobody listens on: the bucket is away. Closing a log
    then tries 0.5 s to ship its last segments, not 5 s (none can ship: it is away)."""
    from core.usage import _bucket

    monkeypatch.setattr(_bucket, "CLOSE_DRAIN_S", 0.5)

    port = free_port()
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


def spend(r: Router, start: int, n: int) -> int:
    """``n`` answered calls on ``r``; what they cost (picodollars)."""
    return sum(int(r.complete(call(start + i)).cost_usd.scaleb(12)) for i in range(n))


def flush_redis(redis_url: str) -> None:
    """Redis restarts empty (for this test's prefix)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(os.environ["COSTLINE_TEST_PREFIX"] + "*"))
    client.close()


def test_redis_emptied_in_a_fleet_is_rebuilt_to_every_hosts_spend(
    tmp_path: Path, bucket: str, redis_url: str
) -> None:
    """Three hosts spend; their events are still in their journals (not shipped). Redis
    comes back empty. Each host's rebuild or round publishes its unshipped spend as its
    share, and the counter is raised to the bucket's log plus every host's share. On main
    each host raised the counter to its own view, so the fleet's counter held the largest
    host's spend, not the sum (here: B + C, not A + B + C). Host B ships its segment after
    publishing its share: the bucket and B's share both name it, and it counts once."""
    plane = make_plane()
    plane.upsert_budget(
        Budget(id="cap", name="cap", limit_usd=Decimal(1), action="block"), ENGINEER
    )
    homes = {n: tmp_path / f"host{n}" for n in "ABC"}
    logs = {n: UsageLog(h, flush_interval_s=3600) for n, h in homes.items()}
    hosts = {n: host(homes[n], plane, redis_url, log=logs[n]) for n in "ABC"}
    a, b, c = hosts["A"], hosts["B"], hosts["C"]
    state: Any = a.controls.state if a.controls else None
    state.retry_interval_s = 0.05
    try:
        spent = {"A": spend(a, 0, 6), "B": spend(b, 100, 2), "C": spend(c, 200, 3)}
        assert committed(a) == sum(spent.values())
        flush_redis(redis_url)
        assert b.reconciler is not None and c.reconciler is not None
        b.reconciler.reconcile()  # B's round: its share is published
        assert committed(b) == spent["B"]
        b.log.flush()  # B's journal becomes a segment, shipped: in the bucket and B's share
        shipper = shipper_for(homes["B"])
        assert shipper is not None and shipper.drain(60), shipper.status()
        for i in range(100):  # A's next calls find the epoch gone: A rebuilds, then admits
            spent["A"] += int(a.complete(call(300 + i)).cost_usd.scaleb(12))
            if state.healthy and state.primary.epoch is not None:
                break
            time.sleep(0.06)
        assert state.healthy
        rebuilt_a = committed(a)  # B's segment, in the bucket and in B's share: once
        assert rebuilt_a == spent["A"] + spent["B"], (rebuilt_a, spent)
        assert a.reconciler is not None
        a.reconciler.reconcile()  # A's round: its share has its calls since the rebuild
        c.reconciler.reconcile()  # C's round: the bucket (B) + A's share + its own
        after = committed(c)
        for r in hosts.values():  # every journal to the bucket: the log's true total
            r.close()
            shipper = shipper_for(r.settings.home)
            assert shipper is not None and shipper.drain(60), shipper.status()
        with Reader(homes["A"]) as rd:
            ev = rd.events(columns=["cost_picousd", "status"])
            total = int(ev[ev.status == "ok"].cost_picousd.sum())
        print(f"spent {spent}; after A's rebuild {rebuilt_a}; after the rounds {after}")
        assert total == sum(spent.values())
        assert after == total, f"rebuilt to {after}, the log holds {total} ({spent})"
    finally:
        for r in hosts.values():
            r.close()
        plane.close()


HOST = """
import sys
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Message

r = Router(Settings.from_env(reconcile_interval_s=0))
spent = 0
for i in range(int(sys.argv[1])):
    req = ChatRequest([Message("user", f"{sys.argv[2]} {i}")], model="dryrun-small", max_tokens=30)
    spent += int(r.complete(req).cost_usd.scaleb(12))
r.close()
print(spent)
"""


def test_redis_emptied_is_rebuilt_to_the_sum_of_hosts_without_a_bucket(
    tmp_path: Path, pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two hosts (processes, each its own COSTLINE_HOME, the usage log on its own disk)
    share Redis and a PostgreSQL control plane. They spend and stop; Redis comes back
    empty; each host starts again (a rebuild) and publishes its whole log as its share. On
    main each start raised the counter to that host's own log: the fleet's counter held
    the larger host's spend and the fleet could spend the smaller one's again."""
    import subprocess
    import sys

    plane = make_plane(pg_url)
    plane.upsert_budget(
        Budget(id="cap", name="cap", limit_usd=Decimal(1), action="block"), ENGINEER
    )
    monkeypatch.delenv("COSTLINE_EVENTS_URL", raising=False)
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "COSTLINE_REDIS_PREFIX": os.environ["COSTLINE_TEST_PREFIX"],
        "COSTLINE_CONTROL_URL": pg_url,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }

    def run(name: str, calls: int) -> int:
        home = tmp_path / name
        home.mkdir(exist_ok=True)
        out = subprocess.run(
            [sys.executable, "-c", preamble() + HOST, str(calls), name],
            env={**env, "COSTLINE_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    state = make_state(redis_url, prefix=os.environ["COSTLINE_TEST_PREFIX"])
    controls = Controls(load_catalog(), plane=plane, state=state, poll_s=0.02)
    b = next(b for b in controls.snapshot().budgets if b.id == "cap")
    key = controls.guard.window(b).usd_key + ":c"
    try:
        spent = {"A": run("A", 2), "B": run("B", 5)}
        assert state.get_values([key])[0] == sum(spent.values())
        flush_redis(redis_url)
        run("A", 0)  # each host starts again: a rebuild
        run("B", 0)
        after = state.get_values([key])[0]
        print(f"spent {spent}; rebuilt to {after}")
        assert after == sum(spent.values()), f"rebuilt to {after}, the hosts spent {spent}"
    finally:
        controls.close()
        state.close()
        plane.close()
