"""Live rate-limit buckets read and reset, on memory state and on real Redis."""

from __future__ import annotations

from typing import Any

from core.control import RateLimit
from core.ratelimits import rate_key
from core.state import RateItem
from core.state._levels import rate_levels, reset_rates


def test_levels_show_each_bucket_and_reset_clears_only_that_limit(state: Any) -> None:
    bucket = RateLimit(id="per-user", scope="user", limit=10, window_s=60)
    window = RateLimit(id="org-win", scope="org", limit=5, window_s=60, algorithm="sliding_window")
    items = [
        RateItem(rate_key(bucket, "ann"), "token_bucket", 10, 60.0, cost=3),
        RateItem(rate_key(bucket, "bob"), "token_bucket", 10, 60.0, cost=7),
        RateItem(rate_key(window, "acme"), "sliding_window", 5, 60.0, cost=2),
    ]
    for item in items:
        assert state.admit([item], []).ok
    assert state.admit([items[2]], []).ok  # 4 of 5 used in the window
    users = rate_levels(state, bucket)
    assert [b.value for b in users] == ["bob", "ann"]  # most used first
    assert 6.9 < users[0].used <= 7 and 2.9 < users[1].used <= 3  # refilling at 10/min
    (org,) = rate_levels(state, window)
    assert (org.value, org.used) == ("acme", 4.0)
    assert reset_rates(state, bucket) == 2
    assert rate_levels(state, bucket) == []
    assert [b.value for b in rate_levels(state, window)] == ["acme"]
    assert state.admit(
        [RateItem(rate_key(bucket, "bob"), "token_bucket", 10, 60.0, cost=10)], []
    ).ok


def test_redis_levels_are_read_on_the_clock_its_scripts_refill_by(redis_url: str) -> None:
    """Redis refills and expires buckets by its own TIME; a host whose clock is an hour off
    (moved here with time-machine) read every bucket as refilled and the window as empty."""
    import os
    import time

    import time_machine

    from core.state import RedisState

    state = RedisState(redis_url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=5.0)
    bucket = RateLimit(id="per-user", scope="user", limit=10, window_s=60)
    window = RateLimit(id="org-win", scope="org", limit=5, window_s=60, algorithm="sliding_window")
    try:
        assert state.admit(
            [RateItem(rate_key(bucket, "ann"), "token_bucket", 10, 60.0, cost=4)], []
        ).ok
        assert state.admit(
            [RateItem(rate_key(window, "acme"), "sliding_window", 5, 60.0, cost=2)], []
        ).ok
        with time_machine.travel(time.time() + 3600, tick=True):  # an hour ahead of Redis
            (ann,) = rate_levels(state, bucket)
            (acme,) = rate_levels(state, window)
        assert 3.9 < ann.used <= 4 and acme.used == 2.0
    finally:
        state.close()
