"""Spend controls through the real Router: rate limits per user/org/app/model/provider,
skipping a limited candidate for the next one, and RateLimitExceeded when none is left."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_controls_support import ENGINEER, ask, events, make_plane, make_router, sync

from core.control import ControlPlane, RateLimit, RoutingPolicy
from core.errors import RateLimitExceeded
from core.router import Router

BASE = dict(user="ann", org="acme", app="key-1", model="dryrun-small")


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    p = make_plane()
    yield p
    p.close()


@pytest.fixture
def router(plane: ControlPlane) -> Iterator[Router]:
    r = make_router(plane)
    yield r
    r.close()


def limit(plane: ControlPlane, id: str, **kw: Any) -> RateLimit:
    return plane.upsert_rate_limit(RateLimit(id=id, **kw), ENGINEER)


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window"])
@pytest.mark.parametrize(
    ("scope", "other"),
    [
        ("user", {"user": "bob"}),
        ("org", {"org": "globex"}),
        ("app", {"app": "key-2"}),
        ("model", {"model": "dryrun-medium"}),
        ("provider", None),  # every dryrun model has the one provider
    ],
)
def test_rate_limit_per_scope_value(plane, router, scope, other, algorithm):
    limit(plane, "per-" + scope, scope=scope, limit=2, window_s=60, algorithm=algorithm)
    sync(router)
    for i in range(2):
        router.complete(ask(f"q{i}", **BASE))  # distinct prompts: no cache hits
    with pytest.raises(RateLimitExceeded) as err:
        router.complete(ask("q2", **BASE))
    assert err.value.retry_after is not None and 0 < err.value.retry_after <= 60
    assert f"'per-{scope}'" in err.value.message
    if other is not None:  # each value has its own bucket
        assert router.complete(ask("q3", **{**BASE, **other})).cost.total > 0
    ev = events(router)
    assert list(ev.status)[:3] == ["ok", "ok", "rate_limited"]
    assert ev.error_type.iloc[2] == "RateLimitExceeded" and ev.cost_picousd.iloc[2] == 0


def test_a_limit_on_one_value_leaves_the_others_alone(plane, router):
    limit(plane, "ann-only", scope="user", scope_value="ann", limit=1, window_s=60)
    sync(router)
    router.complete(ask("a", **BASE))
    with pytest.raises(RateLimitExceeded):
        router.complete(ask("b", **BASE))
    for i in range(3):
        router.complete(ask(f"c{i}", **{**BASE, "user": "bob"}))


def test_a_limited_candidate_is_skipped_for_the_next_then_rate_limited(plane, router):
    plane.upsert_policy(
        RoutingPolicy(task="summarize", primary_model="dryrun-large", fallbacks=("dryrun-medium",)),
        ENGINEER,
    )
    limit(plane, "large", scope="model", scope_value="dryrun-large", limit=1, window_s=60)
    limit(plane, "medium", scope="model", scope_value="dryrun-medium", limit=1, window_s=30)
    sync(router)
    first = router.complete(ask("one", task="summarize"))
    second = router.complete(ask("two", task="summarize"))
    assert first.model == "dryrun-large" and second.model == "dryrun-medium"
    assert "skipped dryrun-large (rate limit 'large' (model=dryrun-large)" in second.route_reason
    with pytest.raises(RateLimitExceeded) as err:
        router.complete(ask("three", task="summarize"))
    assert "no candidate can be called now" in err.value.message
    retry = err.value.retry_after
    assert retry is not None and 0 < retry <= 30  # the soonest of the two buckets
    ev = events(router)
    assert list(ev.status) == ["ok", "ok", "rate_limited"]
    assert list(ev.model) == ["dryrun-large", "dryrun-medium", "dryrun-large"]
    assert ev.route_reason.iloc[1] == second.route_reason


def test_token_rate_limit_counts_estimated_tokens(plane, router):
    limit(plane, "tpm", scope="org", metric="tokens", limit=500, window_s=60)
    sync(router)
    router.complete(ask("short", max_tokens=200, **BASE))
    router.complete(ask("short 2", max_tokens=200, **BASE))
    with pytest.raises(RateLimitExceeded) as err:
        router.complete(ask("short 3", max_tokens=200, **BASE))
    assert "500 tokens per 60 s" in err.value.message
