"""A fleet on loopback: three `costline gateway` hosts (each its own COSTLINE_HOME) sharing a
real Redis Cluster (3 masters + 3 replicas), the machine's PostgreSQL (control plane, leader
lock) and a SeaweedFS bucket (the usage log). Hosts are killed, the bucket goes away for
30 s, a Redis master dies; every answered call lands in the bucket exactly once and budgets
hold fleet-wide."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from core.control import SYSTEM, ControlPlane
from tests.gateway_support import GatewayProcess, make_key
from tests.servers.rediscluster import RedisClusterServers
from tests.servers.rediscluster import Unavailable as NoRedis
from tests.servers.seaweed import SeaweedS3
from tests.servers.seaweed import Unavailable as NoWeed

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(420)]

ASK = [{"role": "user", "content": "Summarise our spend."}]
BODY = {"model": "dryrun-small", "messages": ASK, "max_tokens": 30}
OUTAGE_S = 30.0
REQUIRE = os.environ.get("COSTLINE_REQUIRE_SERVICES") == "1"


T0 = time.monotonic()


def mark(what: str) -> None:
    print(f"{time.monotonic() - T0:6.1f}s {what}", flush=True)


class Fleet:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.hosts = [GatewayProcess(root / f"host{i}", env) for i in range(3)]
        self.answers: list[tuple[int, int, str]] = []  # (host, status, request id)

    def start(self) -> None:
        errors: list[BaseException] = []

        def up(gw: GatewayProcess) -> None:
            try:
                gw.wait_ready(timeout=120)
            except BaseException as exc:
                errors.append(exc)

        for gw in self.hosts:  # spawned from this thread: they die with it, not with `up`'s
            gw.home.mkdir(parents=True, exist_ok=True)
            gw.spawn()

        threads = [threading.Thread(target=up, args=(gw,)) for gw in self.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def restart(self, i: int) -> None:
        self.hosts[i] = GatewayProcess(self.root / f"host{i}", self.env).start(timeout=120)

    def stop(self) -> None:
        for gw in self.hosts:
            gw.stop(timeout=30)

    def send(self, key: str, n: int, hosts: list[int] | None = None) -> list[int]:
        """``n`` concurrent calls spread over ``hosts``; their statuses (all recorded)."""
        hosts = hosts if hosts is not None else [0, 1, 2]
        return asyncio.run(self._send(key, n, hosts))

    async def _send(self, key: str, n: int, hosts: list[int]) -> list[int]:
        limits = httpx.Limits(max_connections=64)
        h = {"authorization": f"Bearer {key}", "x-costline-cache": "no-store"}
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:

            async def one(i: int) -> int:
                host = hosts[i % len(hosts)]
                url = self.hosts[host].base_url + "/chat/completions"
                r = await client.post(url, json=BODY, headers=h)
                self.answers.append((host, r.status_code, r.headers["x-costline-request-id"]))
                return r.status_code

            return list(await asyncio.gather(*(one(i) for i in range(n))))


def exhaust(fleet: Fleet, key: str) -> None:
    """Calls with ``key`` (one per host at a time) until a round is refused everywhere (the
    settled cost of a call is below its reservation, so a refusal can free headroom)."""
    for _ in range(20):
        if set(fleet.send(key, 3)) == {402}:
            return
    raise AssertionError(f"{key[:12]}... still admitted after 20 rounds")


@contextmanager
def running(*servers: Any) -> Iterator[None]:
    """The servers started at once (each on its own thread), all stopped at the end."""
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            for started in [pool.submit(s.start) for s in servers]:
                started.result()
        yield
    finally:
        for s in servers:
            s.__exit__(None, None, None)


def bucket_table(s3: SeaweedS3, location: str) -> pa.Table:
    fs = s3.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(location, allow_not_found=True))
    tables = [
        pq.read_table(
            i.path, filesystem=fs, columns=["request_id", "key", "status", "cost_picousd"]
        )
        for i in infos
        if i.base_name.endswith(".parquet")
    ]
    return (
        pa.concat_tables(tables) if tables else pa.table({"request_id": pa.array([], pa.string())})
    )


def test_fleet_on_loopback(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        s3 = SeaweedS3(tmp_path / "weed")
        rc = RedisClusterServers(tmp_path / "redis")
    except (NoWeed, NoRedis) as exc:
        if REQUIRE:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    global T0
    T0 = time.monotonic()
    bucket = f"fleet-{uuid.uuid4().hex[:8]}"
    location = f"{bucket}/usage/segments"
    with running(s3, rc):
        s3.create_bucket(bucket)
        env = {
            **s3.env(f"{bucket}/usage"),
            "REDIS_URL": rc.url,
            "COSTLINE_REDIS_PREFIX": f"fleet{uuid.uuid4().hex[:6]}:",
            "COSTLINE_CONTROL_URL": pg_url,
            "COSTLINE_DRYRUN_LATENCY_MS": "20",
            "COSTLINE_EVENTS_COMPACT_S": "0",
            # one pepper fleet-wide, so keys and API tokens verify on any host
            "COSTLINE_KEY_PEPPER": uuid.uuid4().hex,
            "COSTLINE_TOKEN_PEPPER": uuid.uuid4().hex,
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        admin = tmp_path / "admin"
        admin.mkdir()
        free = make_key(admin, "free")
        capped_limit, later_limit = Decimal("0.0001"), Decimal("0.00008")
        capped = make_key(admin, "capped", budget_usd=str(capped_limit))
        later = make_key(admin, "later", budget_usd=str(later_limit))
        with ControlPlane() as plane:
            plane.create_user("fin", "password-123", "viewer", SYSTEM)
            token, _ = plane.create_api_token("fin", SYSTEM, name="fleet")

        fleet = Fleet(tmp_path, env)
        try:
            mark("servers up")
            fleet.start()
            mark("gateways up")
            assert set(fleet.send(free, 30)) == {200}

            # SIGKILL host 1 right after its calls completed (still in its journal)
            assert set(fleet.send(free, 20, [1])) == {200}
            fleet.hosts[1].proc.kill()  # type: ignore[union-attr]
            fleet.hosts[1].proc.wait()  # type: ignore[union-attr]
            assert set(fleet.send(free, 20, [0, 2])) == {200}
            fleet.restart(1)
            mark("host 1 killed and restarted")

            # one key budget, fleet-wide
            statuses = fleet.send(capped, 45)
            assert set(statuses) <= {200, 402} and 200 in statuses and 402 in statuses
            exhaust(fleet, capped)  # every host has seen it spent

            # the bucket goes away for 30 s: no call fails
            s3.pause()
            paused = time.monotonic()
            while time.monotonic() - paused < OUTAGE_S:
                assert set(fleet.send(free, 15)) == {200}
                assert set(fleet.send(capped, 3)) <= {200, 402}
                time.sleep(0.5)
            ready = httpx.get(fleet.hosts[0].url + "/health/ready", timeout=30)
            assert ready.status_code == 200  # the outage is reported, not a reason to be unready
            outbox = ready.json()["usage_outbox"]
            assert outbox["segments"] >= 1 and outbox["last_error"], outbox
            s3.resume()
            mark("bucket outage over")

            # a Redis master dies: the fleet serves and enforces through the failover
            slot_key = env["COSTLINE_REDIS_PREFIX"]  # the state's hash tag: its one slot
            killed = rc.kill_master_of(slot_key)
            assert set(fleet.send(free, 30)) == {200}
            assert set(fleet.send(capped, 6)) <= {200, 402}
            # not wait_ok(): right after the kill every node still says ok, and a key used
            # before the promotion is enforced per host (fail-open's outage path, README)
            rc.wait_failover(killed, slot_key)
            for _ in range(2):  # a probe that still failed (a stale slot map) is retried
                time.sleep(2.5)  # each host probes Redis again after its retry interval
                for host in range(3):  # one call at a time: its probe finds the new master
                    assert fleet.send(free, 1, [host]) == [200]
            mark("redis failover")
            statuses = fleet.send(later, 40)
            assert 200 in statuses and 402 in statuses

            # every answered call lands in the bucket once
            want = sorted(rid for _, _, rid in fleet.answers)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = bucket_table(s3, location)
                if got.num_rows >= len(want):
                    break
                time.sleep(0.5)
            mark("bucket has every event")
            assert sorted(got["request_id"].to_pylist()) == want

            spent: dict[str, int] = {}
            for key_name, status, cost in zip(
                got["key"].to_pylist(),
                got["status"].to_pylist(),
                got["cost_picousd"].to_pylist(),
                strict=True,
            ):
                if status == "ok":
                    spent[key_name] = spent.get(key_name, 0) + int(cost or 0)
            assert Decimal(spent["capped"]).scaleb(-12) <= capped_limit
            assert Decimal(spent["later"]).scaleb(-12) <= later_limit

            # the API (on any host) and a direct DuckDB query over the objects agree
            direct = _direct_cost(s3, location)
            r = httpx.get(
                fleet.hosts[2].url + "/api/v1/spend",
                params={"start": "2000-01-01", "end": "2100-01-01", "group_by": "model"},
                headers={"authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            totals = r.json()["totals"]
            assert totals["requests"] == len(want)
            assert Decimal(totals["cost_usd"]) == Decimal(direct).scaleb(-12)
        finally:
            fleet.stop()


def _direct_cost(s3: SeaweedS3, location: str) -> int:
    """sum(cost_picousd) by DuckDB over the bucket's objects (read through pyarrow's S3)."""
    fs = s3.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(location))
    dataset = pa.concat_tables(
        [pq.read_table(i.path, filesystem=fs) for i in infos if i.base_name.endswith(".parquet")],
        promote_options="default",
    )
    con = duckdb.connect()
    con.register("objects", dataset)
    total: Any = con.execute("SELECT sum(cost_picousd) FROM objects").fetchone()
    con.close()
    return int(total[0])
