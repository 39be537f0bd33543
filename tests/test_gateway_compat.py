"""The gateway as teams drive it with the official SDKs: what an answer says about its cost,
requests the gateway cannot honour, and the endpoints the SDKs call besides inference.

One real ``costline gateway`` (unknown models allowed, logged unpriced) in front of the
scripted OpenAI-compatible server, over loopback HTTP.
"""

from __future__ import annotations

import openai
import pytest

from tests.gateway_support import GatewayProcess, events, make_key
from tests.servers.scripted import ScriptedServer, json_reply

ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def scripted():
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    home = tmp_path_factory.mktemp("gw-compat")
    keys = {"main": make_key(home, "main"), "only": make_key(home, "only", models=("gpt-4o",))}
    env = {
        "OPENAI_BASE_URL": scripted.openai_url,
        "OPENAI_API_KEY": "sk-upstream-compat",
        "COSTLINE_GATEWAY_ALLOW_UNPRICED": "1",
    }
    with GatewayProcess(home, env) as proc:
        proc.keys = keys  # type: ignore[attr-defined]
        yield proc


def client(gw: GatewayProcess, key: str = "main") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys[key], max_retries=0)  # type: ignore[attr-defined]


def test_an_unpriced_embedding_is_flagged_never_a_bare_zero(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    vectors = [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}]
    scripted.enqueue(json_reply({"data": vectors, "usage": {"prompt_tokens": 3}}))
    raw = client(gw).embeddings.with_raw_response.create(
        model="openai/text-embedding-9", input="hello"
    )
    done = raw.parse()
    assert done.data[0].embedding == [0.25, -0.5]
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert ev.unpriced and ev.cost_picousd == 0  # logged as unpriced: its cost is unknown
    extra = done.model_extra["costline"]  # type: ignore[index]
    assert extra["cost_usd"] == "0" and extra["unpriced"] is True  # and the answer says so
    assert raw.headers["x-costline-cost-usd"] == "0"
    assert raw.headers["x-costline-unpriced"] == "true"
    assert "x-costline-usage-estimated" not in raw.headers  # the upstream reported its tokens


def test_several_choices_streamed_are_a_400_not_all_but_the_first_dropped(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    before = len(scripted.requests)
    with pytest.raises(openai.BadRequestError) as exc:
        stream = client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=ASK, n=2, stream=True, max_tokens=10
        )
        list(stream)  # on a 200 the second choice would be missing from these chunks
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == "n"  # type: ignore[index]
    assert "stream: false" in exc.value.message
    assert len(scripted.requests) == before  # refused before any provider was paid
    one = client(gw).chat.completions.create(
        model="gpt-4o-mini", messages=ASK, n=1, stream=True, max_tokens=10
    )
    assert "".join(c.choices[0].delta.content or "" for c in one if c.choices).strip()
