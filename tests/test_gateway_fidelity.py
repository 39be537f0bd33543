"""What the official SDKs send reaches the upstream, and what it answers reaches them, as each
API defines it: the gateway in a subprocess over real HTTP, the scripted server upstream
speaking OpenAI and Anthropic."""

from __future__ import annotations

import pytest

from tests.gateway_support import GatewayProcess, serve, upstream_env
from tests.gateway_support import openai_client as client
from tests.servers.scripted import (
    ScriptedServer,
    json_reply,
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
