"""A tokens-per-minute limit through the Router: whatever way a call ends, the limit holds the
tokens it used (input + output as priced), never its reservation (prompt + the model's 16,384
max output, no max_tokens set): a success, a stream cut mid-way (its partial answer billed), a
consumer that leaves mid-stream, an upstream error before any text (nothing billed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.control import SYSTEM, RateLimit
from core.controls import Controls
from core.errors import CostlineError
from core.pricing import load_catalog
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.state import MemoryState, rate_levels
from tests.servers import scripted as s
from tests.test_controls_support import ask, make_plane

TPM = RateLimit(
    id="tpm", scope="user", metric="tokens", limit=1_000_000, algorithm="sliding_window"
)
NO_RETRY = RetryPolicy(max_attempts=1, base_s=0.001, cap_s=0.001)


@pytest.fixture
def setup(scripted_server: s.ScriptedServer) -> Iterator[tuple[Router, MemoryState, Any]]:
    plane = make_plane()
    plane.upsert_rate_limit(TPM, SYSTEM)
    state = MemoryState("tpm:")
    settings = Settings.from_env().with_provider(
        ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-123456")
    )
    controls = Controls(load_catalog(), plane=plane, state=state, poll_s=0.02)
    router = Router(settings, controls=controls, retry=NO_RETRY)
    yield router, state, scripted_server
    router.close()
    plane.close()


def used(state: MemoryState) -> float:
    return sum(b.used for b in rate_levels(state, TPM))


def logged_tokens(router: Router) -> int:
    from core.usage import Reader

    router.log.flush()
    ev = Reader(router.settings.home).events()
    return int((ev.input_tokens + ev.output_tokens).sum())


def call(**kw: Any) -> Any:
    return ask("hello there", model="gpt-4o-mini", user="ann", cache=False, **kw)


def test_a_success_holds_the_reported_usage(setup: Any) -> None:
    router, state, srv = setup
    srv.enqueue(s.openai_chat("hi", usage=s.openai_usage(50, 20)))
    router.complete(call())
    assert used(state) == 70


def test_a_stream_cut_mid_way_holds_its_prompt_and_partial_answer(setup: Any) -> None:
    router, state, srv = setup
    srv.enqueue(s.cut(s.openai_stream(["one ", "two ", "three ", "four"]), after=4))
    with pytest.raises(CostlineError):
        for _ in router.stream(call()):
            pass
    assert used(state) == logged_tokens(router) > 0


def test_a_consumer_leaving_mid_stream_holds_what_was_billed(setup: Any) -> None:
    router, state, srv = setup
    srv.enqueue(s.openai_stream(["one ", "two ", "three ", "four"], usage=s.openai_usage(9, 4)))
    gen = router.stream(call())
    next(gen)
    next(gen)
    gen.close()
    assert used(state) == logged_tokens(router) > 0


def test_an_upstream_error_before_any_text_holds_nothing(setup: Any) -> None:
    router, state, srv = setup
    srv.enqueue(s.error(400, "bad request", type="invalid_request_error"))
    with pytest.raises(CostlineError):
        router.complete(call())
    assert used(state) == 0
