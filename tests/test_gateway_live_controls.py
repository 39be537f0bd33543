"""Control-plane edits made while `costline gateway` runs reach it within seconds.

Another ControlPlane instance (this test process) writes to the gateway's control plane
(SQLite in COSTLINE_HOME, or its own PostgreSQL database); the gateway reads it through its
Watcher (a version poll at most once a second). A routing policy for a new task, a hard
budget on a key's project and a price override must each take effect within DEADLINE_S.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import clock
from core.control import SYSTEM, Budget, ControlPlane, PriceOverride, RoutingPolicy
from core.keys import KeySpec, issue_key
from core.pricing import load_catalog
from tests.conftest import PG_ADMIN_URL, need_service
from tests.gateway_support import GatewayProcess

DEADLINE_S = 10.0
ASK = [{"role": "user", "content": "Name a river."}]
NO_CACHE = {"x-costline-cache": "no-store"}


class Live:
    def __init__(self, home: Path, url: str, gw: GatewayProcess, keys: dict[str, str]) -> None:
        self.home, self.url, self.gw, self.keys = home, url, gw, keys

    @contextmanager
    def plane(self) -> Iterator[ControlPlane]:
        """A second ControlPlane on the gateway's database (as the console would use)."""
        with _env(self.home, self.url), ControlPlane(model_exists=load_catalog().has) as p:
            yield p

    def post(self, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        h = {"authorization": f"Bearer {self.keys[key]}", **NO_CACHE, **headers}
        return httpx.post(self.gw.base_url + "/chat/completions", json=body, headers=h)


@contextmanager
def _env(home: Path, url: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("COSTLINE_HOME", "COSTLINE_CONTROL_URL")}
    os.environ["COSTLINE_HOME"] = str(home)
    os.environ["COSTLINE_CONTROL_URL"] = url
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _database(backend: str, home: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{home / 'control.db'}"
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = f"costline_livepol_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    home = tmp_path_factory.mktemp(f"gw-live-{request.param}")
    with _database(request.param, home) as url:
        with _env(home, url), ControlPlane(model_exists=load_catalog().has) as plane:
            keys = {
                "main": issue_key(plane, KeySpec(name="main"), SYSTEM).secret,
                "proj": issue_key(plane, KeySpec(name="proj", project="livep"), SYSTEM).secret,
            }
        gw = GatewayProcess(home, env={"COSTLINE_CONTROL_URL": url})
        with gw:
            yield Live(home, url, gw, keys)


def _until(what: str, live: Live, check: Callable[[], httpx.Response | None]) -> httpx.Response:
    """Call ``check`` until it returns a response (the edit is in force), for DEADLINE_S."""
    t0 = time.monotonic()
    last: object = None
    while time.monotonic() - t0 < DEADLINE_S:
        got = check()
        if got is not None:
            return got
        last = check.__dict__.get("last")
        time.sleep(0.2)
    pytest.fail(f"{what}: not in force after {DEADLINE_S:.0f} s ({last})\n{live.gw.log_tail()}")


def test_a_policy_added_while_running_routes_its_task(live: Live) -> None:
    task = f"triage-{uuid.uuid4().hex[:6]}"
    body = {"messages": ASK, "max_tokens": 20}  # no model: the task's policy picks
    r = live.post("main", body, **{"x-costline-task": task})
    assert r.status_code == 400 and "no routing policy" in r.text, r.text
    for model in ("dryrun-large", "dryrun-medium"):  # a new policy, then a changed one
        with live.plane() as plane:
            plane.upsert_policy(RoutingPolicy(task=task, primary_model=model), SYSTEM)

        def routed(model: str = model) -> httpx.Response | None:
            r = live.post("main", body, **{"x-costline-task": task})
            routed.__dict__["last"] = (r.status_code, r.headers.get("x-costline-model"), r.text)
            ok = r.status_code == 200 and r.headers["x-costline-model"] == model
            return r if ok else None

        r = _until(f"policy {task} -> {model}", live, routed)
        assert r.headers["x-costline-route-reason"]


def test_a_hard_budget_added_while_running_blocks_the_project(live: Live) -> None:
    body = {"model": "dryrun-small", "messages": ASK, "max_tokens": 20}
    r = live.post("proj", body)
    assert r.status_code == 200, r.text
    budget = Budget(
        id="project:livep",
        name="livep daily",
        scope="project",
        scope_value="livep",
        period="day",
        limit_usd=Decimal("0.000001"),
        action="block",
    )
    with live.plane() as plane:
        plane.upsert_budget(budget, SYSTEM)

    def blocked() -> httpx.Response | None:
        r = live.post("proj", body)
        blocked.__dict__["last"] = (r.status_code, r.text[:200])
        return r if r.status_code == 402 else None

    r = _until("hard budget project:livep", live, blocked)
    assert r.json()["error"]["budget"] == "project:livep", r.text
    assert live.post("main", body).status_code == 200  # another project's key is not blocked


def test_a_price_override_added_while_running_prices_the_next_call(live: Live) -> None:
    body = {"model": "dryrun-small", "messages": ASK, "max_tokens": 20}
    r = live.post("main", body)
    assert r.status_code == 200, r.text
    before = Decimal(r.headers["x-costline-cost-usd"])
    rate_in, rate_out = Decimal("11"), Decimal("47")  # USD per 1M tokens
    override = PriceOverride(
        model="dryrun-small",
        provider="dryrun",
        effective_from=clock.today() - timedelta(days=1),
        input=rate_in,
        output=rate_out,
        note="live test",
    )
    with live.plane() as plane:
        plane.upsert_price_override(override, SYSTEM)

    def repriced() -> httpx.Response | None:
        r = live.post("main", body)
        assert r.status_code == 200, r.text
        u = r.json()["usage"]
        want = (u["prompt_tokens"] * rate_in + u["completion_tokens"] * rate_out) / 1_000_000
        got = Decimal(r.headers["x-costline-cost-usd"])
        repriced.__dict__["last"] = (got, want, before)
        return r if got == want else None

    _until("price override dryrun/dryrun-small", live, repriced)
