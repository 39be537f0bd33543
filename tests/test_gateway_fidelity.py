"""What the official SDKs send reaches the upstream, and what it answers reaches them, as each
API defines it: the gateway in a subprocess over real HTTP, the scripted server upstream
speaking OpenAI and Anthropic."""

from __future__ import annotations

import json
from decimal import Decimal

import anthropic
import openai
import pytest

from tests.gateway_support import GatewayProcess, anthropic_client, events, serve, upstream_env
from tests.gateway_support import openai_client as client
from tests.servers.scripted import (
    ScriptedServer,
    anthropic_message,
    anthropic_usage,
    error,
    json_reply,
    openai_chat,
    openai_stream,
    openai_usage,
)

ASK = [{"role": "user", "content": "Name three rivers."}]
NO_CACHE = {"x-costline-cache": "no-store"}
CLAUDE = "claude-3-5-haiku-20241022"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    env = upstream_env(scripted, "sk-openai-upstream-xyz", "sk-ant-upstream-xyz-123456")
    with serve(tmp_path_factory.mktemp("gw-fidelity"), {"main": {}}, env) as proc:
        yield proc


def test_embeddings_pass_the_user_field_upstream_as_chat_does(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    vectors = [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}]
    usage = {"prompt_tokens": 1, "total_tokens": 1}
    scripted.enqueue(json_reply({"object": "list", "data": vectors, "usage": usage}))
    done = client(gw).embeddings.create(
        model="text-embedding-3-small", input="alpha", user="end-user-42"
    )
    assert done.data[0].embedding == [0.5, -0.25]
    sent = scripted.requests[-1]
    assert sent.path == "/v1/embeddings" and sent.json["user"] == "end-user-42"
    scripted.enqueue(json_reply({"object": "list", "data": vectors, "usage": usage}))
    client(gw).embeddings.create(model="text-embedding-3-small", input="alpha")
    assert "user" not in scripted.requests[-1].json  # none asked, none invented


def test_top_k_is_not_sent_to_openai_and_the_answer_names_it(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Anthropic's top_k has no OpenAI equivalent (api.openai.com refuses it with a 400):
    a /v1/messages call routed to an OpenAI model is answered without it, and the answer
    says so, plain and streamed; top_p, which both have, still travels."""
    c = anthropic_client(gw)
    scripted.enqueue(openai_chat("Nile."))
    raw = c.messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=20, messages=ASK, extra_body={"top_k": 40, "top_p": 0.9}
    )
    sent = scripted.requests[-1].json
    assert "top_k" not in sent and sent["top_p"] == 0.9
    assert raw.headers["x-costline-unsent-params"] == "top_k"
    assert raw.parse().content[0].text == "Nile."  # type: ignore[union-attr]
    scripted.enqueue(openai_stream(["Nile."], usage=openai_usage(9, 1)))
    with c.messages.with_streaming_response.create(
        model="gpt-4o-mini",
        max_tokens=20,
        messages=ASK,
        stream=True,
        extra_body={"top_k": 40},
    ) as streamed:
        assert streamed.headers["x-costline-unsent-params"] == "top_k"
        assert "Nile." in streamed.read().decode()
    assert "top_k" not in scripted.requests[-1].json
    # an Anthropic upstream takes it, and nothing is named
    scripted.enqueue(anthropic_message("Nile."))
    raw = c.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=20,
        messages=ASK,
        extra_body={"top_k": 40},
        extra_headers=NO_CACHE,
    )
    assert scripted.requests[-1].json["top_k"] == 40
    assert "x-costline-unsent-params" not in raw.headers
    # a field the gateway does not read is sent nowhere: named too, never silently lost
    scripted.enqueue(anthropic_message("Nile."))
    raw = c.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=2000,
        messages=ASK,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers=NO_CACHE,
    )
    assert "thinking" not in scripted.requests[-1].json
    assert raw.headers["x-costline-unsent-params"] == "thinking"


def test_openai_fields_anthropic_lacks_are_named_and_inert_ones_not_refused(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """An OpenAI request to a Claude model: seed and penalties (no Anthropic equivalent) are
    not sent and the answer names them; fields that ask for nothing (logprobs false, n 1,
    a text response_format) are no 400; logprobs true, which would be lost, still is."""
    oc = client(gw)
    scripted.enqueue(anthropic_message("Nile."))
    raw = oc.chat.completions.with_raw_response.create(
        model=CLAUDE,
        messages=ASK,
        max_tokens=20,
        seed=7,
        presence_penalty=0.5,
        logprobs=False,
        n=1,
        response_format={"type": "text"},
        top_p=0.5,
    )
    sent = scripted.requests[-1].json
    assert sent["top_p"] == 0.5
    assert not {"seed", "presence_penalty", "logprobs", "n", "response_format"} & sent.keys()
    assert raw.headers["x-costline-unsent-params"] == "presence_penalty, seed"
    assert raw.parse().choices[0].message.content == "Nile."
    with pytest.raises(openai.BadRequestError, match="logprobs: not supported"):
        oc.chat.completions.create(model=CLAUDE, messages=ASK, max_tokens=20, logprobs=True)


def test_cache_control_reaches_anthropic_and_cache_tokens_are_priced_exactly(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """The client's cache_control breakpoints (system and message blocks, 5-minute and
    1-hour) reach an Anthropic upstream in place; the cache reads and writes it reports are
    logged and priced at Anthropic's rates (reads 0.1x input, 5-minute writes 1.25x, 1-hour
    writes 2x) to the picodollar, and the answer reports them as Anthropic does."""
    system = [
        {"type": "text", "text": "You are a geographer."},
        {"type": "text", "text": "A long reference text.", "cache_control": {"type": "ephemeral"}},
    ]
    hour = {"type": "ephemeral", "ttl": "1h"}
    ask = [
        {"role": "user", "content": [{"type": "text", "text": "Rivers?", "cache_control": hour}]}
    ]
    usage = anthropic_usage(10, 5, cache_read=2000, cache_write=1000)
    reply = anthropic_message("Nile.", usage=usage)
    body = json.loads(reply.body)
    body["usage"]["cache_creation"] = {
        "ephemeral_5m_input_tokens": 400,
        "ephemeral_1h_input_tokens": 600,
    }
    scripted.enqueue(json_reply(body))
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=20,
        system=system,
        messages=ask,  # type: ignore[arg-type]
    )
    sent = scripted.requests[-1].json
    assert sent["system"] == system
    assert sent["messages"] == [{"role": "user", "content": ask[0]["content"]}]
    msg = raw.parse()
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (
        2000,
        1000,
    )
    assert msg.usage.input_tokens == 10 and msg.usage.output_tokens == 5
    split = msg.usage.cache_creation
    assert split is not None
    assert (split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens) == (400, 600)
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert (ev.input_tokens, ev.cached_input_tokens, ev.cache_write_tokens) == (10, 2000, 1000)
    assert ev.cache_write_1h_tokens == 600
    per_token = Decimal("0.80") / 10**6  # claude-3-5-haiku input, USD a token
    want = (
        10 * per_token
        + 2000 * per_token * Decimal("0.1")
        + 400 * per_token * Decimal("1.25")
        + 600 * per_token * 2
        + 5 * per_token * 5  # output: $4 per 1M
    )
    assert Decimal(ev.cost_picousd).scaleb(-12) == want
    assert Decimal(raw.headers["x-costline-cost-usd"]) == want
    assert ev.cost_cached_input_picousd == 2000 * 80_000
    assert ev.cost_cache_write_picousd == 400 * 1_000_000 + 600 * 1_600_000


def test_cache_control_is_not_sent_to_openai_and_the_answer_names_it(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """OpenAI has no cache_control (it caches prefixes by itself) and refuses unknown fields
    in content parts: the breakpoints are taken out for it, and the answer says so. On the
    OpenAI wire, text parts with cache_control reach a Claude model with them."""
    mark = {"type": "ephemeral"}
    ask = [
        {"role": "user", "content": [{"type": "text", "text": "Rivers?", "cache_control": mark}]}
    ]
    scripted.enqueue(openai_chat("Nile."))
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=20,
        system=[{"type": "text", "text": "Be brief.", "cache_control": mark}],
        messages=ask,  # type: ignore[arg-type]
    )
    sent = scripted.requests[-1].json
    assert "cache_control" not in json.dumps(sent)
    assert sent["messages"][-1]["content"] == [{"type": "text", "text": "Rivers?"}]
    assert raw.headers["x-costline-unsent-params"] == "cache_control"
    scripted.enqueue(anthropic_message("Nile."))
    client(gw).chat.completions.create(model=CLAUDE, messages=ask, max_tokens=20)  # type: ignore[arg-type]
    assert scripted.requests[-1].json["messages"][-1]["content"] == ask[0]["content"]


def test_top_level_cache_control_marks_the_prompt_for_anthropic(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Anthropic's automatic caching (a top-level cache_control) reaches an Anthropic
    upstream as breakpoints on the system prompt and the last message, at its TTL; an
    OpenAI upstream cannot take it, and the answer names it."""
    hour = {"type": "ephemeral", "ttl": "1h"}
    scripted.enqueue(anthropic_message("Nile."))
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=20,
        system="Be brief.",
        messages=ASK,
        cache_control=hour,
        extra_headers=NO_CACHE,
    )
    sent = scripted.requests[-1].json
    assert sent["system"] == [{"type": "text", "text": "Be brief.", "cache_control": hour}]
    assert sent["messages"][-1]["content"] == [
        {"type": "text", "text": ASK[0]["content"], "cache_control": hour}
    ]
    assert "x-costline-unsent-params" not in raw.headers
    scripted.enqueue(openai_chat("Nile."))
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=20,
        messages=ASK,
        cache_control=hour,
        extra_headers=NO_CACHE,
    )
    assert "cache_control" not in json.dumps(scripted.requests[-1].json)
    assert raw.headers["x-costline-unsent-params"] == "cache_control"
    with pytest.raises(anthropic.BadRequestError, match="cache_control: must be"):
        anthropic_client(gw).messages.create(
            model=CLAUDE,
            max_tokens=20,
            messages=ASK,
            cache_control={"type": "ephemeral", "ttl": "2d"},  # type: ignore[typeddict-item]
        )


def test_an_upstream_400_names_no_param_of_the_request(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """An upstream's own 400 reaches the SDKs as BadRequestError with its message; its
    ``param`` is not the provider's name (the first word of the message) posing as a field.
    A refusal of Costline's own still names its field."""
    refusal = "Unrecognized request argument supplied: frobnicate"
    scripted.enqueue(error(400, refusal, type="invalid_request_error"))
    with pytest.raises(openai.BadRequestError, match="frobnicate") as e:
        client(gw).chat.completions.create(
            model="gpt-4o-mini",
            messages=ASK,
            extra_body={"frobnicate": True},
            extra_headers=NO_CACHE,
        )
    assert e.value.body["param"] is None  # type: ignore[index]
    scripted.enqueue(error(400, refusal, type="invalid_request_error"))
    with pytest.raises(anthropic.BadRequestError, match="frobnicate"):
        anthropic_client(gw).messages.create(
            model="gpt-4o-mini", max_tokens=20, messages=ASK, extra_headers=NO_CACHE
        )
    with pytest.raises(openai.BadRequestError) as own:
        client(gw).chat.completions.create(model=CLAUDE, messages=ASK, n=2)
    assert own.value.body["param"] == "n"  # type: ignore[index]


def test_an_upstream_404_is_a_not_found_error_for_both_sdks(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """A model the upstream does not have (retired, a typo in an alias): its 404 reaches the
    SDKs as NotFoundError, as calling the provider directly would, not as a 400."""
    gone = "The model `gpt-4o-mini` does not exist or you do not have access to it."
    scripted.enqueue(error(404, gone, type="invalid_request_error"))
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=ASK, extra_headers=NO_CACHE
        )
    scripted.enqueue(error(404, gone, type="not_found_error"))
    with pytest.raises(anthropic.NotFoundError, match="does not exist") as e:
        anthropic_client(gw).messages.create(
            model="gpt-4o-mini", max_tokens=20, messages=ASK, extra_headers=NO_CACHE
        )
    assert e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    scripted.enqueue(error(422, "temperature: extra inputs are not permitted"))
    with pytest.raises(openai.UnprocessableEntityError):
        client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=ASK, extra_headers=NO_CACHE
        )


def test_cache_breakpoints_leave_the_response_cache_to_work(gw: GatewayProcess) -> None:
    """Marks kept for Anthropic's prompt cache do not change the answer: a request that
    carries them (Claude Code marks every one) is still served from the response cache."""
    mark = {"type": "ephemeral"}
    ask = [
        {"role": "user", "content": [{"type": "text", "text": "Cached?", "cache_control": mark}]}
    ]
    system = [{"type": "text", "text": "Be brief.", "cache_control": mark}]
    got = [
        anthropic_client(gw).messages.with_raw_response.create(
            model="dryrun-small",
            max_tokens=20,
            system=system,  # type: ignore[arg-type]
            messages=ask,  # type: ignore[arg-type]
        )
        for _ in range(2)
    ]
    assert [r.headers["x-costline-cache"] for r in got] == ["miss", "hit"]
