"""Through a real gateway: a key's tokens-per-minute limit counts the tokens its calls used, not
their reservations (prompt + the model's 16,384 max output when a request sets no max_tokens),
in x-ratelimit-remaining-tokens and in the levels ``GET /limits`` reports; on SharedState (the
default) and on a real Redis (its own key prefix)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.keys import KeySpec, key_limits
from core.state import RedisState, rate_levels
from tests.gateway_support import GatewayProcess, make_key

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
    secret = make_key(home, "tpm", tpm=TPM)
    with GatewayProcess(home, env) as proc:
        proc.secret = secret  # type: ignore[attr-defined]
        yield proc


def _ask(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Question {n}: what is the capital of France?"}]


def test_tpm_counts_the_tokens_used_not_the_reservations(gw: GatewayProcess) -> None:
    auth = {"authorization": f"Bearer {gw.secret}", **NO_CACHE}  # type: ignore[attr-defined]
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
