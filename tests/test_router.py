"""Router end to end: real HTTP to the scripted server, priced and logged exactly."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pandas as pd
import pytest

from core.errors import (
    BadRequest,
    ContextWindowExceeded,
    MalformedResponse,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeout,
    RateLimited,
    UnpricedModel,
)
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.types import ChatRequest, Message
from core.usage import Reader
from tests.servers import scripted as s

FAST = RetryPolicy(max_attempts=3, base_s=0.001, cap_s=0.005)
M = Decimal(10) ** 6  # tokens per price unit: prices are USD per 1M tokens


def ask(model: str = "gpt-4o-mini", text: str = "hello there", **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message("user", text)], model=model, **kw)  # type: ignore[arg-type]


@pytest.fixture
def router(scripted_server: s.ScriptedServer):
    settings = Settings.from_env()
    settings = settings.with_provider(
        ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-123456")
    ).with_provider(
        ProviderConfig("anthropic", "anthropic", scripted_server.url, api_key="sk-ant-test-1234")
    )
    r = Router(settings, retry=FAST, seed=1, controls=False)
    yield r
    r.close()


def logged(router: Router):
    router.log.flush()
    return Reader(router.settings.home).events(order_by="ts", descending=False)


def test_openai_call_priced_by_hand_and_logged_once(router, scripted_server):
    usage = s.openai_usage(prompt=1000, completion=200, cached=400)
    scripted_server.enqueue(s.openai_chat("fine, thanks", usage=usage))
    done = router.complete(ask(org="acme", user="ann", task="chat"))
    # gpt-4o-mini: input $0.15, cached $0.075, output $0.60 per 1M tokens
    expected = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 200 * Decimal("0.60")) / M
    assert done.cost.usd == expected == Decimal("0.00024")
    assert (done.usage.input_tokens, done.usage.cached_input_tokens) == (600, 400)
    assert done.request_id.startswith("req_") and done.provider == "openai"
    body = scripted_server.requests[0].json
    assert body["model"] == "gpt-4o-mini" and body["messages"][0]["content"] == "hello there"
    ev = logged(router)
    assert len(ev) == 1
    row = ev.iloc[0]
    assert row.request_id == done.request_id and row.status == "ok"
    assert int(row.cost_picousd) == done.cost.total and row.org == "acme"
    assert int(row.cost_cached_input_picousd) == 400 * 75_000


def test_anthropic_cache_read_and_write_priced_once_each(router, scripted_server):
    usage = s.anthropic_usage(input=100, output=50, cache_read=1000, cache_write=500)
    scripted_server.enqueue(s.anthropic_message("ok", usage=usage))
    done = router.complete(
        ChatRequest(
            messages=[Message("system", "be brief"), Message("user", "hi")],
            model="claude-3-5-haiku",
        )
    )
    # haiku 3.5: input $0.80, cache read $0.08, cache write $1.00, output $4.00
    expected = (100 * Decimal("0.8") + 1000 * Decimal("0.08") + 500 * 1 + 50 * 4) / M
    assert done.cost.usd == expected
    body = scripted_server.requests[0].json
    assert body["system"] == "be brief" and all(m["role"] != "system" for m in body["messages"])


def test_429_retry_after_is_honoured_then_succeeds(router, scripted_server):
    scripted_server.enqueue(s.rate_limited(retry_after="0"), s.openai_chat("ok"))
    done = router.complete(ask())
    assert done.text == "ok"
    ev = logged(router)
    assert list(ev.status) == ["error", "ok"]
    assert list(ev.error_type.fillna("")) == ["RateLimited", ""]
    assert list(ev.attempt) == [1, 2]


def test_ttft_is_measured_from_the_attempt_that_answered(router, scripted_server):
    # attempt 1: a 429 asking for 0.4 s; attempt 2 streams after 0.1 s. TTFT is that
    # attempt's time to its first chunk (about 0.1 s), not the call's (0.5 s and more).
    scripted_server.enqueue(
        s.rate_limited(retry_after="0.4"), s.delayed(s.openai_stream(["a", "b"]), 0.1)
    )
    done = list(router.stream(ask()))[-1].completion
    assert done is not None and done.ttft_ms is not None
    assert done.latency_ms >= 500 and 100 <= done.ttft_ms < 400


def test_long_retry_after_moves_to_the_fallback(router, scripted_server):
    scripted_server.enqueue(s.rate_limited(retry_after="3600"), s.anthropic_message("from haiku"))
    done = router.complete(ask(fallbacks=("claude-3-5-haiku",)))
    assert done.model == "claude-3-5-haiku" and "fallback" in done.route_reason
    assert len(logged(router)) == 2


def test_500s_exhaust_retries_then_fall_back(router, scripted_server):
    scripted_server.enqueue(*[s.error(500, "boom")] * 3, s.anthropic_message("rescued"))
    done = router.complete(ask(fallbacks=("claude-3-5-haiku",)))
    assert done.text == "rescued"
    ev = logged(router)
    assert list(ev.status) == ["error"] * 3 + ["ok"]
    assert set(ev.error_type.dropna()) == {"ProviderServerError"}
    assert list(ev.model) == ["gpt-4o-mini"] * 3 + ["claude-3-5-haiku"]
    assert ev.iloc[-1].requested_model == "gpt-4o-mini"


def test_500s_without_fallback_raise_server_error(router, scripted_server):
    scripted_server.enqueue(*[s.error(503, "down")] * 3)
    with pytest.raises(ProviderServerError):
        router.complete(ask())
    assert len(logged(router)) == 3


def test_timeout_is_retried_and_raised(router, scripted_server):
    scripted_server.enqueue(*[s.delayed(s.openai_chat("late"), 1.5)] * 3)
    with pytest.raises(ProviderTimeout):
        router.complete(ask(timeout=0.2))
    ev = logged(router)
    assert list(ev.error_type) == ["ProviderTimeout"] * 3


def test_connection_reset_is_retried(router, scripted_server):
    scripted_server.enqueue(s.reset(), s.openai_chat("after reset"))
    assert router.complete(ask()).text == "after reset"
    assert list(logged(router).error_type.fillna("-")) == ["ProviderConnectionError", "-"]


def test_malformed_json_is_not_retried(router, scripted_server):
    scripted_server.enqueue(s.raw("{not json"), s.openai_chat("never"))
    with pytest.raises(MalformedResponse):
        router.complete(ask())
    assert len(scripted_server.requests) == 1
    assert list(logged(router).error_type) == ["MalformedResponse"]


def test_stream_cut_mid_way_raises_and_logs_an_estimated_nonzero_cost(router, scripted_server):
    scripted_server.enqueue(s.cut(s.openai_stream(["one ", "two ", "three ", "four"]), after=4))
    got: list[str] = []
    with pytest.raises((MalformedResponse, ProviderConnectionError)):
        for chunk in router.stream(ask()):
            got.append(chunk.text)
    assert "".join(got).startswith("one")
    ev = logged(router)
    assert len(ev) == 1 and ev.iloc[0].status == "error"
    assert bool(ev.iloc[0].usage_estimated) and int(ev.iloc[0].cost_picousd) > 0


def test_stream_without_usage_is_estimated_never_zero(router, scripted_server):
    scripted_server.enqueue(s.openai_stream(["a quick ", "brown fox"], usage=None))
    chunks = list(router.stream(ask()))
    done = chunks[-1].completion
    assert done is not None and "".join(c.text for c in chunks) == "a quick brown fox"
    assert done.usage.estimated and done.cost.total > 0 and done.ttft_ms is not None
    assert scripted_server.requests[0].json["stream_options"] == {"include_usage": True}


def test_stream_with_usage_is_priced_like_non_streamed(router, scripted_server):
    usage = s.openai_usage(prompt=50, completion=20)
    scripted_server.enqueue(s.openai_stream(["x"], usage=usage), s.openai_chat("x", usage=usage))
    streamed = list(router.stream(ask()))[-1].completion
    plain = router.complete(ask())
    assert streamed is not None and not streamed.usage.estimated
    assert streamed.cost == plain.cost


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (ask(model="no-such-model-9000"), UnpricedModel),
        (ChatRequest(messages=[], model="gpt-4o-mini"), BadRequest),
        (ask(max_tokens=-5), BadRequest),
        (ask(max_tokens=200_000), ContextWindowExceeded),
        (ask(text="bad \ud800 surrogate"), BadRequest),
        (ask(temperature=7.0), BadRequest),
    ],
    ids=["unknown-model", "empty", "negative-max", "over-window", "invalid-utf8", "temperature"],
)
def test_bad_input_rejected_before_any_http_call(router, scripted_server, req, error):
    with pytest.raises(error) as info:
        router.complete(req)
    assert info.value.message  # a message that names the problem
    assert scripted_server.requests == []
    ev = logged(router)
    assert len(ev) == 1 and ev.iloc[0].error_type == error.__name__


def test_prompt_longer_than_window_is_rejected(router, scripted_server):
    long = "word " * 130_000  # ~130k tokens > gpt-4o-mini's 128k window
    with pytest.raises(ContextWindowExceeded, match="context window"):
        router.complete(ask(text=long))
    assert scripted_server.requests == []


def test_unpriced_allowed_is_flagged_not_zero(scripted_server):
    settings = Settings.from_env().with_provider(
        ProviderConfig("vllm", "openai", scripted_server.openai_url)
    )
    with Router(settings, retry=FAST, allow_unpriced=True, controls=False) as r:
        done = r.complete(ask(model="vllm/my-finetune"))
        assert done.cost.unpriced and done.provider == "vllm"
        r.log.flush()
        ev = Reader(settings.home).events()
    assert bool(ev.iloc[0].unpriced)
    assert scripted_server.requests[0].json["model"] == "my-finetune"


def test_every_completion_has_a_unique_request_id(router, scripted_server):
    ids = {router.complete(ask(model="dryrun-small")).request_id for _ in range(50)}
    assert len(ids) == 50


def test_batch_keeps_order_and_returns_errors_in_place(router):
    reqs = [ask(model="dryrun-small", text=f"q{i}") for i in range(20)]
    reqs[7] = ask(model="dryrun-small", max_tokens=0)
    out = router.batch(reqs, concurrency=4)
    assert isinstance(out[7], BadRequest)
    assert all(o.text.startswith("[dryrun]") for i, o in enumerate(out) if i != 7)
    assert "q3" in out[3].text
    assert len(logged(router)) == 20


async def test_async_complete_and_stream(router, scripted_server):
    scripted_server.enqueue(s.openai_chat("async ok"), s.openai_stream(["as", "ync"]))
    done = await router.acomplete(ask())
    assert done.text == "async ok"
    chunks = [c async for c in router.astream(ask())]
    assert "".join(c.text for c in chunks) == "async" and chunks[-1].completion is not None
    assert len(logged(router)) == 2


async def test_abatch_with_retry(router, scripted_server):
    scripted_server.enqueue(s.error(500, "x"))
    out = await router.abatch([ask(), ask(), ask()], concurrency=2)
    assert all(not isinstance(o, Exception) for o in out)
    ev = logged(router)
    assert (ev.status == "ok").sum() == 3 and (ev.status == "error").sum() == 1


def test_rate_limited_error_carries_retry_after(router, scripted_server):
    scripted_server.enqueue(*[s.rate_limited(retry_after="2")] * 3)
    with pytest.raises(RateLimited) as info:
        once = RetryPolicy(max_attempts=1)
        Router(router.settings, retry=once, log=router.log, controls=False).complete(ask())
    assert info.value.retry_after == 2


def test_bodies_stored_only_for_enabled_projects(scripted_server):
    settings = Settings.from_env(log_bodies_projects=frozenset({"debug"}))
    with Router(settings, controls=False) as r:
        r.complete(ask(model="dryrun-small", project="debug", text="keep me"))
        r.complete(ask(model="dryrun-small", project="prod", text="drop me"))
        r.log.flush()
        ev = Reader(settings.home).events(order_by="ts", descending=False)
    assert "keep me" in ev.iloc[0].prompt and ev.iloc[0].response
    assert pd.isna(ev.iloc[1].prompt) and pd.isna(ev.iloc[1].response)


def test_every_column_of_a_call_event_is_stored_in_its_place(router, scripted_server):
    # The router builds the journal row itself (record.usage_row), with no UsageEvent in
    # between: every field, read back, must be the request's and the answer's own value.
    usage = s.openai_usage(prompt=1000, completion=200, cached=400)
    scripted_server.enqueue(s.openai_chat("fine, thanks", usage=usage))
    req = ask(
        org="acme",
        project="web",
        user="ann",
        task="chat",
        app="site",
        tags=("a", "b"),
        metadata={"k": "v"},
        criticality="high",
        source="batch-job",
        key="team-key",
    )
    done = router.complete(req)
    router.log.flush()
    (ev,) = Reader(router.settings.home).fetch()
    assert ev.ts.utcoffset() is not None
    assert (ev.request_id, ev.org, ev.project, ev.user, ev.task, ev.app, ev.tags) == (
        done.request_id,
        "acme",
        "web",
        "ann",
        "chat",
        "site",
        ("a", "b"),
    )
    assert (ev.provider, ev.model, ev.requested_model, ev.status, ev.attempt) == (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini",
        "ok",
        1,
    )
    assert (ev.error_type, ev.error_message, ev.prompt, ev.response) == (None, None, None, None)
    assert (ev.input_tokens, ev.cached_input_tokens, ev.cache_write_tokens) == (600, 400, 0)
    assert (ev.output_tokens, ev.reasoning_tokens, ev.cache_write_1h_tokens) == (200, 0, 0)
    # gpt-4o-mini: input $0.15, cached $0.075, output $0.60 per 1M tokens = pUSD per token
    assert (ev.cost_input_picousd, ev.cost_cached_input_picousd) == (600 * 150_000, 400 * 75_000)
    assert (ev.cost_output_picousd, ev.cost_reasoning_picousd) == (200 * 600_000, 0)
    # saved: the 400 cached tokens at the input rate less the cached one
    assert ev.cost_picousd == 240_000_000 and ev.saved_picousd == 400 * (150_000 - 75_000)
    assert (ev.usage_estimated, ev.unpriced, ev.cache_hit, ev.ai_called, ev.degraded) == (
        False,
        False,
        False,
        True,
        False,
    )
    assert ev.latency_ms == done.latency_ms and ev.ttft_ms is None
    assert (ev.route_reason, ev.criticality, ev.source) == (
        "gpt-4o-mini: requested",
        "high",
        "batch-job",
    )
    assert (ev.metadata, ev.price_flags, ev.key) == ({"k": "v"}, (), "team-key")


IMAGE_PARTS = [
    {"type": "text", "text": "What is in this image?"},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
]
RICH = [
    [Message("user", "What is in this image?", extra={"content": IMAGE_PARTS})],
    [
        Message("user", "weather?"),
        Message("assistant", "", extra={"content": None, "tool_calls": [{"id": "c1"}]}),
        Message("tool", "sunny", extra={"tool_call_id": "c1"}),
    ],
]


@pytest.mark.parametrize(
    ("messages", "field"),
    list(zip(RICH, ["messages[0]", "messages[1]"], strict=True)),
    ids=["image", "tool_calls"],
)
@pytest.mark.parametrize("model", ["local/smollm2-135m-instruct"])
def test_text_only_adapters_refuse_images_and_tool_calls_instead_of_dropping_them(
    router, scripted_server, messages, field, model
):
    """Before, the local adapter sent the text alone: the model answered about an image it
    never saw. (The Anthropic adapter sends them as Claude's blocks: the next test.)"""
    req = ChatRequest(messages=messages, model=model)
    with pytest.raises(BadRequest, match="with text only through Costline") as info:
        router.complete(req)
    assert info.value.field == field and info.value.message.startswith(field)
    assert scripted_server.requests == []  # nothing was sent without the image
    assert logged(router).iloc[0].error_type == "BadRequest"


def test_the_anthropic_adapter_sends_images_and_tool_calls_as_claudes_blocks(
    router, scripted_server
):
    """A library call with an image, or with tool calls and their results, reaches Claude
    as image, tool_use and tool_result blocks (the scripted upstream refuses what Anthropic
    refuses), and Claude's tool_use answer comes back as the OpenAI choice's tool_calls."""
    router.complete(ChatRequest(messages=RICH[0], model="claude-3-5-haiku"))
    assert scripted_server.requests[-1].json["messages"][0]["content"] == [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    fn = {"name": "weather", "parameters": {"type": "object", "properties": {}}}
    messages = [
        Message("user", "weather?"),
        Message("assistant", "", extra={"content": None, "tool_calls": [call]}),
        Message("tool", "sunny", extra={"tool_call_id": "c1"}),
    ]
    extra = {"tools": [{"type": "function", "function": fn}]}
    done = router.complete(
        ChatRequest(messages=messages[:1], model="claude-3-5-haiku", extra=extra)
    )
    assert done.finish_reason == "tool_use" and done.choices is not None
    (got,) = done.choices[0]["message"]["tool_calls"]
    assert got["function"] == {"name": "weather", "arguments": "{}"}
    done = router.complete(ChatRequest(messages=messages, model="claude-3-5-haiku", extra=extra))
    sent = scripted_server.requests[-1].json["messages"]
    assert sent[1:] == [
        {"role": "assistant", "content": [s.tool_use("c1", "weather", {})]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "sunny"}],
        },
    ]
    assert done.text == "echo: sunny"


async def test_async_with_closes_the_async_connections_the_router_opened(scripted_server):
    """``close`` cannot await an AsyncClient: ``async with`` / ``aclose`` close it."""
    from core.providers import OpenAIProvider

    config = ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-1")
    provider = OpenAIProvider(config)  # owns the clients it opens
    async with Router(providers={"openai": provider}, controls=False) as r:
        done = await r.acomplete(ask())
        chunks = [c async for c in r.astream(ask())]
        aclient = provider.aclient
        assert not aclient.is_closed
    assert done.text and chunks[-1].completion is not None
    assert aclient.is_closed
    r.close()  # closing again is harmless
    await r.aclose()


def test_closing_routers_ends_their_threads_and_a_closed_router_refuses_calls():
    """Before, each closed Router left its usage log's two threads running (a process that
    made a Router per job or test piled them up), and a call after ``close`` met SQLite's
    'Cannot operate on a closed database' (sqlite3.ProgrammingError, outside the tree)."""
    import threading

    from core.control import SYSTEM, Budget, ControlPlane
    from core.errors import UsageLogUnavailable

    plane = ControlPlane()  # a budget: admission reads the embedded budget counters
    plane.upsert_budget(Budget("b", "b", limit_usd=Decimal(100), action="block"), SYSTEM)
    plane.close()
    before = threading.active_count()
    for _ in range(5):
        with Router() as r:
            r.complete(ask("dryrun-small", cache=False))
            r.log.flush()
    assert threading.active_count() == before
    assert len(Reader(r.settings.home).events()) == 5  # every call on disk
    for entry in (
        lambda: r.complete(ask("dryrun-small")),
        lambda: list(r.stream(ask("dryrun-small"))),
        lambda: asyncio.run(r.acomplete(ask("dryrun-small"))),
    ):
        with pytest.raises(UsageLogUnavailable, match="this Router is closed"):
            entry()
    r.close()  # twice: harmless
