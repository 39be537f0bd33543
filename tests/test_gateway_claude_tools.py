"""Tool calling (and images) with a Claude model behind the gateway, over real HTTP: the
official `anthropic` and `openai` SDKs as clients, the scripted server as the Anthropic
upstream (it answers with tool_use blocks and streams tool events as Claude does, and refuses
with a 400 what Anthropic's API refuses: tools without an object schema, a tool_result that
answers no tool_use of the turn before, a tool_use left without its result, ...)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway_support import (
    GatewayProcess,
    anthropic_client,
    events,
    openai_client,
    serve,
    upstream_env,
)
from tests.servers.scripted import (
    ScriptedServer,
    anthropic_message,
    anthropic_stream,
    anthropic_usage,
    tool_use,
)

CLAUDE = "claude-3-5-haiku"
NO_CACHE = {"x-costline-cache": "no-store"}
WEATHER = {
    "name": "weather",
    "description": "Weather by city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
CLOCK = {
    "name": "clock",
    "description": "The time in a zone",
    "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
FN_WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather by city",
        "parameters": WEATHER["input_schema"],
    },
}
FN_CLOCK = {
    "type": "function",
    "function": {
        "name": "clock",
        "description": "The time in a zone",
        "parameters": CLOCK["input_schema"],
    },
}
ASK = [{"role": "user", "content": "Weather in Oslo?"}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    keys = {"main": {}, "tight": {"budget_usd": "0.002", "period": "month"}}
    env = upstream_env(scripted, "sk-openai-upstream-xyz", "sk-ant-upstream-xyz-123456")
    with serve(tmp_path_factory.mktemp("gw-claude-tools"), keys, env) as proc:
        yield proc


def _sent(scripted: ScriptedServer) -> dict[str, Any]:
    req = scripted.requests[-1]
    assert req.path == "/v1/messages"
    return req.json  # type: ignore[no-any-return]


def _sse(raw: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]


# ---- /v1/messages -> Claude: passed through faithfully --------------------------------
def test_messages_tool_use_round_trip_to_claude_is_faithful_and_priced_as_reported(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    c = anthropic_client(gw)
    raw = c.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=200,
        tools=[WEATHER, CLOCK],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "weather"},
        messages=ASK,  # type: ignore[arg-type]
    )
    msg = raw.parse()
    sent = _sent(scripted)
    assert sent["tools"] == [WEATHER, CLOCK]
    assert sent["tool_choice"] == {"type": "tool", "name": "weather"}
    assert msg.stop_reason == "tool_use"
    (call,) = [b for b in msg.content if b.type == "tool_use"]
    assert call.name == "weather" and call.input == {"city": "city-1", "days": 3}
    assert call.id == "toolu_01_weather"
    assert "x-costline-unsent-params" not in raw.headers
    # usage is the upstream's (the mock bills 40 input tokens per tool definition)
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert msg.usage.input_tokens == ev.input_tokens and ev.input_tokens > 80
    assert msg.usage.output_tokens == ev.output_tokens > 0 and not ev.usage_estimated
    assert Decimal(raw.headers["x-costline-cost-usd"]) == Decimal(ev.cost_picousd).scaleb(-12)

    # the next turn: the assistant's tool_use and the user's tool_result go back as sent
    turn = [
        *ASK,
        {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"},
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    answer = c.messages.create(
        model=CLAUDE,
        max_tokens=200,
        tools=[WEATHER, CLOCK],  # type: ignore[list-item]
        messages=turn,  # type: ignore[arg-type]
    )
    sent = _sent(scripted)
    assert sent["messages"][1] == {
        "role": "assistant",
        "content": [tool_use(call.id, "weather", {"city": "city-1", "days": 3})],
    }
    assert sent["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"},
            {"type": "text", "text": "Thanks."},
        ],
    }
    assert answer.stop_reason == "end_turn" and answer.content[0].text == "echo: sunny, 21 C"


def test_messages_stream_passes_tool_use_events_through_piece_by_piece(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    call = tool_use("toolu_7", "weather", {"city": "Bergen", "days": 2})
    usage = anthropic_usage(311, 42)
    scripted.enqueue(anthropic_stream(["Let me ", "check."], usage=usage, tools=[call]))
    with anthropic_client(gw).messages.stream(
        model=CLAUDE,
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=ASK,  # type: ignore[arg-type]
    ) as stream:
        kinds = [(e.type, getattr(getattr(e, "delta", None), "type", None)) for e in stream]
        final = stream.get_final_message()
    assert _sent(scripted)["tools"] == [WEATHER] and _sent(scripted)["stream"] is True
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me check."  # type: ignore[union-attr]
    got = final.content[1]
    assert (got.id, got.name, got.input) == ("toolu_7", "weather", call["input"])  # type: ignore[union-attr]
    # the arguments arrive as the upstream streamed them: several input_json_delta events
    assert kinds.count(("content_block_delta", "input_json_delta")) >= 3
    assert final.usage.input_tokens == 311 and final.usage.output_tokens == 42
    (ev,) = events(gw.home, 1, provider="anthropic", input_tokens=311)
    assert ev.output_tokens == 42 and not ev.usage_estimated


def test_messages_stream_raw_events_are_anthropics(gw: GatewayProcess) -> None:
    """The bytes on the wire, as Claude sends them: a tool_use block opens with an empty
    input, its JSON comes in input_json_delta fragments, stop_reason tool_use."""
    r = httpx.post(
        gw.url + "/v1/messages",
        headers={"x-api-key": gw.keys["main"], "anthropic-version": "2023-06-01"},
        json={
            "model": CLAUDE,
            "max_tokens": 100,
            "stream": True,
            "tools": [CLOCK],
            "messages": [{"role": "user", "content": "What time is it in Lima?"}],
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    evs = _sse(r.text)
    starts = [e for e in evs if e["type"] == "content_block_start"]
    assert starts == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01_clock",
                "name": "clock",
                "input": {},
            },
        }
    ]
    parts = [e["delta"]["partial_json"] for e in evs if e["type"] == "content_block_delta"]
    assert len(parts) >= 2 and json.loads("".join(parts)) == {"zone": "zone-1"}
    (delta,) = [e for e in evs if e["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert [e["type"] for e in evs][-2:] == ["message_delta", "message_stop"]


# ---- /v1/chat/completions -> Claude: translated both ways -------------------------------
@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "clock"}}, {"type": "tool", "name": "clock"}),
    ],
)
def test_openai_tools_reach_claude_as_anthropic_tools_and_come_back_as_tool_calls(
    gw: GatewayProcess, scripted: ScriptedServer, choice: Any, sent: dict[str, Any]
) -> None:
    raw = openai_client(gw).chat.completions.with_raw_response.create(
        model=CLAUDE,
        messages=ASK,  # type: ignore[arg-type]
        tools=[FN_WEATHER, FN_CLOCK],  # type: ignore[list-item]
        tool_choice=choice,
        max_tokens=100,
    )
    done = raw.parse()
    body = _sent(scripted)
    assert body["tools"] == [WEATHER, CLOCK] and body["tool_choice"] == sent
    assert "x-costline-unsent-params" not in raw.headers
    want = "clock" if sent["type"] == "tool" else "weather"
    (tc,) = done.choices[0].message.tool_calls or []
    assert tc.type == "function" and tc.function.name == want
    assert tc.id == f"toolu_01_{want}"
    assert json.loads(tc.function.arguments) == _input(want)
    assert done.choices[0].finish_reason == "tool_calls"
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert done.usage.prompt_tokens == ev.input_tokens and ev.input_tokens > 80


def _input(tool: str) -> dict[str, Any]:
    return {"city": "city-1", "days": 3} if tool == "weather" else {"zone": "zone-1"}


def test_openai_tool_choice_none_and_parallel_false_translate(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    c = openai_client(gw)
    done = c.chat.completions.create(
        model=CLAUDE,
        messages=ASK,  # type: ignore[arg-type]
        tools=[FN_WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_tokens=100,
    )
    assert _sent(scripted)["tool_choice"] == {"type": "none"}
    assert done.choices[0].finish_reason == "stop" and not done.choices[0].message.tool_calls
    assert done.choices[0].message.content == "echo: Weather in Oslo?"
    c.chat.completions.create(
        model=CLAUDE,
        messages=ASK,  # type: ignore[arg-type]
        tools=[FN_WEATHER],  # type: ignore[list-item]
        parallel_tool_calls=False,
        max_tokens=100,
    )
    assert _sent(scripted)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_openai_tool_results_reach_claude_as_one_tool_result_turn(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Two parallel tool calls and their two ``tool`` messages: tool_use blocks with the
    arguments as objects, then one user turn holding both tool_result blocks (Anthropic
    refuses results split from their calls, which the mock checks)."""
    calls = [
        {
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        },
        {
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "clock", "arguments": '{"zone": "CET"}'},
        },
    ]
    convo = [
        {"role": "system", "content": "Be brief."},
        *ASK,
        {"role": "assistant", "content": "Looking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "9:00"}]},
    ]
    done = openai_client(gw).chat.completions.create(
        model=CLAUDE,
        messages=convo,  # type: ignore[arg-type]
        tools=[FN_WEATHER, FN_CLOCK],  # type: ignore[list-item]
        max_tokens=100,
    )
    body = _sent(scripted)
    assert body["system"] == "Be brief."
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                tool_use("toolu_a", "weather", {"city": "Oslo"}),
                tool_use("toolu_b", "clock", {"zone": "CET"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "9:00"},
            ],
        },
    ]
    assert done.choices[0].message.content == "echo: sunny 9:00"
    assert done.choices[0].finish_reason == "stop"
    # arguments that are not a JSON object cannot become a tool_use input: a 400 naming them
    bad = [*convo[:2], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "clock", "arguments": "[1]"}}
    ]}, {"role": "tool", "tool_call_id": "t", "content": "x"}]  # fmt: skip
    with pytest.raises(openai.BadRequestError, match=r"tool_calls\[0\].function.arguments"):
        openai_client(gw).chat.completions.create(
            model=CLAUDE,
            messages=bad,  # type: ignore[arg-type]
            tools=[FN_CLOCK],  # type: ignore[list-item]
            max_tokens=100,
        )


def test_openai_stream_from_claude_streams_tool_call_arguments_in_pieces(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    calls = [
        tool_use("toolu_s1", "weather", {"city": "Reykjavik", "days": 5}),
        tool_use("toolu_s2", "clock", {"zone": "UTC"}),
    ]
    scripted.enqueue(anthropic_stream(["On it."], usage=anthropic_usage(220, 30), tools=calls))
    stream = openai_client(gw).chat.completions.create(
        model=CLAUDE,
        messages=ASK,  # type: ignore[arg-type]
        tools=[FN_WEATHER, FN_CLOCK],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=100,
    )
    text, finish, usage = "", None, None
    got: dict[int, dict[str, str]] = {}
    pieces = 0
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        text += ch.delta.content or ""
        finish = ch.finish_reason or finish
        for tc in ch.delta.tool_calls or []:
            one = got.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                one["id"], one["name"] = tc.id, tc.function.name or ""  # type: ignore[union-attr]
            if tc.function and tc.function.arguments:
                one["arguments"] += tc.function.arguments
                pieces += 1
    assert text == "On it." and finish == "tool_calls"
    assert [(g["id"], g["name"], json.loads(g["arguments"])) for g in got.values()] == [
        (c["id"], c["name"], c["input"]) for c in calls
    ]
    assert pieces >= 4  # streamed as the upstream streamed them, not whole at the end
    assert usage is not None and usage.prompt_tokens == 220 and usage.completion_tokens == 30


# ---- images -----------------------------------------------------------------------------
def test_images_reach_claude_as_image_blocks_on_both_wires(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    scripted.enqueue(anthropic_message("A pixel."), anthropic_message("A pixel."))
    openai_client(gw).chat.completions.create(
        model=CLAUDE,
        max_tokens=50,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            }
        ],
    )
    assert _sent(scripted)["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
    ]
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }
    msg = anthropic_client(gw).messages.create(
        model=CLAUDE,
        max_tokens=50,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "And this?"}]}],  # type: ignore[list-item]
    )
    assert _sent(scripted)["messages"][0]["content"] == [
        image,
        {"type": "text", "text": "And this?"},
    ]
    assert msg.content[0].text == "A pixel."  # type: ignore[union-attr]


# ---- admission ------------------------------------------------------------------------
def test_admission_counts_tool_definitions_for_claude(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """The budget check before the call counts the tools: a call whose tool definitions
    alone would overrun the key's budget is refused before the upstream sees it; the same
    call without them is admitted."""
    big = {
        **WEATHER,
        "description": " ".join(f"Rule {i}: answer in metric units." for i in range(1500)),
    }
    c = anthropic_client(gw, "tight")
    ok = c.messages.create(model=CLAUDE, max_tokens=20, messages=ASK)  # type: ignore[arg-type]
    assert ok.stop_reason == "end_turn"
    seen = len(scripted.requests)
    with pytest.raises(anthropic.APIStatusError) as refused:
        c.messages.create(
            model=CLAUDE,
            max_tokens=20,
            tools=[big],  # type: ignore[list-item]
            messages=ASK,  # type: ignore[arg-type]
        )
    assert refused.value.body["error"]["type"] == "budget_exceeded"  # type: ignore[index]
    assert len(scripted.requests) == seen  # never sent upstream


def test_tool_results_keep_cache_breakpoints_and_images_for_claude(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Claude Code marks the last block of its last turn (in an agent loop, a tool_result)
    with ``cache_control``, and its Read tool answers with images: both reach Claude in
    place, so the prompt cache is read (and priced at its rate) as without Costline."""
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }
    mark = {"type": "ephemeral"}
    turn = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                tool_use("toolu_x", "weather", {"city": "Oslo"}),
                tool_use("toolu_y", "clock", {"zone": "CET"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_y", "content": [
                    {"type": "text", "text": "a screenshot:"}, image,
                ]},
                {"type": "tool_result", "tool_use_id": "toolu_x", "content": "sunny",
                 "cache_control": mark},
            ],
        },
    ]  # fmt: skip
    scripted.enqueue(anthropic_message("Done.", usage=anthropic_usage(40, 2, cache_read=3000)))
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=50,
        tools=[WEATHER, CLOCK],  # type: ignore[list-item]
        messages=turn,  # type: ignore[arg-type]
    )
    assert _sent(scripted)["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_y",
                "content": [{"type": "text", "text": "a screenshot:"}, image],
            },
            {
                "type": "tool_result",
                "tool_use_id": "toolu_x",
                "content": [{"type": "text", "text": "sunny", "cache_control": mark}],
            },
        ],
    }
    msg = raw.parse()
    assert msg.usage.cache_read_input_tokens == 3000
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert ev.cached_input_tokens == 3000 and ev.input_tokens == 40


def test_a_claude_code_shaped_turn_streams_through_as_sent(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """An agent turn as Claude Code sends one: system blocks with a cache breakpoint, several
    tools, metadata.user_id, the history's tool_use and a marked tool_result, streamed. The
    upstream gets the system, tools and history as sent (the mark on the tool_result on its
    content, the same place in the prompt; a user's lone text block is sent as its string,
    which Anthropic reads alike); the answer is the next tool call."""
    mark = {"type": "ephemeral"}
    system = [
        {"type": "text", "text": "You are a coding agent."},
        {"type": "text", "text": "Project rules: be brief.", "cache_control": mark},
    ]
    tools = [WEATHER, CLOCK, {**CLOCK, "name": "bash", "description": "Run a command"}]
    history = [
        {"role": "user", "content": "What time is it in Lima?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking the clock."},
                tool_use("toolu_c1", "clock", {"zone": "America/Lima"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_c1", "content": "09:00",
                 "cache_control": mark},
            ],
        },
    ]  # fmt: skip
    nxt = tool_use("toolu_c2", "bash", {"zone": "date -u"})
    scripted.enqueue(
        anthropic_stream([], usage=anthropic_usage(900, 25, cache_read=800), tools=[nxt])
    )
    with anthropic_client(gw).messages.stream(
        model=CLAUDE,
        max_tokens=300,
        system=system,  # type: ignore[arg-type]
        tools=tools,  # type: ignore[arg-type]
        messages=history,  # type: ignore[arg-type]
        metadata={"user_id": "user_abc_session_1"},
    ) as stream:
        final = stream.get_final_message()
    sent = _sent(scripted)
    assert sent["system"] == system and sent["tools"] == tools
    assert sent["metadata"] == {"user_id": "user_abc_session_1"}
    assert sent["messages"][:2] == history[:2]
    assert sent["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_c1",
                "content": [{"type": "text", "text": "09:00", "cache_control": mark}],
            }
        ],
    }
    assert final.stop_reason == "tool_use"
    assert [(b.type, b.id, b.input) for b in final.content] == [  # type: ignore[union-attr]
        ("tool_use", "toolu_c2", {"zone": "date -u"})
    ]
    assert final.usage.cache_read_input_tokens == 800 and final.usage.input_tokens == 900


def test_tool_definition_cache_breakpoints_reach_claude_and_are_named_elsewhere(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """A ``cache_control`` mark on a tool definition (Anthropic's, or on an OpenAI tool as
    LiteLLM takes it) reaches Claude in place; a hosted OpenAI-compatible API, which has
    none, is not sent it and the answer names it."""
    mark = {"type": "ephemeral", "ttl": "1h"}
    marked = {**CLOCK, "cache_control": mark}
    anthropic_client(gw).messages.create(
        model=CLAUDE,
        max_tokens=50,
        tools=[WEATHER, marked],  # type: ignore[list-item]
        messages=ASK,  # type: ignore[arg-type]
    )
    assert _sent(scripted)["tools"] == [WEATHER, marked]
    openai_client(gw).chat.completions.create(
        model=CLAUDE,
        max_tokens=50,
        tools=[FN_WEATHER, {**FN_CLOCK, "cache_control": mark}],  # type: ignore[list-item]
        messages=ASK,  # type: ignore[arg-type]
    )
    assert _sent(scripted)["tools"] == [WEATHER, marked]
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=50,
        tools=[WEATHER, marked],  # type: ignore[list-item]
        messages=ASK,  # type: ignore[arg-type]
    )
    sent = scripted.requests[-1].json
    assert sent["tools"][1] == FN_CLOCK  # no cache_control for OpenAI
    assert raw.headers["x-costline-unsent-params"] == "cache_control"
