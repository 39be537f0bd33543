"""One attempt engine: complete, acomplete, stream and astream retry, fall back, price and log
the same way. The same scripted failures go to each entry point; the logged attempts, the
answer and its cost are written out by hand once and must be equal for all four."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import MalformedResponse, ProviderConnectionError
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.types import ChatRequest, Completion, Message
from core.usage import Reader
from tests.servers import scripted as s

MODES = ("complete", "acomplete", "stream", "astream")
FAST = RetryPolicy(max_attempts=3, base_s=0.001, cap_s=0.005)


def ask() -> ChatRequest:
    msgs = [Message("user", "hello there")]
    return ChatRequest(messages=msgs, model="gpt-4o-mini", fallbacks=("claude-3-5-haiku",))


@pytest.fixture
def router(scripted_server: s.ScriptedServer):
    settings = (
        Settings.from_env()
        .with_provider(
            ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-123456")
        )
        .with_provider(
            ProviderConfig("anthropic", "anthropic", scripted_server.url, api_key="sk-ant-1234567")
        )
    )
    with Router(settings, retry=FAST, seed=1, controls=False) as r:
        yield r


def run(router: Router, mode: str, req: ChatRequest) -> tuple[str, Completion]:
    """The text the caller saw and the final Completion, through one entry point."""
    if mode == "complete":
        done = router.complete(req)
        return done.text, done
    if mode == "acomplete":
        done = asyncio.run(router.acomplete(req))
        return done.text, done
    if mode == "stream":
        chunks = list(router.stream(req))
    else:

        async def collect() -> list:  # type: ignore[type-arg]
            return [c async for c in router.astream(req)]

        chunks = asyncio.run(collect())
    final = chunks[-1].completion
    assert final is not None and all(c.completion is None for c in chunks[:-1])
    return "".join(c.text for c in chunks), final


@pytest.mark.parametrize("mode", MODES)
def test_retries_fallback_price_and_log_are_the_same_for_every_entry_point(
    router: Router, scripted_server: s.ScriptedServer, mode: str
) -> None:
    streamed = mode in ("stream", "astream")
    usage = s.anthropic_usage(1_000, 200)
    answer = (
        s.anthropic_stream(["fine, ", "thanks"], usage=usage)
        if streamed
        else s.anthropic_message("fine, thanks", usage=usage)
    )
    scripted_server.enqueue(
        s.rate_limited(retry_after="0.01"),  # gpt-4o-mini attempt 1: 429, retried after 10 ms
        s.error(500, "boom"),  # attempt 2
        s.error(503, "down"),  # attempt 3: its last, so on to the fallback
        s.error(500, "boom"),  # claude-3-5-haiku attempt 1
        answer,  # attempt 2 answers
    )
    text, done = run(router, mode, ask())
    assert text == "fine, thanks" and done.text == "fine, thanks"
    assert (done.model, done.provider) == ("claude-3-5-haiku", "anthropic")
    assert (
        done.route_reason == "claude-3-5-haiku: fallback from gpt-4o-mini after ProviderServerError"
    )
    # claude-3-5-haiku: $0.80 input, $4.00 output per 1M tokens: 1,000 x 0.80 + 200 x 4.00
    # = $1,600 per 1M = $0.0016 = 1,600,000,000 picodollars
    assert done.cost.total == 1_600_000_000 and not done.usage.estimated
    assert (done.ttft_ms is not None) == streamed
    assert scripted_server.pending == 0
    router.log.flush()
    ev = Reader(router.settings.home).events(order_by="ts", descending=False)
    assert list(ev.status) == ["error"] * 4 + ["ok"]
    assert list(ev.error_type.fillna("")) == [
        "RateLimited",
        "ProviderServerError",
        "ProviderServerError",
        "ProviderServerError",
        "",
    ]
    assert list(ev.model) == ["gpt-4o-mini"] * 3 + ["claude-3-5-haiku"] * 2
    assert list(ev.attempt) == [1, 2, 3, 1, 2]
    assert list(ev.requested_model) == ["gpt-4o-mini"] * 5
    assert [int(c) for c in ev.cost_picousd] == [0, 0, 0, 0, 1_600_000_000]
    assert ev.request_id.nunique() == 1


@pytest.mark.parametrize("mode", ["stream", "astream"])
def test_no_retry_or_fallback_once_text_reached_the_caller(
    router: Router, scripted_server: s.ScriptedServer, mode: str
) -> None:
    scripted_server.enqueue(
        s.cut(s.openai_stream(["one ", "two ", "three ", "four"]), after=4),
        s.anthropic_stream(["must ", "not be called"]),
    )
    with pytest.raises((MalformedResponse, ProviderConnectionError)):
        run(router, mode, ask())
    assert scripted_server.pending == 1  # the fallback's reply is still waiting
    router.log.flush()
    ev = Reader(router.settings.home).events()
    assert list(ev.status) == ["error"] and list(ev.model) == ["gpt-4o-mini"]
    assert bool(ev.iloc[0].usage_estimated) and int(ev.iloc[0].cost_picousd) > 0
