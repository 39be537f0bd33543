"""The gateway's Anthropic face (/v1/messages, its SSE events, count_tokens) driven by the
official `anthropic` SDK; upstreams: dryrun and the scripted server speaking Anthropic."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import pytest

from tests.gateway_support import GatewayProcess, events, make_key
from tests.servers.scripted import ScriptedServer, anthropic_stream, anthropic_usage, error

ASK = [{"role": "user", "content": "Name three rivers."}]
NO_CACHE = {"x-costline-cache": "no-store"}


@pytest.fixture(scope="module")
def scripted():
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    home = tmp_path_factory.mktemp("gw-anthropic")
    keys = {
        "main": make_key(home, "main"),
        "only": make_key(home, "only", models=("dryrun-small",)),
    }
    env = {"ANTHROPIC_BASE_URL": scripted.url, "ANTHROPIC_API_KEY": "sk-ant-upstream-xyz-123456"}
    with GatewayProcess(home, env) as proc:
        proc.keys = keys  # type: ignore[attr-defined]
        yield proc


def client(gw: GatewayProcess, key: str = "main") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.keys[key], max_retries=0)  # type: ignore[attr-defined]


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
    with pytest.raises(anthropic.BadRequestError, match="only text blocks"):
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
    with pytest.raises(anthropic.InternalServerError) as e502:
        client(gw).messages.create(
            model="claude-3-5-haiku", max_tokens=10, messages=ASK, extra_headers=NO_CACHE
        )
    assert e502.value.status_code == 502 and "Overloaded" in e502.value.message


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
