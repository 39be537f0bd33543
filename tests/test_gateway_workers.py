"""Several gateway processes: one budget with Redis, refusal without, and SIGTERM draining."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_support import METRICS_TOKEN, ROOT, GatewayProcess, events, make_key
from tests.servers.ports import free_port

METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}

ASK = [{"role": "user", "content": "Summarise our spend."}]


def test_more_workers_without_redis_is_refused_naming_redis_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(COSTLINE_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "gateway", "--port", str(free_port()), "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "REDIS_URL" in out.stderr and "--workers 2" in out.stderr


def test_more_workers_on_per_process_memory_counters_are_refused() -> None:
    """REDIS_URL=memory:// keeps budget counters in each process: N workers would each enforce
    a budget of their own (N times its limit, silently). On main it passed the check."""
    from core.errors import ConfigError
    from core.gateway import GatewayConfig, check_workers

    with pytest.raises(ConfigError) as info:
        check_workers(GatewayConfig(workers=2), {"REDIS_URL": "memory://"})
    assert "REDIS_URL" in str(info.value) and "memory://" in str(info.value)
    check_workers(GatewayConfig(workers=1), {"REDIS_URL": "memory://"})  # one process: fine
    check_workers(GatewayConfig(workers=2), {"REDIS_URL": "redis://127.0.0.1:6379/0"})


async def _post_all(url: str, key: str, n: int, body: dict[str, object]) -> list[Any]:
    """``n`` concurrent posts: responses, or the exception a post raised."""
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        h = {"authorization": f"Bearer {key}", "x-costline-cache": "no-store"}
        posts = (client.post(url, json=body, headers=h) for _ in range(n))
        return list(await asyncio.gather(*posts, return_exceptions=True))


@pytest.mark.services
def test_two_workers_with_redis_never_overshoot_a_nearly_spent_key_budget(
    tmp_path: Path, redis_url: str
) -> None:
    limit = Decimal("0.0001")
    key = make_key(tmp_path, "team", budget_usd=str(limit))
    free = make_key(tmp_path, "spread")
    env = {
        "REDIS_URL": redis_url,
        "COSTLINE_REDIS_PREFIX": os.environ["COSTLINE_TEST_PREFIX"],
        "COSTLINE_DRYRUN_LATENCY_MS": "150",
    }
    body = {"model": "dryrun-small", "messages": ASK, "max_tokens": 30}
    with GatewayProcess(tmp_path, env, workers=2) as gw:
        url = gw.base_url + "/chat/completions"
        h = {"authorization": f"Bearer {key}", "x-costline-cache": "no-store"}
        for _ in range(2):  # spend about a third of it first
            assert httpx.post(url, json=body, headers=h, timeout=30).status_code == 200
        answers = asyncio.run(_post_all(url, key, 50, body))
        metrics = gw.metrics()  # summed over both workers
        writers, workers = _spread(gw, tmp_path, free, body)
    assert all(isinstance(r, httpx.Response) for r in answers), answers
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 402}, statuses
    assert statuses.count(200) >= 1 and statuses.count(402) >= 1
    ok = [r for r in answers if r.status_code == 200]
    logged = events(tmp_path, len(ok) + 2, key="team", status="ok")
    spent = sum(Decimal(e.cost_picousd) for e in logged).scaleb(-12)
    assert len(logged) == len(ok) + 2
    assert spent <= limit, f"{len(logged)} calls spent ${spent} of a ${limit} budget"
    answered = {
        r.headers["x-costline-request-id"]: Decimal(r.headers["x-costline-cost-usd"]) for r in ok
    }
    assert {e.request_id: e.cost_usd for e in logged if e.request_id in answered} == answered
    by_status = {"200": 0.0, "402": 0.0}
    for line in metrics.splitlines():
        m = re.match(
            r'costline_gateway_requests_total\{.*key="team".*status="(\d+)".*\} (\S+)', line
        )
        if m:
            by_status[m.group(1)] = by_status.get(m.group(1), 0.0) + float(m.group(2))
    assert by_status == {"200": len(ok) + 2, "402": statuses.count(402)}
    assert len(writers) >= 2, f"one worker wrote everything: {writers}"
    assert writers <= workers, f"writers {writers} are not the gateway's workers {workers}"


_PID = re.compile(r"_(\d+)_\d+_")
SPREAD_ROUNDS = 40


def _writers(home: Path) -> set[int]:
    """The pids in the names of the usage log's journals and segments (one per writer)."""
    return {int(m.group(1)) for p in (home / "events").rglob("*") if (m := _PID.search(p.name))}


def _spread(
    gw: GatewayProcess, home: Path, key: str, body: dict[str, object]
) -> tuple[set[int], set[int]]:
    """Rounds of 10 concurrent calls until two processes have written usage events (or
    ``SPREAD_ROUNDS`` rounds): the writer pids and the gateway's worker pids.

    The kernel hands each connection to whichever worker accepts first, and one worker
    accepts every connection queued when it wakes: on a loaded machine the other worker may
    not run during one short burst, so one burst proves nothing. Over many rounds, with
    pauses between them, two live workers both serve; a gateway whose calls all go to one
    process (or whose processes share one journal) still fails."""
    import time

    assert gw.proc is not None
    url = gw.base_url + "/chat/completions"
    for _ in range(SPREAD_ROUNDS):
        if len(_writers(home)) >= 2:
            break
        answers = asyncio.run(_post_all(url, key, 10, body))
        assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in answers)
        time.sleep(0.2)
    return _writers(home), _children(gw.proc.pid)


def test_sigterm_during_200_in_flight_requests_logs_every_answer_once(tmp_path: Path) -> None:
    key = make_key(tmp_path, "load")
    env = {"COSTLINE_DRYRUN_LATENCY_MS": "5000"}
    gw = GatewayProcess(tmp_path, env).start()
    url = gw.base_url + "/chat/completions"

    async def run() -> list[httpx.Response | BaseException]:
        body = {"model": "dryrun-small", "messages": ASK, "max_tokens": 20}
        task = asyncio.create_task(_post_all(url, key, 200, body))
        async with httpx.AsyncClient() as probe:  # SIGTERM once all 200 are being served
            for _ in range(300):
                text = (await probe.get(gw.url + "/metrics", headers=METRICS_AUTH)).text
                if "costline_gateway_in_flight 200.0" in text:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the 200 requests never were all in flight")
        gw.terminate()
        try:
            return list(await task)
        except BaseException as exc:  # noqa: BLE001 - reported below
            return [exc]

    try:
        answers = asyncio.run(run())
        code = gw.proc.wait(timeout=60) if gw.proc else None
    finally:
        gw.stop()
    errors = [r for r in answers if not isinstance(r, httpx.Response)]
    assert not errors, f"{len(errors)} of 200 failed, e.g. {errors[0]!r}"
    assert [r.status_code for r in answers] == [200] * 200  # type: ignore[union-attr]
    assert code == 0
    ids = [r.headers["x-costline-request-id"] for r in answers]  # type: ignore[union-attr]
    logged = [e.request_id for e in events(tmp_path, timeout=0)]
    assert sorted(logged) == sorted(ids)  # on disk at exit, each exactly once
    with httpx.Client() as c, pytest.raises(httpx.ConnectError):
        c.post(url, json={}, timeout=2)  # and it is gone


@pytest.mark.services
def test_the_alert_worker_runs_in_exactly_one_gateway_process(
    costline_home: Path, redis_url: str
) -> None:
    """Two gateway worker processes each start the alert worker; the control-plane lease
    lets one of them scan: both alerts reach the webhook, each once."""
    import time

    from core import clock
    from core.control import SYSTEM, ControlPlane
    from core.worker import LEASE
    from tests.servers.sinks import WebhookServer
    from tests.test_worker import ACME_DAY, history, notify, write

    write(costline_home, history(clock.now()))
    env = {"REDIS_URL": redis_url, "COSTLINE_REDIS_PREFIX": os.environ["COSTLINE_TEST_PREFIX"]}
    with ControlPlane() as plane, WebhookServer() as hook:
        plane.upsert_budget(ACME_DAY, SYSTEM)
        notify(plane, hook, None, 5)
        with GatewayProcess(costline_home, env, workers=2) as gw:
            assert gw.proc is not None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                texts = " | ".join(hook.texts())
                if "anomaly · org=acme" in texts and "reached 100%" in texts:
                    break
                time.sleep(0.2)
            time.sleep(6)  # another scan period: nothing is sent twice
            held = plane.lease_holder(LEASE)
            children = _children(gw.proc.pid)
        texts = hook.texts()
        alerts = plane.alerts()
    assert any("Acme daily" in t and "reached 100%" in t for t in texts), texts
    assert any("anomaly · org=acme" in t for t in texts), texts
    assert len(texts) == len(set(texts)) == len(alerts), texts
    assert held is not None
    assert int(held[0].split(":")[1]) in children  # a gateway worker process holds it


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out
