"""What the official SDKs send reaches the upstream, and what it answers reaches them, as each
API defines it: the gateway in a subprocess over real HTTP, the scripted server upstream
speaking OpenAI and Anthropic."""

from __future__ import annotations

import openai
import pytest

from tests.gateway_support import GatewayProcess, anthropic_client, serve, upstream_env
from tests.gateway_support import openai_client as client
from tests.servers.scripted import (
    ScriptedServer,
    anthropic_message,
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
