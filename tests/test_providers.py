"""HTTP adapters (OpenAI-compatible, Anthropic) against the real scripted server.

Every case runs in all four modes: complete, acomplete, stream, astream.
"""

from __future__ import annotations

import asyncio
import email.utils
from typing import Any

import httpx
import pytest

from core import clock
from core.errors import (
    AuthError,
    BadRequest,
    ContextWindowExceeded,
    CostlineError,
    MalformedResponse,
    ProviderConnectionError,
    ProviderServerError,
    ProviderTimeout,
    RateLimited,
)
from core.providers import Provider, ProviderResult, create
from core.settings import ProviderConfig
from core.types import ChatRequest, Message, Usage
from tests.servers import scripted as s
from tests.servers.scripted import ScriptedServer

KEY = "sk-test-SECRETKEY-0123456789"
MODES = ("complete", "acomplete", "stream", "astream")
WIRES = ("openai", "anthropic")
MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022"}


def provider(srv: ScriptedServer, wire: str, key: str | None = KEY, **kw: Any) -> Provider:
    url = srv.openai_url if wire == "openai" else srv.url
    return create(ProviderConfig(f"test-{wire}", wire, url, key, **kw))  # type: ignore[arg-type]


def req(**kw: Any) -> ChatRequest:
    msgs = kw.pop("messages", None) or [
        Message("system", "You are terse."),
        Message("user", "What is 2+2?"),
    ]
    return ChatRequest(msgs, **kw)


def call(p: Provider, mode: str, r: ChatRequest, model: str) -> tuple[list[str], ProviderResult]:
    """Run one mode; returns (text deltas, final result)."""

    async def agen() -> list[Any]:
        try:
            return [x async for x in p.astream(r, model)]
        finally:
            await p.aclose()

    async def acomp() -> ProviderResult:
        try:
            return await p.acomplete(r, model)
        finally:
            await p.aclose()

    with p:
        if mode == "complete":
            return [], p.complete(r, model)
        if mode == "acomplete":
            return [], asyncio.run(acomp())
        items = list(p.stream(r, model)) if mode == "stream" else asyncio.run(agen())
    *rest, final = items
    deltas = [d for d in rest if isinstance(d, str)]
    assert len(deltas) == len(rest), "only text deltas before the end"
    assert isinstance(final, ProviderResult), "stream must end with one ProviderResult"
    return deltas, final


def fail(p: Provider, mode: str, r: ChatRequest, model: str) -> CostlineError:
    with pytest.raises(CostlineError) as info:
        call(p, mode, r, model)
    err = info.value
    assert err.provider == p.config.name
    assert err.model == model
    assert KEY not in str(err) and KEY not in repr(err)
    return err


def normal(wire: str, mode: str, text: str = "Four.", **kw: Any) -> s.Reply:
    streaming = mode in ("stream", "astream")
    if wire == "openai":
        if streaming:
            return s.openai_stream(text.split("|"), usage=kw.get("usage"))
        return s.openai_chat(text.replace("|", ""), usage=kw.get("usage"))
    if streaming:
        return s.anthropic_stream(text.split("|"), usage=kw.get("usage"))
    return s.anthropic_message(text.replace("|", ""), usage=kw.get("usage"))


# ---- happy paths ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES)
def test_answer_and_usage(scripted_server: ScriptedServer, wire: str, mode: str) -> None:
    usage = s.openai_usage(21, 3) if wire == "openai" else s.anthropic_usage(21, 3)
    scripted_server.enqueue(normal(wire, mode, "Two plus| two| is four.", usage=usage))
    deltas, res = call(provider(scripted_server, wire), mode, req(), MODEL[wire])
    assert res.text == "Two plus two is four."
    if mode in ("stream", "astream"):
        assert deltas == ["Two plus", " two", " is four."]
    assert res.usage == Usage(input_tokens=21, output_tokens=3)
    assert res.finish_reason in ("stop", "end_turn")
    assert res.model == MODEL[wire]


@pytest.mark.parametrize("mode", MODES)
def test_openai_usage_cached_and_reasoning_are_disjoint(
    scripted_server: ScriptedServer, mode: str
) -> None:
    usage = s.openai_usage(prompt=1000, completion=500, cached=600, reasoning=320)
    scripted_server.enqueue(normal("openai", mode, "ok", usage=usage))
    _, res = call(provider(scripted_server, "openai"), mode, req(), "o3-mini")
    assert res.usage == Usage(
        input_tokens=400, cached_input_tokens=600, output_tokens=180, reasoning_tokens=320
    )
    assert res.usage.prompt_tokens == 1000 and res.usage.completion_tokens == 500


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_usage_cache_read_and_write(scripted_server: ScriptedServer, mode: str) -> None:
    usage = s.anthropic_usage(input=12, output=40, cache_read=900, cache_write=300)
    scripted_server.enqueue(normal("anthropic", mode, "ok", usage=usage))
    _, res = call(provider(scripted_server, "anthropic"), mode, req(), MODEL["anthropic"])
    assert res.usage == Usage(
        input_tokens=12, cached_input_tokens=900, cache_write_tokens=300, output_tokens=40
    )


def test_deepseek_cache_hit_spelling(scripted_server: ScriptedServer) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
    }
    scripted_server.enqueue(s.openai_chat("ok", usage=usage))
    _, res = call(provider(scripted_server, "openai"), "complete", req(), "deepseek-chat")
    assert res.usage == Usage(input_tokens=36, cached_input_tokens=64, output_tokens=7)


@pytest.mark.parametrize("mode", MODES)
def test_openai_no_usage_reported_is_none(scripted_server: ScriptedServer, mode: str) -> None:
    if mode in ("stream", "astream"):
        scripted_server.enqueue(s.openai_stream(["a", "b"], usage=None))
    else:
        body = {
            "model": "m",
            "choices": [{"index": 0, "message": {"content": "ab"}, "finish_reason": "stop"}],
        }
        scripted_server.enqueue(s.json_reply(body))
    _, res = call(provider(scripted_server, "openai"), mode, req(), "m")
    assert res.text == "ab" and res.usage is None


# ---- what was sent ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_openai_request_body(scripted_server: ScriptedServer, mode: str) -> None:
    scripted_server.enqueue(normal("openai", mode))
    r = req(max_tokens=50, temperature=0.3)
    r.messages.append(Message("user", "again", name="bob"))
    call(provider(scripted_server, "openai"), mode, r, "gpt-4o-mini")
    sent = scripted_server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.json
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["messages"][-1] == {"role": "user", "content": "again", "name": "bob"}
    assert body["max_tokens"] == 50 and body["temperature"] == 0.3
    if mode in ("stream", "astream"):
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert "stream" not in body and "stream_options" not in body


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("o1-mini", "max_completion_tokens"),
        ("o3", "max_completion_tokens"),
        ("o4-mini", "max_completion_tokens"),
        ("gpt-5-nano", "max_completion_tokens"),
        ("gpt-4o", "max_tokens"),
        ("llama-3.1-8b-instant", "max_tokens"),
    ],
)
def test_openai_reasoning_families_use_max_completion_tokens(
    scripted_server: ScriptedServer, model: str, key: str
) -> None:
    call(provider(scripted_server, "openai"), "complete", req(max_tokens=64), model)
    body = scripted_server.requests[-1].json
    assert body[key] == 64
    other = {"max_tokens", "max_completion_tokens"} - {key}
    assert not other & body.keys()


def test_openai_without_key_sends_no_auth_header(scripted_server: ScriptedServer) -> None:
    call(provider(scripted_server, "openai", key=None), "complete", req(), "llama3")
    sent = scripted_server.requests[-1]
    assert "authorization" not in sent.headers
    assert "temperature" not in sent.json and "max_tokens" not in sent.json


@pytest.mark.parametrize("mode", MODES)
def test_anthropic_request_system_placement(scripted_server: ScriptedServer, mode: str) -> None:
    scripted_server.enqueue(normal("anthropic", mode))
    msgs = [
        Message("system", "Rule one."),
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("system", "Rule two."),
        Message("user", "q"),
    ]
    call(provider(scripted_server, "anthropic"), mode, req(messages=msgs), "claude-x")
    sent = scripted_server.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = sent.json
    assert body["system"] == "Rule one.\n\nRule two."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert all(m["role"] != "system" for m in body["messages"])
    assert body["max_tokens"] == 4096  # required by Anthropic: default when None (LiteLLM's)
    assert body.get("stream", False) is (mode in ("stream", "astream"))


def test_anthropic_no_system_field_without_system_messages(
    scripted_server: ScriptedServer,
) -> None:
    r = req(messages=[Message("user", "hi")], max_tokens=7)
    call(provider(scripted_server, "anthropic"), "complete", r, "claude-x")
    body = scripted_server.requests[-1].json
    assert "system" not in body and body["max_tokens"] == 7


# ---- faults -----------------------------------------------------------------------------
HTTP_FAULTS = [
    (s.error(401, "invalid x-api-key", type="authentication_error"), AuthError, 401),
    (s.error(403, "forbidden", type="permission_error"), AuthError, 403),
    (s.error(400, "temperature must be <= 2", type="invalid_request_error"), BadRequest, 400),
    (s.error(404, "model not found", type="not_found_error"), BadRequest, 404),
    (s.error(422, "unprocessable"), BadRequest, 422),
    (
        s.json_reply(
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens",
                    "code": "context_length_exceeded",
                }
            },
            400,
        ),
        ContextWindowExceeded,
        400,
    ),
    (
        s.error(
            400, "prompt is too long: 210000 tokens > 200000 maximum", type="invalid_request_error"
        ),
        ContextWindowExceeded,
        400,
    ),
    (s.error(500, "internal error"), ProviderServerError, 500),
    (s.error(503, "unavailable"), ProviderServerError, 503),
    (s.error(529, "Overloaded", type="overloaded_error"), ProviderServerError, 529),
    (s.rate_limited(retry_after="7"), RateLimited, 429),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize(("reply", "cls", "status"), HTTP_FAULTS)
def test_http_errors_map_to_error_tree(
    scripted_server: ScriptedServer,
    wire: str,
    mode: str,
    reply: s.Reply,
    cls: type[CostlineError],
    status: int,
) -> None:
    scripted_server.enqueue(reply)
    err = fail(provider(scripted_server, wire), mode, req(), MODEL[wire])
    assert type(err) is cls
    assert getattr(err, "status_code", None) == status
    assert f"HTTP {status}" in str(err)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (s.rate_limited(retry_after="2"), 2.0),
        (s.rate_limited(retry_after="0.5"), 0.5),
        (s.rate_limited(retry_after_ms="1500"), 1.5),
        (s.rate_limited(retry_after="30", retry_after_ms="250"), 0.25),
        (s.rate_limited(retry_after="soon"), None),
        (s.rate_limited(), None),
    ],
)
def test_rate_limited_retry_after(
    scripted_server: ScriptedServer, reply: s.Reply, expected: float | None
) -> None:
    scripted_server.enqueue(reply)
    err = fail(provider(scripted_server, "openai"), "complete", req(), "m")
    assert isinstance(err, RateLimited) and err.retry_after == expected


def test_rate_limited_retry_after_http_date(scripted_server: ScriptedServer) -> None:
    when = email.utils.formatdate(clock.timestamp() + 60, usegmt=True)
    scripted_server.enqueue(s.rate_limited(retry_after=when))
    err = fail(provider(scripted_server, "anthropic"), "stream", req(), "claude-x")
    assert isinstance(err, RateLimited) and err.retry_after is not None
    assert 50 <= err.retry_after <= 61


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES)
def test_slow_server_times_out(scripted_server: ScriptedServer, wire: str, mode: str) -> None:
    scripted_server.enqueue(s.delayed(normal(wire, mode), 2.0))
    err = fail(provider(scripted_server, wire), mode, req(timeout=0.2), MODEL[wire])
    assert type(err) is ProviderTimeout


def test_timeout_comes_from_request_then_config(scripted_server: ScriptedServer) -> None:
    p = provider(scripted_server, "openai", timeout_s=0.2)
    scripted_server.enqueue(s.delayed(s.openai_chat("late"), 1.0))
    assert type(fail(p, "complete", req(), "m")) is ProviderTimeout  # config's 0.2 s
    scripted_server.enqueue(s.delayed(s.openai_chat("late"), 0.5))
    _, res = call(
        provider(scripted_server, "openai", timeout_s=0.2), "complete", req(timeout=5.0), "m"
    )
    assert res.text == "late"  # the request's 5 s wins over the config's 0.2 s


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wire", WIRES)
def test_connection_reset(scripted_server: ScriptedServer, wire: str, mode: str) -> None:
    scripted_server.enqueue(s.reset())
    err = fail(provider(scripted_server, wire), mode, req(), MODEL[wire])
    assert type(err) is ProviderConnectionError


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused(mode: str) -> None:
    with ScriptedServer() as srv:
        url = srv.openai_url
    p = create(ProviderConfig("gone", "openai", url, KEY))
    err = fail(p, mode, req(), "m")
    assert type(err) is ProviderConnectionError


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize(
    "body", [b'{"choices": [', b"<html>502 Bad Gateway</html>", b'{"unexpected": 1}', b"[1, 2]"]
)
def test_malformed_body(scripted_server: ScriptedServer, wire: str, body: bytes) -> None:
    scripted_server.enqueue(s.raw(body), s.raw(body))
    for mode in ("complete", "acomplete"):
        err = fail(provider(scripted_server, wire), mode, req(), MODEL[wire])
        assert type(err) is MalformedResponse and err.status_code == 200


def stream_reply(wire: str, chunks: list[str], **kw: Any) -> s.Reply:
    return (s.openai_stream if wire == "openai" else s.anthropic_stream)(chunks, **kw)


@pytest.mark.parametrize("mode", ("stream", "astream"))
@pytest.mark.parametrize("wire", WIRES)
def test_stream_cut_midway_is_malformed(
    scripted_server: ScriptedServer, wire: str, mode: str
) -> None:
    reply = stream_reply(wire, ["one ", "two ", "three ", "four"])
    first_text = 2 if wire == "openai" else 3  # events before the first text delta
    scripted_server.enqueue(s.cut(reply, first_text + 2))
    p = provider(scripted_server, wire)
    seen: list[str] = []
    with pytest.raises(MalformedResponse) as info:
        it = p.stream(req(), MODEL[wire]) if mode == "stream" else None
        if it is not None:
            seen.extend(x for x in it if isinstance(x, str))
        else:

            async def run() -> None:
                async for x in p.astream(req(), MODEL[wire]):
                    if isinstance(x, str):
                        seen.append(x)

            asyncio.run(run())
    assert seen == ["one ", "two "]
    assert "stream ended after 2 chunks" in str(info.value)
    assert info.value.provider == p.config.name and info.value.status_code == 200


@pytest.mark.parametrize("mode", ("stream", "astream"))
@pytest.mark.parametrize("wire", WIRES)
def test_stream_cut_before_any_text_is_retryable(
    scripted_server: ScriptedServer, wire: str, mode: str
) -> None:
    scripted_server.enqueue(s.cut(stream_reply(wire, ["never"]), 1))
    err = fail(provider(scripted_server, wire), mode, req(), MODEL[wire])
    assert type(err) is ProviderConnectionError


@pytest.mark.parametrize("mode", ("stream", "astream"))
@pytest.mark.parametrize("wire", WIRES)
def test_stream_without_terminal_event_is_malformed(
    scripted_server: ScriptedServer, wire: str, mode: str
) -> None:
    if wire == "openai":
        reply = s.openai_stream(["a", "b", "c"], finish=None, done=False)
    else:
        reply = s.anthropic_stream(["a", "b", "c"], stop=False)
        assert reply.events is not None
        reply.events = reply.events[:-2]  # no message_delta, no message_stop
    scripted_server.enqueue(reply)
    err = fail(provider(scripted_server, wire), mode, req(), MODEL[wire])
    assert type(err) is MalformedResponse
    assert "stream ended after 3 chunks without" in str(err)


@pytest.mark.parametrize("wire", WIRES)
def test_stream_finished_but_missing_terminal_event_is_accepted(
    scripted_server: ScriptedServer, wire: str
) -> None:
    reply = (
        s.openai_stream(["a", "b"], done=False)
        if wire == "openai"
        else s.anthropic_stream(["a", "b"], stop=False)
    )
    scripted_server.enqueue(reply)
    deltas, res = call(provider(scripted_server, wire), "stream", req(), MODEL[wire])
    assert res.text == "ab" and res.finish_reason in ("stop", "end_turn")


@pytest.mark.parametrize("wire", WIRES)
def test_stream_bad_event_json_is_malformed(scripted_server: ScriptedServer, wire: str) -> None:
    reply = stream_reply(wire, ["a"])
    assert reply.events is not None
    reply.events.insert(-1, "data: {not json\n\n")
    scripted_server.enqueue(reply)
    err = fail(provider(scripted_server, wire), "stream", req(), MODEL[wire])
    assert type(err) is MalformedResponse and "bad stream event" in str(err)


@pytest.mark.parametrize("mode", ("stream", "astream"))
def test_anthropic_stream_error_event(scripted_server: ScriptedServer, mode: str) -> None:
    scripted_server.enqueue(
        s.anthropic_stream(["partial"], error={"type": "overloaded_error", "message": "Overloaded"})
    )
    err = fail(provider(scripted_server, "anthropic"), mode, req(), "claude-x")
    assert type(err) is ProviderServerError and err.status_code == 529
    assert "Overloaded" in str(err)


def test_openai_stream_error_event(scripted_server: ScriptedServer) -> None:
    reply = s.openai_stream(["x"])
    assert reply.events is not None
    reply.events.insert(2, 'data: {"error": {"message": "rate limited", "code": 429}}\n\n')
    scripted_server.enqueue(reply)
    err = fail(provider(scripted_server, "openai"), "stream", req(), "m")
    assert type(err) is RateLimited


@pytest.mark.parametrize("wire", WIRES)
def test_stream_request_answered_with_json(scripted_server: ScriptedServer, wire: str) -> None:
    """A server that ignores stream=true still gives text and a final result."""
    scripted_server.enqueue(normal(wire, "complete", "whole answer"))
    deltas, res = call(provider(scripted_server, wire), "stream", req(), MODEL[wire])
    assert deltas == ["whole answer"] and res.text == "whole answer" and res.usage is not None


@pytest.mark.parametrize("mode", ("stream", "astream"))
@pytest.mark.parametrize("wire", WIRES)
def test_stream_error_status(scripted_server: ScriptedServer, wire: str, mode: str) -> None:
    scripted_server.enqueue(s.rate_limited(retry_after_ms="300"))
    err = fail(provider(scripted_server, wire), mode, req(), MODEL[wire])
    assert isinstance(err, RateLimited) and err.retry_after == 0.3


# ---- the key stays secret ---------------------------------------------------------------
@pytest.mark.parametrize("wire", WIRES)
def test_key_never_in_errors_or_reprs(scripted_server: ScriptedServer, wire: str) -> None:
    scripted_server.enqueue(s.error(401, f"Incorrect API key provided: {KEY}."))
    p = provider(scripted_server, wire)
    err = fail(p, "complete", req(), MODEL[wire])
    assert "***" in str(err)
    assert KEY not in repr(p) and KEY not in repr(p.config) and KEY not in str(p.config)


# ---- clients ----------------------------------------------------------------------------
def test_injected_clients_are_used_and_not_closed(scripted_server: ScriptedServer) -> None:
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})

    async def run() -> None:
        async def hook(r: httpx.Request) -> None:
            seen.append("async " + str(r.url))

        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as ac:
            p = create(
                ProviderConfig("inj", "openai", scripted_server.openai_url),
                client=client,
                aclient=ac,
            )
            p.complete(req(), "m")
            await p.acomplete(req(), "m")
            await p.aclose()
            assert not ac.is_closed

    asyncio.run(run())
    assert not client.is_closed
    client.close()
    url = scripted_server.openai_url + "/chat/completions"
    assert seen == [url, "async " + url]
