"""``GET/DELETE /api/v1/limits`` served by a real gateway read and reset the buckets its calls
are admitted against: on the embedded state (SharedState: rate buckets in the gateway
process's memory, so the answer names that process) and on a real Redis with its own
``COSTLINE_REDIS_PREFIX``. The standalone API (``costline api``) on the embedded state says the
levels live in the gateways' memory instead of showing empty buckets; on Redis it reads them
under the same prefix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway_support import GatewayProcess, make_key, make_token, serve
from tests.servers.api import ApiServer

RPM = 3
LIMIT = "key:lim:rpm"
NO_CACHE = {"x-costline-cache": "no-store"}


@pytest.fixture(params=["shared", "redis"])
def gw(request: pytest.FixtureRequest, costline_home: Path) -> Iterator[GatewayProcess]:
    env: dict[str, str] = {}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        env["COSTLINE_REDIS_PREFIX"] = os.environ["COSTLINE_TEST_PREFIX"]
    token = make_token(costline_home, "eng", "engineer")
    with serve(costline_home, {"lim": {"rpm": RPM}}, env) as proc:
        proc.token = token  # type: ignore[attr-defined]
        yield proc


def _call(c: httpx.Client, n: int) -> int:
    msg = [{"role": "user", "content": f"Question {n}: what is the capital of France?"}]
    return c.post("/chat/completions", json={"model": "dryrun-small", "messages": msg}).status_code


def _bucket(body: dict[str, object]) -> object:
    (limit,) = [d for d in body["data"] if d["id"] == LIMIT]  # type: ignore[attr-defined]
    return limit["buckets"]


def test_gateway_limits_show_and_reset_the_buckets_callers_hit(
    gw: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = "REDIS_URL" in gw.extra_env
    auth = {"authorization": f"Bearer {gw.keys['lim']}", **NO_CACHE}
    api_auth = {"authorization": f"Bearer {gw.token}"}  # type: ignore[attr-defined]
    with (
        httpx.Client(base_url=gw.base_url, headers=auth, timeout=30) as c,
        httpx.Client(base_url=gw.url + "/api/v1", headers=api_auth, timeout=30) as api,
    ):
        assert [_call(c, n) for n in range(RPM + 1)] == [200] * RPM + [429]
        body = api.get("/limits").json()
        assert _bucket(body) == [{"value": "lim", "used": RPM, "remaining": 0}], body
        if redis:
            assert (body["backend"], body["levels"], body["pid"]) == (
                "ResilientState",
                "shared",
                None,
            )
        else:  # the gateway process's own memory: the answer names that process
            assert (body["backend"], body["levels"]) == ("SharedState", "process")
            assert body["pid"] == gw.proc.pid  # type: ignore[union-attr]
            assert f"pid {gw.proc.pid}" in body["note"]  # type: ignore[union-attr]
        reset = api.delete("/limits", params={"id": LIMIT})
        assert reset.status_code == 200, reset.text
        assert reset.json()["reset"] == {LIMIT: 1}
        assert reset.json()["levels"] == body["levels"]
        assert _call(c, 10) == 200  # admitted again: the reset emptied the bucket it hit
        after = [{"value": "lim", "used": 1, "remaining": RPM - 1}]
        assert _bucket(api.get("/limits").json()) == after
        # the standalone API (costline api) on the same COSTLINE_HOME and environment
        if redis:
            monkeypatch.setenv("REDIS_URL", gw.extra_env["REDIS_URL"])
            monkeypatch.setenv("COSTLINE_REDIS_PREFIX", gw.extra_env["COSTLINE_REDIS_PREFIX"])
        else:
            monkeypatch.delenv("REDIS_URL", raising=False)
        with ApiServer(gw.home) as alone, alone.client(gw.token) as other:  # type: ignore[attr-defined]
            seen = other.get("/limits").json()
            refused = other.delete("/limits", params={"id": LIMIT})
        if redis:  # the same buckets, under the gateway's prefix
            assert seen["levels"] == "shared" and _bucket(seen) == after, seen
            assert refused.status_code == 200 and refused.json()["reset"] == {LIMIT: 1}
            assert _bucket(api.get("/limits").json()) == []
        else:  # not empty buckets presented as truth: they are in the gateway's memory
            assert (seen["levels"], seen["pid"], _bucket(seen)) == ("unavailable", None, None)
            assert "memory of each gateway process" in seen["note"]
            assert refused.status_code == 409
            assert "nothing was reset" in refused.json()["error"]["message"]
            assert _bucket(api.get("/limits").json()) == after  # indeed untouched


def test_each_embedded_gateway_process_answers_for_its_own_buckets(costline_home: Path) -> None:
    """Two gateways on one COSTLINE_HOME without Redis: each keeps its own rate buckets, and
    its /api/v1/limits says whose they are (its pid), rather than passing them off as all."""
    secret = make_key(costline_home, "lim", rpm=RPM)
    token = {"authorization": f"Bearer {make_token(costline_home, 'eng', 'engineer')}"}
    with GatewayProcess(costline_home) as one, GatewayProcess(costline_home) as two:
        auth = {"authorization": f"Bearer {secret}", **NO_CACHE}
        with httpx.Client(base_url=one.base_url, headers=auth, timeout=30) as c:
            assert [_call(c, n) for n in range(RPM)] == [200] * RPM
        seen = {}
        for gw in (one, two):
            body = httpx.get(gw.url + "/api/v1/limits", headers=token, timeout=30).json()
            assert (body["levels"], body["pid"]) == ("process", gw.proc.pid)  # type: ignore[union-attr]
            assert "other gateway processes keep their own" in body["note"]
            seen[gw.port] = _bucket(body)
    assert seen == {one.port: [{"value": "lim", "used": RPM, "remaining": 0}], two.port: []}


def test_make_state_keys_redis_under_costline_redis_prefix(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.state import make_state

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("COSTLINE_REDIS_PREFIX", os.environ["COSTLINE_TEST_PREFIX"])
    state, given = make_state(), make_state(prefix="x:")
    try:
        assert state.primary.prefix == os.environ["COSTLINE_TEST_PREFIX"]  # type: ignore[union-attr]
        assert given.primary.prefix == "x:"  # type: ignore[union-attr]
    finally:
        state.close()
        given.close()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed: connections are refused)."""
    from tests.servers.ports import free_port

    return free_port()


def _rate_limit(api: ApiServer) -> None:
    from core.control import SYSTEM, RateLimit

    api.plane.upsert_rate_limit(RateLimit(id="per-user", scope="user", limit=10), SYSTEM)


def test_standalone_api_with_redis_down_says_so_instead_of_a_500(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDIS_URL set, Redis unreachable: GET /limits answers 200 with ``unavailable`` levels
    and a note naming Redis (as documented), DELETE a 409 naming Redis; never a bare 500."""
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    with ApiServer(costline_home) as api:
        _rate_limit(api)
        viewer = api.client(api.user("vic", "viewer"))
        for _ in range(2):  # the first read finds Redis down, the next knows it
            r = viewer.get("/limits")
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["levels"], body["backend"]) == ("unavailable", "ResilientState")
            assert body["note"].startswith("Redis is unreachable")
            assert [d["buckets"] for d in body["data"]] == [None]
        eng = api.client(api.user("eng", "engineer"))
        r = eng.delete("/limits")
        assert r.status_code == 409, r.text
        assert "Redis is unreachable" in r.json()["error"]["message"]


def test_a_redis_state_without_fallback_that_is_down_is_a_503_naming_redis(
    costline_home: Path,
) -> None:
    from core.state import RedisState

    state = RedisState(f"redis://127.0.0.1:{_closed_port()}/0", "t:")
    with ApiServer(costline_home, state=state) as api:
        _rate_limit(api)
        for method in ("GET", "DELETE"):
            r = api.client(api.user(f"u-{method}", "engineer")).request(method, "/limits")
            assert r.status_code == 503, (method, r.text)
            error = r.json()["error"]
            assert error["type"] == "service_unavailable"
            assert error["message"].startswith("Redis is unreachable (ConnectionError")
        doc = api.client(api.user("adm", "admin")).get("/openapi.json").json()
        assert "503" in doc["paths"]["/limits"]["get"]["responses"]
        assert "503" in doc["paths"]["/limits"]["delete"]["responses"]
    state.close()


def test_limits_read_redis_again_once_it_is_back(costline_home: Path, redis_url: str) -> None:
    """A standalone API that saw Redis down reads the shared levels again when it answers
    (the read pings it, at most every retry interval, as the state's own operations do)."""
    from core.state import MemoryState, RedisState, ResilientState

    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    state = ResilientState(RedisState(redis_url, prefix), MemoryState(prefix), retry_interval_s=0)
    state._mark_down(ConnectionError("gone for a while"))
    with ApiServer(costline_home, state=state) as api:
        _rate_limit(api)
        body = api.client(api.user("vic", "viewer")).get("/limits").json()
        assert (body["levels"], body["note"]) == ("shared", None)
        assert state.healthy


def test_a_gateway_with_redis_down_resets_its_fallback_buckets(costline_home: Path) -> None:
    """The gateway's own /api/v1 (its Router's state: Redis down, the fallback admitting its
    calls) lists and resets the fallback's buckets; the reset tried Redis first and was a
    500."""
    from core.control import SYSTEM, RateLimit
    from core.ratelimits import rate_key
    from core.state import MemoryState, RateItem, RedisState, ResilientState

    down = RedisState(f"redis://127.0.0.1:{_closed_port()}/0", "t:")
    state = ResilientState(down, MemoryState("t:"))
    rl = RateLimit(id="per-user", scope="user", limit=10)
    item = RateItem(rate_key(rl, "ann"), "token_bucket", 10, 60.0, cost=4)
    assert state.admit([item], []).ok  # Redis refuses: admitted by the fallback
    assert not state.healthy
    with ApiServer(costline_home, gateway_state=lambda: state) as api:
        api.plane.upsert_rate_limit(rl, SYSTEM)
        eng = api.client(api.user("eng", "engineer"))
        body = eng.get("/limits").json()
        assert (body["levels"], body["note"].startswith("Redis is unreachable")) == (
            "process",
            True,
        )
        assert [b["value"] for b in body["data"][0]["buckets"]] == ["ann"]
        r = eng.delete("/limits")
        assert r.status_code == 200, r.text
        assert r.json()["reset"] == {"per-user": 1}
        assert eng.get("/limits").json()["data"][0]["buckets"] == []
    state.close()
