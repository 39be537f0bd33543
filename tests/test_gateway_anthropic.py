"""The gateway's Anthropic face (/v1/messages, its SSE events, count_tokens) driven by the
official `anthropic` SDK; upstreams: dryrun and the scripted server speaking Anthropic."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import anthropic
import httpx
import pytest

from core.control import SYSTEM, RoutingPolicy
from tests.gateway_support import (
    GatewayProcess,
    control_plane,
    events,
    openai_client,
    serve,
    upstream_env,
)
from tests.gateway_support import anthropic_client as client
from tests.servers.scripted import (
    Reply,
    ScriptedServer,
    anthropic_message,
    anthropic_stream,
    anthropic_usage,
    error,
    json_reply,
    openai_chat,
    openai_usage,
)

ASK = [{"role": "user", "content": "Name three rivers."}]
NO_CACHE = {"x-costline-cache": "no-store"}
CLAUDE = "claude-3-5-haiku-20241022"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    keys = {"main": {}, "only": {"models": ("dryrun-small",)}, "ann": {"user": "ann"}}
    env = upstream_env(scripted, "sk-openai-upstream-xyz", "sk-ant-upstream-xyz-123456")
    with serve(tmp_path_factory.mktemp("gw-anthropic"), keys, env) as proc:
        yield proc


def test_messages_plain_and_streamed_agree_and_cost_is_logged(gw: GatewayProcess) -> None:
    c = client(gw)
    raw = c.messages.with_raw_response.create(
        model="dryrun-small",
        max_tokens=60,
        messages=ASK,
        system="Be brief.",
        extra_headers=NO_CACHE,
    )
    msg = raw.parse()
    text = msg.content[0].text
    assert text.startswith("[dryrun] Re: Name three rivers.")
    assert msg.stop_reason in ("end_turn", "max_tokens") and msg.usage.output_tokens > 0
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert Decimal(raw.headers["x-costline-cost-usd"]) == Decimal(ev.cost_picousd).scaleb(-12)
    assert ev.input_tokens == msg.usage.input_tokens and ev.key == "main"
    with c.messages.stream(
        model="dryrun-small",
        max_tokens=60,
        messages=ASK,
        system="Be brief.",
        extra_headers=NO_CACHE,
    ) as stream:
        parts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(parts) > 3 and "".join(parts) == text
    assert final.usage.output_tokens == msg.usage.output_tokens


def test_anthropic_upstream_stream_through_the_gateway(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    scripted.enqueue(
        anthropic_stream(["Nile, ", "Amazon, ", "Danube."], usage=anthropic_usage(30, 7))
    )
    with client(gw).messages.stream(
        model="claude-3-5-haiku", max_tokens=50, messages=ASK, extra_headers=NO_CACHE
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Nile, Amazon, Danube."
    sent = scripted.requests[-1]
    assert sent.path == "/v1/messages" and sent.json["stream"] is True
    assert sent.headers["x-api-key"] == "sk-ant-upstream-xyz-123456"
    assert final.usage.output_tokens == 7 and final.usage.input_tokens == 30
    rid = final.model_extra.get("costline", {}).get("request_id") if final.model_extra else None
    got = events(gw.home, 1, provider="anthropic", output_tokens=7)
    assert got and got[-1].input_tokens == 30 and got[-1].cost_picousd > 0
    assert rid is None or got[-1].request_id == rid


def test_errors_map_to_anthropic_exception_types(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    bad = anthropic.Anthropic(base_url=gw.url, api_key="nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e401:
        bad.messages.create(model="dryrun-small", max_tokens=10, messages=ASK)
    assert e401.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gw, "only").messages.create(model="dryrun-large", max_tokens=10, messages=ASK)
    with pytest.raises(anthropic.NotFoundError):
        client(gw).messages.create(model="claude-nonexistent-9", max_tokens=10, messages=ASK)
    with pytest.raises(anthropic.BadRequestError, match=r"content\[0\].source: an image source"):
        client(gw).messages.create(
            model="dryrun-small",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "image", "source": {}}]}],  # type: ignore[list-item]
        )
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: required"):
        client(gw).post(
            "/v1/messages", body={"model": "dryrun-small", "messages": ASK}, cast_to=object
        )
    scripted.enqueue(*[error(529, "Overloaded", type="overloaded_error")] * 3)
    with pytest.raises(anthropic.OverloadedError) as e529:  # passed through: the SDK retries it
        client(gw).messages.create(
            model="claude-3-5-haiku", max_tokens=10, messages=ASK, extra_headers=NO_CACHE
        )
    assert e529.value.status_code == 529 and "Overloaded" in e529.value.message
    assert e529.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_count_tokens_matches_the_logged_input(gw: GatewayProcess) -> None:
    c = client(gw)
    counted = c.messages.count_tokens(model="dryrun-small", messages=ASK, system="Be brief.")
    raw = c.messages.with_raw_response.create(
        model="dryrun-small",
        max_tokens=20,
        messages=ASK,
        system="Be brief.",
        extra_headers=NO_CACHE,
    )
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert counted.input_tokens == ev.input_tokens > 0


WEATHER = {
    "name": "weather",
    "description": "Weather by city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"


def _tool_answer(call_id: str, city: str, finish: str = "tool_calls") -> Reply:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "weather", "arguments": json.dumps({"city": city})},
    }
    return json_reply(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Let me look.",
                        "tool_calls": [call],
                    },
                    "finish_reason": finish,
                }
            ],
            "usage": openai_usage(80, 15),
        }
    )


def _tool_stream(call_id: str, city: str, finish: str = "tool_calls") -> Reply:
    pieces = [
        {"index": 0, "id": call_id, "type": "function", "function": {"name": "weather"}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 0, "function": {"arguments": json.dumps(city) + "}"}},
    ]
    chunks = [{"choices": [{"index": 0, "delta": {"content": "Checking."}}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"tool_calls": [p]}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": openai_usage(80, 15)})
    events_ = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return Reply(content_type="text/event-stream", events=events_)


def test_tools_images_and_tool_results_translate_for_openai_upstreams(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Anthropic tool use against an OpenAI-compatible model: tools, tool_use, tool_result and
    image blocks go upstream as OpenAI fields; tool_calls come back as tool_use blocks."""
    scripted.enqueue(_tool_answer("call_9", "Oslo"))
    msg = client(gw).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "weather"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    use = msg.content[1]
    assert use.id == "call_9" and use.name == "weather" and use.input == {"city": "Oslo"}  # type: ignore[union-attr]
    sent = scripted.requests[-1].json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather by city",
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    # the next turn: the tool_use goes back as tool_calls, the result as a tool message,
    # the picture as an image_url part
    scripted.enqueue(_tool_stream("call_10", "Bergen"))
    follow = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Let me look."}, use.model_dump()],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_9", "content": "sunny, 21 C"},
                {"type": "text", "text": "And this picture?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                },
            ],
        },
    ]
    with client(gw).messages.stream(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],
        messages=follow,  # type: ignore[arg-type, list-item]
    ) as stream:
        final = stream.get_final_message()
    sent = scripted.requests[-1].json["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Let me look."
    assert sent[1]["tool_calls"] == [
        {
            "id": "call_9",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
        }
    ]
    assert sent[2] == {"role": "tool", "content": "sunny, 21 C", "tool_call_id": "call_9"}
    assert sent[3]["role"] == "user"
    assert sent[3]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + PIXEL},
    }
    tools = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert tools and tools[0].input == {"city": "Bergen"} and tools[0].id == "call_10"  # type: ignore[union-attr]
    got = events(gw.home, 1, output_tokens=15, model="gpt-4o-mini")
    assert got and got[-1].input_tokens + got[-1].cached_input_tokens == 80


def test_tool_calls_are_stop_reason_tool_use_whatever_finish_the_server_gave(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Ollama and llama.cpp end an answer with tool calls as ``finish_reason: stop``: the
    Anthropic answer that carries tool_use blocks still says ``stop_reason: tool_use``
    (agent loops run the tools on it), plain and streamed."""
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    scripted.enqueue(_tool_answer("call_s1", "Oslo", finish="stop"))
    msg = client(gw).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=ask,  # type: ignore[arg-type]
    )
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.stop_reason == "tool_use"
    scripted.enqueue(_tool_stream("call_s2", "Oslo", finish="stop"))
    with client(gw).messages.stream(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=ask,  # type: ignore[arg-type]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[-1].type == "tool_use" and final.stop_reason == "tool_use"


def test_what_cannot_be_translated_is_a_400_naming_it(gw: GatewayProcess) -> None:
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
    with pytest.raises(anthropic.BadRequestError, match="type 'document' are not supported"):
        client(gw).messages.create(
            model="gpt-4o-mini",
            max_tokens=10,
            messages=[{"role": "user", "content": [doc]}],  # type: ignore[list-item]
        )
    with pytest.raises(anthropic.BadRequestError, match="server tool 'web_search_20250305'"):
        client(gw).messages.create(
            model="gpt-4o-mini",
            max_tokens=10,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
            messages=ASK,
        )


def test_a_refusal_keeps_its_stop_reason_on_both_wires(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Claude's ``stop_reason: refusal`` reaches Anthropic SDK callers as itself (it was
    turned into ``end_turn``), streamed or not, and OpenAI SDK callers as ``content_filter``;
    an OpenAI upstream's ``content_filter`` is a ``refusal`` on the Anthropic wire."""
    no = "I can't help with that."
    scripted.enqueue(anthropic_message(no, stop="refusal"))
    msg = client(gw).messages.create(
        model=CLAUDE, max_tokens=50, messages=ASK, extra_headers=NO_CACHE
    )
    assert (msg.content[0].text, msg.stop_reason) == (no, "refusal")
    scripted.enqueue(anthropic_stream([no], stop_reason="refusal"))
    ask = [{"role": "user", "content": "Name three rivers, streamed."}]
    with client(gw).messages.stream(
        model=CLAUDE, max_tokens=50, messages=ask, extra_headers=NO_CACHE
    ) as s:
        assert s.get_final_message().stop_reason == "refusal"
    scripted.enqueue(anthropic_message(no, stop="refusal"))
    oai = openai_client(gw).chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "Name three lakes."}],
        extra_headers=NO_CACHE,
    )
    assert oai.choices[0].finish_reason == "content_filter"
    scripted.enqueue(openai_chat("", finish="content_filter"))
    filtered = client(gw).messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        messages=[{"role": "user", "content": "Hm?"}],
        extra_headers=NO_CACHE,
    )
    assert filtered.stop_reason == "refusal"


def test_a_task_routed_stream_names_the_model_that_answers(gw: GatewayProcess) -> None:
    """No model in the request, the task's policy picks: every streamed chunk (OpenAI) and
    the stream's message (Anthropic) name the model that answered, as a plain answer does,
    not the task ('task:<name>')."""
    with control_plane(gw.home) as plane:
        plane.upsert_policy(RoutingPolicy(task="digest", primary_model="dryrun-small"), SYSTEM)
    task = {"x-costline-task": "digest", **NO_CACHE}
    body = {"messages": ASK, "max_tokens": 20}
    deadline = time.monotonic() + 10
    while True:  # the policy reaches the gateway at its next control-plane poll
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {gw.keys['main']}", **task},
        )
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200 and r.json()["model"] == "dryrun-small", r.text
    chunks = list(
        openai_client(gw).chat.completions.create(
            model=None,  # type: ignore[arg-type]
            messages=ASK,  # type: ignore[arg-type]
            max_tokens=20,
            stream=True,
            extra_headers=task,
        )
    )
    assert {c.model for c in chunks} == {"dryrun-small"}
    with client(gw).messages.stream(
        model=None,  # type: ignore[arg-type]
        max_tokens=20,
        messages=ASK,  # type: ignore[arg-type]
        extra_headers=task,
    ) as s:
        assert s.get_final_message().model == "dryrun-small"


def test_metadata_user_id_reaches_the_upstream_and_names_the_user(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """metadata.user_id is sent on (Anthropic: as metadata; OpenAI-compatible: as ``user``)
    and attributes the call, unless the key is bound to a user (no 403: clients send one)."""
    who = {"user_id": "u-7f3a"}
    scripted.enqueue(anthropic_message("Nile."))
    raw = client(gw).messages.with_raw_response.create(
        model=CLAUDE, max_tokens=20, messages=ASK, metadata=who, extra_headers=NO_CACHE
    )
    assert scripted.requests[-1].json["metadata"] == who
    rid = raw.headers["x-costline-request-id"]
    (ev,) = events(gw.home, 1, request_id=rid)
    assert ev.user == "u-7f3a"
    scripted.enqueue(openai_chat("Nile."))
    client(gw).messages.create(
        model="gpt-4o-mini", max_tokens=20, messages=ASK, metadata=who, extra_headers=NO_CACHE
    )
    sent = scripted.requests[-1].json
    assert sent["user"] == "u-7f3a" and "metadata" not in sent
    # the OpenAI wire's user reaches an Anthropic upstream the same way
    scripted.enqueue(anthropic_message("Nile."))
    openai_client(gw).chat.completions.create(
        model=CLAUDE, max_tokens=20, messages=ASK, user="u-7f3a", extra_headers=NO_CACHE
    )
    assert scripted.requests[-1].json["metadata"] == who
    # a key bound to a user keeps it (Claude Code sends an opaque user_id on every call)
    scripted.enqueue(anthropic_message("Nile."))
    raw = client(gw, "ann").messages.with_raw_response.create(
        model=CLAUDE, max_tokens=10, messages=ASK, metadata=who, extra_headers=NO_CACHE
    )
    assert scripted.requests[-1].json["metadata"] == who
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert ev.user == "ann" and ev.key == "ann"
    with pytest.raises(anthropic.BadRequestError, match="metadata.user_id: must be a string"):
        client(gw).messages.create(
            model="dryrun-small",
            max_tokens=10,
            messages=ASK,
            metadata={"user_id": 7},  # type: ignore[typeddict-item]
        )


def test_openai_metadata_sends_anthropic_only_the_user_id(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """OpenAI's metadata (any key-value pairs) is not Anthropic's (user_id only, others a
    400 there): an Anthropic upstream gets the user alone, not the other pairs."""
    for meta, user, want in (
        ({"trace": "t-1"}, "u-1", {"user_id": "u-1"}),
        ({"trace": "t-1", "user_id": "m-2"}, None, {"user_id": "m-2"}),
        ({"trace": "t-1"}, None, None),
    ):
        scripted.enqueue(anthropic_message("Nile."))
        extra: dict[str, object] = (
            {"metadata": meta} if user is None else {"metadata": meta, "user": user}
        )
        openai_client(gw).chat.completions.create(
            model=CLAUDE, max_tokens=20, messages=ASK, extra_body=extra, extra_headers=NO_CACHE
        )
        assert scripted.requests[-1].json.get("metadata") == want, meta
