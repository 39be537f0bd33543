"""Through a real gateway: a key's tokens-per-minute limit counts the tokens its calls used, not
their reservations (prompt + the model's 16,384 max output when a request sets no max_tokens),
in x-ratelimit-remaining-tokens and in the levels ``GET /limits`` reports; on SharedState (the
default) and on a real Redis (its own key prefix)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from core.keys import KeySpec, key_limits
from core.state import RedisState, _lua, rate_levels
from tests.gateway_support import GatewayProcess, serve

TPM = 200_000
NO_CACHE = {"x-costline-cache": "no-store"}


@pytest.fixture(params=["shared", "redis"])
def gw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayProcess]:
    env: dict[str, str] = {}
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        env["COSTLINE_REDIS_PREFIX"] = os.environ["COSTLINE_TEST_PREFIX"]
    home = tmp_path / "home"
    home.mkdir()
    with serve(home, {"tpm": {"tpm": TPM}}, env) as proc:
        yield proc


def _ask(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {n}: what is the capital of France?"}]


def test_tpm_counts_the_tokens_used_not_the_reservations(gw: GatewayProcess) -> None:
    auth = {"authorization": f"Bearer {gw.keys['tpm']}", **NO_CACHE}
    used = 0
    with httpx.Client(base_url=gw.base_url, headers=auth, timeout=30) as c:
        for n in range(16):  # no max_tokens: each reserves prompt + 16,384; 13 would not fit
            r = c.post("/chat/completions", json={"model": "dryrun-small", "messages": _ask(n)})
            assert r.status_code == 200, (n, r.status_code, r.text)
            used += r.json()["usage"]["total_tokens"]
            assert int(r.headers["x-ratelimit-remaining-tokens"]) == TPM - used, n
        body = {"model": "dryrun-small", "messages": _ask(99), "stream": True}
        body["stream_options"] = {"include_usage": True}
        with c.stream("POST", "/chat/completions", json=body) as s:  # settles at its end
            assert s.status_code == 200
            for line in s.iter_lines():
                if line.startswith("data: {"):
                    usage = json.loads(line[6:]).get("usage")
                    used += usage["total_tokens"] if usage else 0
        r = c.post("/chat/completions", json={"model": "dryrun-small", "messages": _ask(100)})
        assert r.status_code == 200
        used += r.json()["usage"]["total_tokens"]
        assert int(r.headers["x-ratelimit-remaining-tokens"]) == TPM - used
    assert used < 18 * 500  # the calls were small: a few hundred tokens each at most
    if "REDIS_URL" not in gw.extra_env:
        return  # SharedState keeps rate buckets in the gateway process's memory
    # GET /limits lists each limit's rate_levels in the shared state: read as it reads them
    (rl,) = [r for r in key_limits(KeySpec(name="tpm", tpm=TPM)) if r.metric == "tokens"]
    state = RedisState(gw.extra_env["REDIS_URL"], gw.extra_env["COSTLINE_REDIS_PREFIX"])
    try:
        assert [(b.value, b.used) for b in rate_levels(state, rl)] == [("tpm", used)]
    finally:
        state.close()


class Monitor:
    """Redis MONITOR on its own thread: the commands clients send that name ``prefix`` (a
    script's own commands excluded), between ``start()`` and ``stop()``."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.seen: list[str] = []
        self._live = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as mon:
            self._live.set()
            while True:
                got = mon.next_command()
                cmd = got["command"]
                if got.get("client_type") == "lua" or self.prefix not in cmd:
                    continue
                if self.prefix + "monitor-end" in cmd:
                    return
                self.seen.append(cmd)

    def start(self) -> Monitor:
        self._thread.start()
        assert self._live.wait(10)
        time.sleep(0.2)  # MONITOR is on before the calls to watch are made
        return self

    def stop(self) -> list[str]:
        self.client.get(self.prefix + "monitor-end")
        self._thread.join(10)
        self.client.close()
        return self.seen


def _scripts(cmds: list[str]) -> list[str]:
    """The scripts among ``cmds`` by name (the breakers' periodic re-read left out: it runs
    at most every 250 ms whatever the limits), then the count of other commands."""
    names = {
        hashlib.sha1(v.encode()).hexdigest(): k
        for k, v in vars(_lua).items()
        if k.isupper() and isinstance(v, str)
    }
    out = [names.get(c.split()[1], "?") for c in cmds if c.startswith("EVALSHA")]
    return [n for n in out if n != "BREAKER_ALLOW_MANY"]


@pytest.mark.services
def test_a_tpm_call_on_redis_costs_no_more_round_trips_than_a_requests_one(
    tmp_path: Path, redis_url: str
) -> None:
    """The settle of a tokens-per-minute charge rides in the script that records the call's
    success on the model's breaker: admission and settle, one round trip each, the same
    number a request-count limit (which needs no settle) makes."""
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    home = tmp_path / "home"
    home.mkdir()
    keys = {"tpm": {"tpm": TPM}, "rpm": {"rpm": 600}}
    env = {"REDIS_URL": redis_url, "COSTLINE_REDIS_PREFIX": prefix}
    seen: dict[str, list[str]] = {}
    with serve(home, keys, env) as gw, httpx.Client(base_url=gw.base_url, timeout=30) as c:

        def call(key: str, n: int) -> httpx.Response:
            body = {"model": "dryrun-small", "messages": _ask(n)}
            auth = {"authorization": f"Bearer {gw.keys[key]}", **NO_CACHE}
            r = c.post("/chat/completions", json=body, headers=auth)
            assert r.status_code == 200, r.text
            return r

        for n, key in enumerate(keys):  # warm: the scripts are loaded, the epoch known
            call(key, n)
        for n, key in enumerate(keys, start=10):
            mon = Monitor(redis_url, prefix).start()
            r = call(key, n)
            seen[key] = mon.stop()
            assert (
                int(
                    r.headers["x-ratelimit-remaining-" + ("tokens" if key == "tpm" else "requests")]
                )
                > 0
            )
    assert _scripts(seen["tpm"]) == ["ADMIT", "SETTLE_CLOSE"], seen["tpm"]
    assert _scripts(seen["rpm"]) == ["ADMIT", "BREAKER_RECORD"], seen["rpm"]
    others = [[c for c in seen[k] if not c.startswith("EVALSHA")] for k in ("tpm", "rpm")]
    assert len(others[0]) == len(others[1]), others  # the cache count, the headers' read
