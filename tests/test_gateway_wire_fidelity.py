"""What the upstream says reaches the caller, and what the caller sends reaches the upstream, in
the forms each API defines: token-ID embeddings inputs, OpenAI's usage details and
system_fingerprint, n > 1 choices, and Anthropic's tool_result ``is_error``. The gateway in a
subprocess over real HTTP, the scripted server upstream speaking OpenAI and Anthropic, the
official SDKs (or raw requests, as LangChain sends them) as clients."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction

import anthropic
import httpx
import openai
import pytest

from core.pricing import load_catalog
from core.tokens import count_text
from tests.gateway_support import GatewayProcess, anthropic_client, serve, upstream_env
from tests.gateway_support import openai_client as client
from tests.servers.scripted import (
    Reply,
    ScriptedServer,
    anthropic_message,
    json_reply,
    openai_chat,
    tool_use,
)

ASK = [{"role": "user", "content": "Name three rivers."}]
NO_CACHE = {"x-costline-cache": "no-store"}
CLAUDE = "claude-3-5-haiku-20241022"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    env = upstream_env(scripted, "sk-openai-upstream-xyz", "sk-ant-upstream-xyz-123456")
    with serve(tmp_path_factory.mktemp("gw-wire-fidelity"), {"main": {}}, env) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _fresh_script(scripted: ScriptedServer) -> Iterator[None]:
    """Each test's replies are its own: one a failed test left behind is dropped."""
    scripted.clear()
    yield
    scripted.clear()


def _pico(usd: str) -> Fraction:
    return Fraction(Decimal(usd)) * 10**12


def _embedding(i: int) -> dict[str, object]:
    return {"object": "embedding", "index": i, "embedding": [0.5, -0.25]}


# ---- 1. embeddings inputs as token-ID arrays ---------------------------------------------
def test_token_id_embeddings_reach_openai_as_sent_and_are_priced_by_their_length(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """LangChain's OpenAIEmbeddings sends token-ID arrays (base64 vectors asked): they go to
    an OpenAI upstream as they are, and when it reports no usage the tokens are the arrays'
    lengths, exact (not flagged as estimated) and priced at the model's input rate."""
    ids = [[791, 2626, 315, 10683], [4438, 1101, 3786]]
    scripted.enqueue(json_reply({"object": "list", "data": [_embedding(0), _embedding(1)]}))
    r = httpx.post(
        gw.base_url + "/embeddings",
        headers={"Authorization": f"Bearer {gw.keys['main']}"},
        json={"input": ids, "model": "text-embedding-3-small", "encoding_format": "base64"},
    )
    assert r.status_code == 200, r.text
    sent = scripted.requests[-1]
    assert sent.path == "/v1/embeddings" and sent.json["input"] == ids
    body = r.json()
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    vec = struct.unpack("<2f", base64.b64decode(body["data"][1]["embedding"]))
    assert vec == (0.5, -0.25)
    assert "x-costline-usage-estimated" not in r.headers
    rate = load_catalog().lookup("text-embedding-3-small").input
    assert _pico(r.headers["x-costline-cost-usd"]) == 7 * Fraction(rate)

    # one array (a list of ints), through the official SDK; the upstream's count stands
    usage = {"prompt_tokens": 3, "total_tokens": 3}
    scripted.enqueue(json_reply({"object": "list", "data": [_embedding(0)], "usage": usage}))
    done = client(gw).embeddings.create(model="text-embedding-3-small", input=[1, 2, 3])
    assert scripted.requests[-1].json["input"] == [[1, 2, 3]]  # the same, one input
    assert done.usage.prompt_tokens == 3 and done.data[0].embedding == [0.5, -0.25]


def test_token_id_embeddings_on_dryrun_count_exactly_and_bad_forms_name_input(
    gw: GatewayProcess,
) -> None:
    c = client(gw)
    raw = c.embeddings.with_raw_response.create(model="dryrun-embed", input=[[5, 6, 7], [8]])
    done = raw.parse()
    assert done.usage.prompt_tokens == 4 and len(done.data) == 2
    assert done.data[0].embedding != done.data[1].embedding
    rate = load_catalog().lookup("dryrun-embed").input
    assert _pico(raw.headers["x-costline-cost-usd"]) == 4 * Fraction(rate)
    for bad in (["text", [1, 2]], [[1, 2], []], [[1, -2]], [1, "2"], [True, 2]):
        with pytest.raises(openai.BadRequestError) as err:
            c.embeddings.create(model="dryrun-embed", input=bad)  # type: ignore[arg-type]
        assert err.value.body["param"] == "input", bad  # type: ignore[index]


def test_token_id_embeddings_for_a_text_only_model_are_a_400_naming_input(
    gw: GatewayProcess,
) -> None:
    """The local MiniLM embeds text (its own WordPiece tokens): another tokenizer's ids cannot
    be sent to it, and the 400 says so before any model is loaded."""
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).embeddings.create(model="local/all-MiniLM-L6-v2", input=[[1, 2, 3]])
    assert err.value.body["param"] == "input"  # type: ignore[index]
    assert "token-ID arrays" in err.value.body["message"]  # type: ignore[index]


# ---- 2. OpenAI usage details and system_fingerprint -------------------------------------
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 5},
    "completion_tokens_details": {
        "reasoning_tokens": 120,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 11,
        "rejected_prediction_tokens": 4,
    },
}


def _expected_pico(model: str) -> Fraction:
    """USAGE priced by hand: cached prompt tokens at the cache rate, reasoning tokens (part of
    the completion tokens) once, at the reasoning rate."""
    row = load_catalog().lookup(model)
    return (
        (1200 - 1024) * Fraction(row.input)
        + 1024 * Fraction(row.cached_input)
        + (300 - 120) * Fraction(row.output)
        + 120 * Fraction(row.reasoning)
    )


def test_openai_usage_details_and_fingerprint_reach_the_caller(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    answer = json.loads(openai_chat("Nile.", usage=USAGE).body)
    answer["system_fingerprint"] = "fp_6b68a8204b"
    scripted.enqueue(json_reply(answer))
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ASK, extra_headers=NO_CACHE
    )
    done = raw.parse()
    assert done.system_fingerprint == "fp_6b68a8204b"
    u = done.usage
    assert u is not None and (u.prompt_tokens, u.completion_tokens) == (1200, 300)
    assert u.prompt_tokens_details is not None and u.completion_tokens_details is not None
    assert u.prompt_tokens_details.model_dump(exclude_none=True) == USAGE["prompt_tokens_details"]
    details = u.completion_tokens_details.model_dump(exclude_none=True)
    assert details == USAGE["completion_tokens_details"]
    assert _pico(raw.headers["x-costline-cost-usd"]) == _expected_pico("gpt-4o-mini")


def test_openai_streamed_usage_keeps_its_details_and_fingerprint(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    def data(obj: object) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    head = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    head["system_fingerprint"] = "fp_streamed"
    events = [
        data({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        data({**head, "choices": [{"index": 0, "delta": {"content": "Nile."}}]}),
        data({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        data({**head, "choices": [], "usage": USAGE}),
        "data: [DONE]\n\n",
    ]
    scripted.enqueue(Reply(content_type="text/event-stream", events=events))
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=NO_CACHE,
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.usage is not None and last.system_fingerprint == "fp_streamed"
    u = last.usage
    assert u.prompt_tokens_details is not None and u.completion_tokens_details is not None
    assert u.prompt_tokens_details.audio_tokens == 5
    assert u.prompt_tokens_details.cached_tokens == 1024
    assert u.completion_tokens_details.accepted_prediction_tokens == 11
    assert u.completion_tokens_details.rejected_prediction_tokens == 4
    assert u.completion_tokens_details.reasoning_tokens == 120
    cost = last.model_extra["costline"]["cost_usd"]  # type: ignore[index]
    assert _pico(cost) == _expected_pico("gpt-4o-mini")


# ---- 3. n > 1 ----------------------------------------------------------------------------
def test_dryrun_answers_n_choices_and_prices_every_one(gw: GatewayProcess) -> None:
    c = client(gw)
    one = c.chat.completions.create(model="dryrun-small", messages=ASK, extra_headers=NO_CACHE)
    raw = c.chat.completions.with_raw_response.create(
        model="dryrun-small", messages=ASK, n=3, extra_headers=NO_CACHE
    )
    done = raw.parse()
    assert [ch.index for ch in done.choices] == [0, 1, 2]
    texts = [ch.message.content or "" for ch in done.choices]
    assert texts[0] == one.choices[0].message.content  # choice 0: the answer n = 1 gives
    assert len(set(texts)) == 3 and all(t.startswith("[dryrun]") for t in texts)
    assert done.usage is not None and one.usage is not None
    assert done.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt, counted once
    assert done.usage.completion_tokens == sum(len(t.split()) for t in texts)
    row = load_catalog().lookup("dryrun-small")
    want = done.usage.prompt_tokens * Fraction(row.input)
    want += done.usage.completion_tokens * Fraction(row.output)
    assert _pico(raw.headers["x-costline-cost-usd"]) == want


def test_openai_n_choices_pass_through_with_their_usage(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    answer = json.loads(openai_chat("Nile.", usage=USAGE).body)
    second = {"index": 1, "message": {"role": "assistant", "content": "Amazon."}}
    answer["choices"].append({**second, "finish_reason": "stop"})
    scripted.enqueue(json_reply(answer))
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ASK, n=2, extra_headers=NO_CACHE
    )
    assert scripted.requests[-1].json["n"] == 2
    done = raw.parse()
    assert [ch.message.content for ch in done.choices] == ["Nile.", "Amazon."]
    assert done.usage is not None and done.usage.completion_tokens == 300
    assert _pico(raw.headers["x-costline-cost-usd"]) == _expected_pico("gpt-4o-mini")


def test_openai_n_choices_without_usage_are_estimated_on_every_choice(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """An upstream that reports no usage: the output estimate counts every choice's text,
    all of which was generated, not choice 0's alone."""
    answer = json.loads(openai_chat("Nile.").body)
    del answer["usage"]
    long = "The Amazon, the Yangtze and the Mississippi, with many words more to count."
    answer["choices"].append(
        {"index": 1, "message": {"role": "assistant", "content": long}, "finish_reason": "stop"}
    )
    scripted.enqueue(json_reply(answer))
    raw = client(gw).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ASK, n=2, extra_headers=NO_CACHE
    )
    assert raw.headers["x-costline-usage-estimated"] == "true"
    done = raw.parse()
    assert done.usage is not None
    assert done.usage.completion_tokens == count_text("gpt-4o-mini", "Nile." + long)


# ---- 4. tool_result is_error -------------------------------------------------------------
TOOLS = [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}]


def _failed_tool_turns() -> list[anthropic.types.MessageParam]:
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [tool_use("toolu_1", "weather", {"city": "Paris"})]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "service unavailable",
                    "is_error": True,
                },
                {"type": "text", "text": "Try again?"},
            ],
        },
    ]


def test_a_failed_tool_result_reaches_claude_as_is_error(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    scripted.enqueue(anthropic_message("Sorry."))
    anthropic_client(gw).messages.create(
        model=CLAUDE,
        max_tokens=50,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=_failed_tool_turns(),
        extra_headers=NO_CACHE,
    )
    turn = scripted.requests[-1].json["messages"][-1]
    assert turn["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "service unavailable",
        "is_error": True,
    }
    # OpenAI has no such field (and refuses unknown ones): the text says it, as before
    scripted.enqueue(openai_chat("Sorry."))
    anthropic_client(gw).messages.create(
        model="gpt-4o-mini",
        max_tokens=50,
        tools=TOOLS,  # type: ignore[arg-type]
        messages=_failed_tool_turns(),
        extra_headers=NO_CACHE,
    )
    tool = next(m for m in scripted.requests[-1].json["messages"] if m["role"] == "tool")
    assert tool["content"] == "Error: service unavailable" and "is_error" not in tool


def test_a_failed_tool_result_with_blocks_keeps_them_and_is_error(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """A failed tool result whose content is blocks with a cache breakpoint (Claude Code marks
    its last tool result): Claude gets the blocks and is_error; OpenAI the parts, led by an
    "Error: " part, and no is_error."""
    turns = _failed_tool_turns()
    result = turns[2]["content"][0]  # type: ignore[index]
    result["content"] = [  # type: ignore[index]
        {"type": "text", "text": "service unavailable", "cache_control": {"type": "ephemeral"}}
    ]
    scripted.enqueue(anthropic_message("Sorry."))
    anthropic_client(gw).messages.create(
        model=CLAUDE, max_tokens=50, tools=TOOLS, messages=turns, extra_headers=NO_CACHE
    )
    block = scripted.requests[-1].json["messages"][-1]["content"][0]
    assert block["is_error"] is True
    assert block["content"] == [
        {"type": "text", "text": "service unavailable", "cache_control": {"type": "ephemeral"}}
    ]
    scripted.enqueue(openai_chat("Sorry."))
    anthropic_client(gw).messages.create(
        model="gpt-4o-mini", max_tokens=50, tools=TOOLS, messages=turns, extra_headers=NO_CACHE
    )
    tool = next(m for m in scripted.requests[-1].json["messages"] if m["role"] == "tool")
    assert "is_error" not in tool
    assert [p["text"] for p in tool["content"]] == ["Error: ", "service unavailable"]
