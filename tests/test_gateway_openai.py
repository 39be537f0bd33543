"""The gateway in a subprocess, driven by the official `openai` SDK (sync, async, streaming).

Upstreams: the dryrun provider and the scripted fault server (as OpenAI). One gateway and
one scripted server serve the whole module.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import openai
import pytest

from tests.gateway_support import (
    ROOT,
    GatewayProcess,
    events,
    make_token,
    metric_sample,
    serve,
    upstream_env,
)
from tests.gateway_support import openai_client as client
from tests.servers.scripted import (
    Reply,
    ScriptedServer,
    error,
    json_reply,
    openai_stream,
    openai_usage,
    rate_limited,
    reset,
)

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    keys = {
        "main": {},
        "proj": {"project": "alpha"},
        "only": {"models": ("dryrun-small",)},
        "rl": {"rpm": 1},
        "spend": {"budget_usd": "0.00003"},
        "victim": {},
        "lim": {"rpm": 5, "tpm": 50_000},
    }
    env = upstream_env(scripted, UPSTREAM_KEY)
    env["COSTLINE_GATEWAY_MAX_BODY_MB"] = "0.01"  # 10,485 bytes: the 413 test stays small
    with serve(tmp_path_factory.mktemp("gw-openai"), keys, env) as proc:
        yield proc


NO_CACHE = {"x-costline-cache": "no-store"}


def test_cost_header_equals_the_logged_event_exactly(gw: GatewayProcess) -> None:
    raw = client(gw).chat.completions.with_raw_response.create(
        model="dryrun-small", messages=ASK, max_tokens=40, extra_headers=NO_CACHE
    )
    done = raw.parse()
    rid = raw.headers["x-costline-request-id"]
    assert raw.headers["x-costline-model"] == "dryrun-small"
    assert raw.headers["x-costline-provider"] == "dryrun"
    assert raw.headers["x-costline-cache"] == "miss"
    assert float(raw.headers["x-costline-overhead-ms"]) >= 0
    assert done.choices[0].message.content.startswith("[dryrun] Re: What is the capital")
    (ev,) = events(gw.home, 1, request_id=rid)
    assert ev.key == "main" and ev.status == "ok"
    assert Decimal(raw.headers["x-costline-cost-usd"]) == Decimal(ev.cost_picousd).scaleb(-12)
    # hand-computed: dryrun-small is $0.15 / $0.60 per 1M tokens
    u = done.usage
    want = Decimal(u.prompt_tokens) * Decimal("0.15") + Decimal(u.completion_tokens) * Decimal(
        "0.60"
    )
    assert Decimal(raw.headers["x-costline-cost-usd"]) == want / 10**6
    assert u.prompt_tokens == ev.input_tokens and u.completion_tokens == ev.output_tokens


async def test_streamed_and_plain_text_agree_async(gw: GatewayProcess) -> None:
    aclient = openai.AsyncOpenAI(base_url=gw.base_url, api_key=gw.keys["main"], max_retries=0)
    msgs = [{"role": "user", "content": "Stream me a story about llamas"}]
    plain = await aclient.chat.completions.create(
        model="dryrun-small", messages=msgs, extra_headers=NO_CACHE
    )
    stream = await aclient.chat.completions.create(
        model="dryrun-small",
        messages=msgs,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=NO_CACHE,
    )
    parts, last = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        last = chunk
    await aclient.close()
    assert len(parts) > 5  # really streamed, word by word
    assert "".join(parts) == plain.choices[0].message.content
    assert last is not None and last.usage is not None
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    extra = last.model_extra["costline"]  # type: ignore[index]
    (ev,) = events(gw.home, 1, request_id=extra["request_id"])
    assert Decimal(extra["cost_usd"]) == Decimal(ev.cost_picousd).scaleb(-12) > 0


def test_sync_stream_without_usage_option_has_no_usage_chunk(gw: GatewayProcess) -> None:
    chunks = list(
        client(gw).chat.completions.create(
            model="dryrun-small", messages=ASK, stream=True, extra_headers=NO_CACHE
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_errors_map_to_the_sdk_exception_types(gw: GatewayProcess) -> None:
    bad = openai.OpenAI(base_url=gw.base_url, api_key="sk-cl-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e401:
        bad.chat.completions.create(model="dryrun-small", messages=ASK)
    assert e401.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    with pytest.raises(openai.PermissionDeniedError, match="may not use model 'dryrun-large'"):
        client(gw, "only").chat.completions.create(model="dryrun-large", messages=ASK)
    with pytest.raises(openai.PermissionDeniedError, match="bound to project 'alpha'"):
        client(gw, "proj").chat.completions.create(
            model="dryrun-small", messages=ASK, extra_headers={"x-costline-project": "beta"}
        )
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        client(gw).chat.completions.create(model="no-such-model", messages=ASK)
    with pytest.raises(openai.BadRequestError, match="messages: must be a non-empty list"):
        client(gw).chat.completions.create(model="dryrun-small", messages=[])
    with pytest.raises(openai.BadRequestError, match=r"max_tokens: must be an integer >= 1"):
        client(gw).chat.completions.create(
            model="dryrun-small", messages=ASK, extra_body={"max_tokens": "many"}
        )
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\].role: 'robot'"):
        client(gw).chat.completions.create(
            model="dryrun-small", messages=[{"role": "robot", "content": "hi"}]
        )


def test_rate_limit_429_with_retry_after(gw: GatewayProcess) -> None:
    c = client(gw, "rl")
    c.chat.completions.create(model="dryrun-small", messages=ASK, extra_headers=NO_CACHE)
    with pytest.raises(openai.RateLimitError) as exc:
        c.chat.completions.create(model="dryrun-small", messages=ASK, extra_headers=NO_CACHE)
    retry = int(exc.value.response.headers["retry-after"])
    assert 1 <= retry <= 60  # one request per 60 s sliding window
    assert "rate limit 'key:rl:rpm' (key=rl)" in exc.value.message
    assert exc.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert exc.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= float(exc.value.response.headers["x-ratelimit-reset-requests"][:-1]) <= 60
    rid = exc.value.response.headers["x-costline-request-id"]
    (ev,) = events(gw.home, 1, request_id=rid)
    assert ev.status == "rate_limited" and ev.cost_picousd == 0 and ev.key == "rl"


def test_budget_exceeded_is_402_naming_the_budget(gw: GatewayProcess) -> None:
    c = client(gw, "spend")
    c.chat.completions.create(model="dryrun-small", messages=ASK, max_tokens=30)
    with pytest.raises(openai.APIStatusError) as exc:
        c.chat.completions.create(
            model="dryrun-small", messages=ASK, max_tokens=30, extra_headers=NO_CACHE
        )
    err = exc.value
    assert err.status_code == 402
    body = err.body
    assert body["type"] == "budget_exceeded" and body["budget"] == "key:spend"  # type: ignore[index]
    assert body["limit"] == "0.00003" and Decimal(body["spent"]) > 0  # type: ignore[index]
    assert body["resets_at"] and int(err.response.headers["retry-after"]) > 0  # type: ignore[index]
    assert err.response.headers["x-should-retry"] == "false"
    (ev,) = events(gw.home, 1, request_id=err.response.headers["x-costline-request-id"])
    assert ev.status == "blocked" and ev.error_type == "BudgetExceeded"


def test_upstream_failures_are_5xx_with_the_providers_message_never_a_key(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Each case on its own model: five failures in a row open a model's circuit."""
    c = client(gw)

    def fails(model: str) -> openai.InternalServerError:
        with pytest.raises(openai.InternalServerError) as exc:
            c.chat.completions.create(model=model, messages=ASK, extra_headers=NO_CACHE)
        assert UPSTREAM_KEY not in exc.value.response.text
        return exc.value

    scripted.enqueue(*[error(500, "upstream exploded", type="server_error")] * 3)
    e = fails("gpt-4o")
    assert e.status_code == 502 and "upstream exploded" in e.message
    scripted.enqueue(*[rate_limited(retry_after="0")] * 3)
    assert fails("gpt-4.1").status_code == 503
    scripted.enqueue(*[reset()] * 3)
    e = fails("gpt-4.1-mini")
    assert e.status_code == 502 and "connection failed" in e.message
    scripted.enqueue(error(401, f"Incorrect API key provided: {UPSTREAM_KEY}"))
    e = fails("gpt-4.1-nano")
    assert e.status_code == 502  # our provider key is wrong: not the client's 401
    scripted.enqueue(*[error(503, "overloaded", type="server_error")] * 3)
    fails("gpt-4o")  # six failures in a row: gpt-4o's circuit opens
    e = fails("gpt-4o")
    assert e.status_code == 503 and "circuit open" in e.message


def test_bad_inputs_get_their_status_and_nothing_is_logged(gw: GatewayProcess) -> None:
    from core import clock

    t_start = clock.now()
    h = {"authorization": f"Bearer {gw.keys['main']}", "content-type": "application/json"}
    url = gw.base_url + "/chat/completions"
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"model": "dryrun-small"}', 400, "messages: must be a non-empty list"),
        (b'{"model": 5, "messages": []}', 400, "model: must be a non-empty string"),
        (
            b'{"model": "dryrun-small", "messages": [{"role": "user", "content": 7}]}',
            400,
            "messages[0].content: must be a string",
        ),
        (
            b'{"model": "dryrun-small", "messages": [], "x": "' + b"a" * 20_000 + b'"}',
            413,
            "over the gateway's limit",
        ),
    ]
    ids = []
    for body, status, text in cases:
        r = httpx.post(url, content=body, headers=h)
        assert r.status_code == status, (body[:40], r.text)
        assert text in r.json()["error"]["message"]
        ids.append(r.headers["x-costline-request-id"])
    r = httpx.post(url, content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 401 and "no API key" in r.json()["error"]["message"]
    t_end = clock.now()
    time.sleep(1.2)  # past the journal's idle flush (0.2 s: COSTLINE_LOG_FLUSH_S of test gateways)
    after = events(gw.home)
    assert not {e.request_id for e in after} & set(ids)
    assert not [e for e in after if t_start <= e.ts <= t_end]  # nothing else was logged


def test_tool_calls_pass_through_both_ways(gw: GatewayProcess, scripted: ScriptedServer) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    answer = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ],
        "usage": openai_usage(50, 12),
    }
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    scripted.enqueue(json_reply(answer))
    done = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=ASK, tools=tools, tool_choice="auto", seed=7
    )
    sent = scripted.requests[-1].json
    assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["seed"] == 7
    tc = done.choices[0].message.tool_calls
    assert tc and tc[0].function.name == "weather" and tc[0].id == "call_1"
    assert done.choices[0].finish_reason == "tool_calls" and done.usage.prompt_tokens == 50
    # a tool result goes back upstream verbatim; the tool call arrives streamed in pieces
    pieces = [
        {
            "index": 0,
            "id": "call_2",
            "type": "function",
            "function": {"name": "weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": '"Rome"}'}},
    ]
    deltas = [{"choices": [{"index": 0, "delta": {"tool_calls": [p]}}]} for p in pieces]
    events_ = [f"data: {json.dumps(d)}\n\n" for d in deltas]
    events_ += [
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n',
        'data: {"choices":[],"usage":{"prompt_tokens":60,"completion_tokens":9}}\n\n',
        "data: [DONE]\n\n",
    ]
    from tests.servers.scripted import Reply

    scripted.enqueue(Reply(content_type="text/event-stream", events=events_))
    follow = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=follow, tools=tools, stream=True
    )
    calls = [
        c.choices[0].delta.tool_calls for c in stream if c.choices and c.choices[0].delta.tool_calls
    ]
    sent = scripted.requests[-1].json
    assert sent["messages"][1]["tool_calls"] == [call]
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert calls and calls[0][0].function.arguments == '{"city": "Rome"}'
    assert calls[0][0].id == "call_2"


def _logprobs(token: str, lp: float) -> dict[str, object]:
    top = [{"token": token, "logprob": lp, "bytes": list(token.encode())}]
    return {"content": [{**top[0], "top_logprobs": top}], "refusal": None}


def test_logprobs_reach_the_caller_streamed_and_plain(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """``logprobs: true``: each streamed chunk carries the upstream's logprobs of its tokens,
    and a plain answer its choice's, as the upstream sent them."""
    words, lps = ["Paris", " is", " the capital"], [-0.01, -0.25, -1.5]
    sent = [_logprobs(w, lp) for w, lp in zip(words, lps, strict=True)]
    scripted.enqueue(openai_stream(words, usage=openai_usage(14, 3), logprobs=sent))
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=ASK, stream=True, logprobs=True, top_logprobs=1
    )
    texts = [c for c in stream if c.choices and c.choices[0].delta.content]
    assert scripted.requests[-1].json["logprobs"] is True  # asked of the upstream
    assert [c.choices[0].delta.content for c in texts] == words
    got = [c.choices[0].logprobs for c in texts]
    assert all(g is not None and g.content for g in got), got
    assert [(g.content[0].token, g.content[0].logprob) for g in got] == list(  # type: ignore[union-attr]
        zip(words, lps, strict=True)
    )
    assert got[1].content[0].top_logprobs[0].token == " is"  # type: ignore[union-attr]
    plain = {
        "id": "chatcmpl-lp",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris"},
                "logprobs": sent[0],
                "finish_reason": "stop",
            }
        ],
        "usage": openai_usage(14, 1),
    }
    scripted.enqueue(json_reply(plain))
    done = client(gw).chat.completions.create(model="gpt-4o-mini", messages=ASK, logprobs=True)
    lp = done.choices[0].logprobs
    assert lp is not None and lp.content and lp.content[0].token == "Paris"
    assert lp.content[0].logprob == -0.01


def test_the_user_field_reaches_the_upstream_and_still_allows_the_cache(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """OpenAI's ``user`` (its abuse monitoring's end-user id) is passed through as the README
    says; it names who asked, not what the answer is, so the response cache still applies."""
    c = client(gw)
    mine = [{"role": "user", "content": "Who is asking? (user field)"}]
    c.chat.completions.create(model="gpt-4o-mini", messages=mine, user="end-user-42")
    assert scripted.requests[-1].json["user"] == "end-user-42"
    ask = [{"role": "user", "content": "A cached question, asked by a named end user"}]
    first = c.chat.completions.with_raw_response.create(
        model="dryrun-small", messages=ask, user="end-user-7"
    )
    again = c.chat.completions.with_raw_response.create(
        model="dryrun-small", messages=ask, user="end-user-7"
    )
    assert (first.headers["x-costline-cache"], again.headers["x-costline-cache"]) == (
        "miss",
        "hit",
    )
    (ev,) = events(gw.home, 1, request_id=first.headers["x-costline-request-id"])
    assert ev.user == "end-user-7"


def test_an_upstream_error_in_a_200_body_is_that_error_plain_as_streamed(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """OpenRouter, vLLM and other OpenAI-compatible servers may answer an error as a 200 body
    ``{"error": {...}}``: a plain call gets the status and message the error names, as a
    stream does (it was a 502 'unexpected response shape (KeyError('choices'))')."""
    too_long = "This model's maximum context length is 8192 tokens; you asked for 9000"
    scripted.enqueue(json_reply({"error": {"message": too_long, "code": 400}}))
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw).chat.completions.create(model="gpt-4o-mini", messages=ASK)
    assert exc.value.status_code == 400 and "maximum context length" in str(exc.value)
    assert exc.value.code == "context_length_exceeded"


def test_a_streamed_refusal_reaches_the_caller_as_refusal_deltas(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Structured outputs: a model that declines streams ``delta.refusal``, not content; the
    caller must get those deltas (the SDK's stream helpers read them), not an empty answer."""

    def data(delta: dict[str, object], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return "data: " + json.dumps({"id": "c", "model": "gpt-4o-mini", "choices": [choice]})

    parts = ["I'm sorry, ", "I can't help with that."]
    events_ = [data({"role": "assistant", "content": None, "refusal": ""})]
    events_ += [data({"refusal": p}) for p in parts] + [data({}, "stop"), "data: [DONE]"]
    scripted.enqueue(Reply(content_type="text/event-stream", events=[e + "\n\n" for e in events_]))
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    chunks = list(stream)
    got = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.refusal or "" for d in got) == "".join(parts)
    assert not "".join(d.content or "" for d in got)  # a refusal, not content
    (ev,) = events(gw.home, 1, request_id=chunks[-1].model_extra["costline"]["request_id"])  # type: ignore[index]
    assert ev.output_tokens > 1  # the refusal's tokens were billed: counted, not 0


def test_client_disconnect_mid_stream_is_logged_flagged_and_upstream_closed(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    words = [f"word{i} " for i in range(40)]
    reply = openai_stream(words, usage=openai_usage(20, 40))
    from dataclasses import replace

    scripted.enqueue(replace(reply, event_delay=0.1))
    with httpx.stream(
        "POST",
        gw.base_url + "/chat/completions",
        json={"model": "gpt-4o-mini", "messages": ASK, "stream": True},
        headers={"authorization": f"Bearer {gw.keys['main']}"},
        timeout=30,
    ) as r:
        rid = r.headers["x-costline-request-id"]
        seen = 0
        for line in r.iter_lines():
            seen += line.count("word")
            if seen >= 3:
                break  # leave mid-stream: closes the connection
    (ev,) = events(gw.home, 1, request_id=rid)
    assert ev.status == "error" and ev.error_type == "ClientDisconnected"
    assert ev.usage_estimated and ev.output_tokens >= 3 and ev.input_tokens > 0
    assert ev.cost_picousd > 0 and not ev.unpriced  # estimated, never $0
    deadline = time.monotonic() + 5
    while not scripted.aborted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scripted.aborted and scripted.aborted[-1][1] < len(words)  # upstream was cut


def test_revoked_key_is_refused_within_5_seconds(gw: GatewayProcess) -> None:
    c = client(gw, "victim")
    c.chat.completions.create(model="dryrun-small", messages=ASK)
    env = {**os.environ, "COSTLINE_HOME": str(gw.home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "keys", "revoke", "victim"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    t0 = time.monotonic()
    assert "Revoked key 'victim'" in out.stdout
    while True:
        try:
            c.chat.completions.create(model="dryrun-small", messages=ASK)
        except openai.AuthenticationError as exc:
            assert "was revoked" in exc.message
            break
        assert time.monotonic() - t0 < 5, "a revoked key was still accepted after 5 s"
        time.sleep(0.1)


def test_rate_limit_headers_on_every_answer(gw: GatewayProcess) -> None:
    c = client(gw, "lim")  # 5 requests and 50,000 tokens a minute
    raw = c.chat.completions.with_raw_response.create(
        model="dryrun-small", messages=ASK, max_tokens=20, extra_headers=NO_CACHE
    )
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "5"
    assert h["x-ratelimit-remaining-requests"] == "4"
    assert 0 < float(h["x-ratelimit-reset-requests"].removesuffix("s")) <= 60
    assert h["x-ratelimit-limit-tokens"] == "50000"
    left = int(h["x-ratelimit-remaining-tokens"])
    assert 0 < left < 50_000
    assert 0 < float(h["x-ratelimit-reset-tokens"].removesuffix("s")) <= 60
    with httpx.stream(  # a stream's headers carry them too (after its admission)
        "POST",
        gw.base_url + "/chat/completions",
        json={"model": "dryrun-small", "messages": ASK, "stream": True, "max_tokens": 20},
        headers={"authorization": f"Bearer {gw.keys['lim']}", **NO_CACHE},
    ) as r:
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining-requests"] == "3"
        assert int(r.headers["x-ratelimit-remaining-tokens"]) < left
        r.read()
    plain = client(gw).chat.completions.with_raw_response.create(
        model="dryrun-small", messages=ASK, extra_headers=NO_CACHE
    )
    assert not [k for k in plain.headers if k.startswith("x-ratelimit")]  # no limits, none


def test_a_key_made_and_revoked_over_the_gateways_own_api(gw: GatewayProcess) -> None:
    token = make_token(gw.home, "ops", "engineer")
    api = httpx.Client(base_url=gw.url + "/api/v1", headers={"authorization": f"Bearer {token}"})
    r = api.post("/keys", json={"name": "from-api", "rpm": 100})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    c = openai.OpenAI(base_url=gw.base_url, api_key=secret, max_retries=0)
    t0 = time.monotonic()
    while True:  # a new key works from the gateway's next control-plane poll
        try:
            done = c.chat.completions.with_raw_response.create(model="dryrun-small", messages=ASK)
            break
        except openai.AuthenticationError:
            assert time.monotonic() - t0 < 5, "a new key was not accepted within 5 s"
            time.sleep(0.1)
    assert done.headers["x-ratelimit-limit-requests"] == "100"
    etag = api.get("/keys/from-api").headers["etag"]
    assert api.delete("/keys/from-api", headers={"If-Match": etag}).status_code == 204
    t0 = time.monotonic()
    while True:
        try:
            c.chat.completions.create(model="dryrun-small", messages=ASK)
        except openai.AuthenticationError as exc:
            assert "was revoked" in exc.message
            break
        assert time.monotonic() - t0 < 5, "a revoked key was still accepted after 5 s"
        time.sleep(0.1)
    listed = api.get("/keys").json()["data"]
    assert {k["name"]: k["status"] for k in listed}["from-api"] == "revoked"
    api.close()


def test_a_task_header_picks_the_model_and_metadata_headers_are_logged(
    gw: GatewayProcess,
) -> None:
    from core.control import SYSTEM, ControlPlane, RoutingPolicy

    old = os.environ["COSTLINE_HOME"]
    os.environ["COSTLINE_HOME"] = str(gw.home)
    try:
        with ControlPlane() as plane:
            plane.upsert_policy(RoutingPolicy(task="triage", primary_model="dryrun-large"), SYSTEM)
    finally:
        os.environ["COSTLINE_HOME"] = old
    h = {
        "authorization": f"Bearer {gw.keys['main']}",
        "x-costline-task": "triage",
        "x-costline-org": "acme",
        "x-costline-user": "ann",
        "x-costline-tags": "nightly, batch",
        "x-costline-criticality": "low",
        **NO_CACHE,
    }
    body = {"messages": ASK, "max_tokens": 20}  # no model: the task's policy picks
    deadline = time.monotonic() + 5
    while True:  # the policy reaches the gateway at its next control-plane poll
        r = httpx.post(gw.base_url + "/chat/completions", json=body, headers=h)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert r.headers["x-costline-model"] == "dryrun-large"
    assert r.headers["x-costline-route-reason"]
    (ev,) = events(gw.home, 1, request_id=r.headers["x-costline-request-id"])
    assert (ev.task, ev.org, ev.user, ev.key) == ("triage", "acme", "ann", "main")
    assert ev.tags == ("nightly", "batch") and ev.criticality == "low"
    r = httpx.post(
        gw.base_url + "/chat/completions",
        json=body,
        headers={**h, "x-costline-criticality": "urgent"},
    )
    assert r.status_code == 400 and "x-costline-criticality" in r.json()["error"]["message"]


def test_embeddings_models_metrics_and_health(gw: GatewayProcess) -> None:
    c = client(gw)
    chat = dict(endpoint="chat", key="main", model="dryrun-small", provider="dryrun")
    before = gw.metrics()
    raw = c.embeddings.with_raw_response.create(model="dryrun-embed", input=["alpha", "beta"])
    emb = raw.parse()  # the SDK asks for base64 and decodes it
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 256
    again = c.embeddings.create(model="dryrun-embed", input="alpha", encoding_format="float")
    assert again.data[0].embedding == pytest.approx(emb.data[0].embedding, rel=1e-6)
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert ev.input_tokens == emb.usage.prompt_tokens == 2 and ev.output_tokens == 0
    assert Decimal(raw.headers["x-costline-cost-usd"]) == Decimal(ev.cost_picousd).scaleb(-12)
    assert ev.cost_picousd == 2 * 20_000  # $0.02 per 1M tokens = 20,000 pUSD a token
    ids = [m.id for m in client(gw, "only").models.list()]
    assert ids == ["dryrun-small"]
    assert "gpt-4o-mini" in [m.id for m in c.models.list()]
    assert httpx.get(gw.url + "/health/live").json() == {"status": "ok"}
    ready = httpx.get(gw.url + "/health/ready").json()
    assert ready["checks"]["control_plane"] == "ok"
    assert c.chat.completions.create(model="dryrun-small", messages=ASK).choices  # type: ignore[arg-type]
    text = gw.metrics()
    requests, ok = "costline_gateway_requests_total", chat | {"status": "200"}
    assert metric_sample(text, requests, **ok) - metric_sample(before, requests, **ok) == 1
    assert "costline_gateway_overhead_seconds_bucket" in text
    assert 'costline_budget_utilisation{budget="key:spend"}' in text


def test_async_concurrent_calls_each_logged_once(gw: GatewayProcess) -> None:
    async def main() -> list[str]:
        ac = openai.AsyncOpenAI(base_url=gw.base_url, api_key=gw.keys["main"], max_retries=0)

        async def one(i: int) -> str:
            r = await ac.chat.completions.with_raw_response.create(
                model="dryrun-small", messages=[{"role": "user", "content": f"q{i}"}]
            )
            return r.headers["x-costline-request-id"]

        try:
            return await asyncio.gather(*(one(i) for i in range(20)))
        finally:
            await ac.close()

    ids = asyncio.run(main())
    deadline = time.monotonic() + 15
    while True:
        got = [e.request_id for e in events(gw.home) if e.request_id in set(ids)]
        if len(got) >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(got) == sorted(ids)  # each exactly once


def test_embeddings_user_is_checked_as_chat_checks_it(gw: GatewayProcess) -> None:
    """A ``user`` that is not a string is a 400 naming it on embeddings too (it was ignored,
    the call logged without its user); a string one names the call's user."""
    auth = {"authorization": f"Bearer {gw.keys['main']}"}
    for path, body in (
        ("/embeddings", {"model": "dryrun-embed", "input": "alpha"}),
        (
            "/chat/completions",
            {"model": "dryrun-small", "messages": [{"role": "user", "content": "hi"}]},
        ),
    ):
        r = httpx.post(gw.base_url + path, json={**body, "user": 7}, headers=auth)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["param"] == "user" and "must be a string" in r.text
    ok = httpx.post(
        gw.base_url + "/embeddings",
        json={"model": "dryrun-embed", "input": "alpha", "user": "ann"},
        headers=auth,
    )
    assert ok.status_code == 200
    (ev,) = events(gw.home, 1, request_id=ok.headers["x-costline-request-id"])
    assert ev.user == "ann"
