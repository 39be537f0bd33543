"""The gateway's x-ratelimit-* levels read back what admission wrote, in memory and in a real
Redis (sliding windows and token buckets; the tightest limit of a metric wins)."""

from __future__ import annotations

import os

import pytest

from core import clock
from core.control import RateLimit, VirtualKey
from core.gateway._limits import headers, key_limits
from core.ratelimits import rate_key
from core.state import MemoryState, RateItem
from core.state.redis_state import RedisState

KEY = VirtualKey(name="web", prefix="sk-cl-abcdef", key_hash="0" * 64)
WINDOW = RateLimit(
    id="key:web:rpm", scope="key", scope_value="web", limit=5, algorithm="sliding_window"
)
BUCKET = RateLimit(id="key:web:tpm", scope="key", scope_value="web", metric="tokens", limit=600)
LOOSE = RateLimit(id="all-keys", scope="key", limit=100, algorithm="sliding_window")
OTHER = RateLimit(id="key:api:rpm", scope="key", scope_value="api", limit=1)


def _admit(state: object, cost_tokens: int, n: int) -> None:
    items = [
        RateItem(rate_key(WINDOW, "web"), "sliding_window", 5, 60.0, None, 1),
        RateItem(rate_key(BUCKET, "web"), "token_bucket", 600, 60.0, None, cost_tokens),
        RateItem(rate_key(LOOSE, "web"), "sliding_window", 100, 60.0, None, 1),
    ]
    for _ in range(n):
        assert state.admit(items, [], now=clock.timestamp()).ok  # type: ignore[attr-defined]


def _check(state: object) -> None:
    limits = key_limits([WINDOW, BUCKET, LOOSE, OTHER], KEY)
    assert limits == [WINDOW, BUCKET, LOOSE]  # not another key's
    fresh = dict(headers(state, limits, KEY))
    assert fresh[b"x-ratelimit-remaining-requests"] == b"5"  # nothing used yet
    assert fresh[b"x-ratelimit-reset-requests"] == b"0.000s"
    _admit(state, 100, 3)
    got = dict(headers(state, limits, KEY))
    assert got[b"x-ratelimit-limit-requests"] == b"5"  # the tighter of 5 and 100
    assert got[b"x-ratelimit-remaining-requests"] == b"2"
    assert 59 < float(got[b"x-ratelimit-reset-requests"][:-1]) <= 60
    assert got[b"x-ratelimit-limit-tokens"] == b"600"
    assert got[b"x-ratelimit-remaining-tokens"] in (b"300", b"301")  # refills 10 a second
    assert 29 < float(got[b"x-ratelimit-reset-tokens"][:-1]) <= 30


def test_levels_from_memory_state() -> None:
    _check(MemoryState())


@pytest.mark.services
def test_levels_from_redis(redis_url: str) -> None:
    state = RedisState(redis_url, os.environ["COSTLINE_TEST_PREFIX"])
    try:
        _check(state)
    finally:
        state.close()


def test_a_state_outage_leaves_the_limits_only() -> None:
    class Broken(MemoryState):
        @property
        def _data(self) -> dict[str, object]:  # type: ignore[override]
            raise ConnectionError("down")

        @_data.setter
        def _data(self, value: object) -> None:
            pass

    got = headers(Broken(), [WINDOW], KEY)
    assert got == [(b"x-ratelimit-limit-requests", b"5")]
