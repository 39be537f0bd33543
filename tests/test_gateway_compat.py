"""The gateway as teams drive it with the official SDKs: what an answer says about its cost,
requests the gateway cannot honour, and the endpoints the SDKs call besides inference.

One real ``costline gateway`` (unknown models allowed, logged unpriced) in front of the
scripted OpenAI-compatible server, over loopback HTTP.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.gateway_support import (
    GatewayProcess,
    anthropic_client,
    events,
    make_key,
    metric_sample,
    serve,
    upstream_env,
)
from tests.gateway_support import openai_client as client
from tests.servers.scripted import ScriptedServer, json_reply, openai_stream, openai_usage

ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    keys = {"main": {}, "only": {"models": ("gpt-4o",)}, "rl": {"rpm": 1}}
    env = upstream_env(scripted, "sk-upstream-compat")
    env["COSTLINE_GATEWAY_ALLOW_UNPRICED"] = "1"
    with serve(tmp_path_factory.mktemp("gw-compat"), keys, env) as proc:
        yield proc


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


def test_models_retrieve_answers_with_the_listed_row_for_both_sdks(gw: GatewayProcess) -> None:
    listed = {m.id: m for m in client(gw).models.list()}
    got = client(gw).models.retrieve("gpt-4o-mini")
    assert got.id == "gpt-4o-mini" and got.owned_by == "openai"
    assert got.model_extra == listed["gpt-4o-mini"].model_extra  # the prices the list shows
    assert client(gw).models.retrieve("groq/llama-3.1-8b-instant").id in listed  # a '/' in it
    with pytest.raises(openai.NotFoundError) as exc:
        client(gw, "only").models.retrieve("gpt-4o-mini")  # not a model this key may use
    assert "GET /v1/models lists them" in exc.value.message
    with pytest.raises(openai.NotFoundError):
        client(gw).models.retrieve("no-such-model")
    a = anthropic_client(gw)
    assert a.models.retrieve("claude-3-5-haiku").id == "claude-3-5-haiku"
    with pytest.raises(anthropic.NotFoundError) as aexc:
        a.models.retrieve("no-such-model")
    assert aexc.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_the_anthropic_sdk_reads_its_model_fields(gw: GatewayProcess) -> None:
    """models.list / retrieve through the Anthropic SDK: ModelInfo's fields are set (they
    were None), one page; the OpenAI shape is unchanged."""
    a = anthropic_client(gw)
    page = a.models.list()
    got = {m.id: m for m in page.data}
    assert "claude-3-5-haiku" in got and page.has_more is False
    assert page.first_id == page.data[0].id and page.last_id == page.data[-1].id
    for m in got.values():
        assert m.type == "model" and m.display_name == m.id
        assert m.created_at.year == 1970
    one = a.models.retrieve("claude-3-5-haiku")
    extra = one.model_extra or {}
    assert one.type == "model" and one.display_name == "claude-3-5-haiku"
    assert one.max_tokens == extra["costline"]["max_output_tokens"] and one.max_tokens
    assert one.max_input_tokens == extra["costline"]["context_window"]
    plain = httpx.get(
        gw.base_url + "/models", headers={"authorization": f"Bearer {gw.keys['main']}"}
    )
    assert set(plain.json()) == {"object", "data"}
    assert set(plain.json()["data"][0]) == {"id", "object", "created", "owned_by", "costline"}


def test_an_endpoint_the_gateway_does_not_serve_is_a_json_error_the_sdks_read(
    gw: GatewayProcess,
) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client(gw).completions.create(model="gpt-4o-mini", prompt="hi")  # the legacy endpoint
    assert exc.value.message == "Error code: 404 - the gateway serves no POST /v1/completions"
    assert exc.value.body["code"] == "not_found"  # type: ignore[index]
    r = httpx.post(gw.base_url + "/models", headers={"authorization": "Bearer x"})
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_sigterm_closes_the_upstream_connections_cleanly(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    key = make_key(tmp_path, "k")
    env = {"OPENAI_BASE_URL": scripted.openai_url, "OPENAI_API_KEY": "sk-upstream-compat"}
    proc = GatewayProcess(tmp_path, env).start()
    try:
        c = openai.OpenAI(base_url=proc.base_url, api_key=key, max_retries=0)
        assert c.chat.completions.create(model="gpt-4o-mini", messages=ASK).choices
        proc.terminate()
        assert proc.proc is not None and proc.proc.wait(timeout=60) == 0
        log = proc.log_tail()
    finally:
        proc.stop()
    assert "Unclosed" not in log  # aiohttp's warning for a session never closed


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"lookup_{i}",
            "description": f"Look up record {i} in the customer database by its id and return "
            "the name, address, order history and open support tickets of that customer.",
            "parameters": {
                "type": "object",
                "properties": {"id": {"type": "string", "description": "the customer id"}},
                "required": ["id"],
            },
        },
    }
    for i in range(12)
]


def test_tool_definitions_are_counted_in_the_prompt_when_the_provider_reports_no_usage(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    from core import tokens

    schema_tokens = tokens.count_text("gpt-4o-mini", json.dumps(TOOLS, separators=(",", ":")))
    scripted.enqueue(openai_stream(["It ", "is ", "Paris."], usage=None))  # as llama.cpp
    stream = client(gw).chat.completions.create(
        model="gpt-4o-mini",
        messages=ASK,
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert scripted.requests[-1].json["tools"] == TOOLS  # billed by the provider as input
    extra = chunks[-1].model_extra["costline"]  # type: ignore[index]
    (ev,) = events(gw.home, 1, request_id=extra["request_id"])
    assert ev.usage_estimated and chunks[-1].usage is not None
    assert ev.input_tokens == chunks[-1].usage.prompt_tokens > schema_tokens  # not ~14
    priced = ev.cost_input_picousd
    assert priced is not None and priced >= schema_tokens * 150_000  # $0.15 per 1M tokens

    a = anthropic_client(gw)
    plain = a.messages.count_tokens(model="claude-3-5-haiku", messages=ASK)  # type: ignore[arg-type]
    tools = [
        {"name": t["function"]["name"], "description": t["function"]["description"]}
        | {"input_schema": t["function"]["parameters"]}
        for t in TOOLS
    ]
    with_tools = a.messages.count_tokens(model="claude-3-5-haiku", messages=ASK, tools=tools)  # type: ignore[arg-type]
    assert with_tools.input_tokens > plain.input_tokens + schema_tokens // 2


def test_a_stream_cut_by_the_sigterm_drain_ends_with_an_error_and_is_logged(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    key = make_key(tmp_path, "k")
    env = {
        "OPENAI_BASE_URL": scripted.openai_url,
        "OPENAI_API_KEY": "sk-upstream-compat",
        "COSTLINE_GATEWAY_DRAIN_S": "1",
    }
    slow = openai_stream([f"word{i} " for i in range(60)], usage=openai_usage(12, 60))
    scripted.enqueue(replace(slow, event_delay=0.1))  # 6 s: longer than the drain
    proc = GatewayProcess(tmp_path, env).start()
    got: list[str] = []
    try:
        c = openai.OpenAI(base_url=proc.base_url, api_key=key, max_retries=0)
        stream = c.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)
        rid = stream.response.headers["x-costline-request-id"]
        with pytest.raises(openai.APIError) as exc:  # not a bare broken chunked response
            for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
                if len(got) == 3:
                    proc.terminate()
        assert "shutting down" in exc.value.message
        assert proc.proc is not None and proc.proc.wait(timeout=60) == 0
    finally:
        proc.stop()
    assert 3 <= len(got) < 50  # cut about 1 s after SIGTERM
    (ev,) = events(tmp_path, 1, timeout=0, request_id=rid)  # on disk before the exit
    assert ev.status == "error" and ev.usage_estimated and ev.output_tokens >= 2
    assert ev.cost_picousd > 0


def test_made_up_model_names_do_not_each_add_a_metrics_series(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """Whatever ran before on this module's gateway: the counters are read before and after
    (they start at 0 only for the first test), and the catalog model is called here."""
    requests = "costline_gateway_requests_total"
    other_404 = dict(endpoint="chat", key="main", model="other", provider="", status="404")
    other_200 = dict(endpoint="embeddings", key="main", model="other", provider="openai")
    known = dict(endpoint="chat", key="main", model="gpt-4o-mini", provider="openai")
    before = gw.metrics()
    c = client(gw)
    a = anthropic_client(gw)
    for i in range(40):
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model=f"made-up-{i}", messages=ASK)  # type: ignore[arg-type]
    with pytest.raises(anthropic.NotFoundError):
        a.messages.create(model="made-up-anthropic", max_tokens=5, messages=ASK)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        c.embeddings.create(model="made-up-embed", input="x")
    scripted.enqueue(json_reply({"data": [{"index": 0, "embedding": [1.0]}]}))
    c.embeddings.create(model="openai/made-up-served", input="x")  # unpriced, allowed here
    assert c.chat.completions.create(model="gpt-4o-mini", messages=ASK).choices  # type: ignore[arg-type]
    text = gw.metrics()
    assert "made-up" not in text  # a client's made-up names: no series of their own

    def added(labels: dict[str, str]) -> float:
        return metric_sample(text, requests, **labels) - metric_sample(before, requests, **labels)

    assert added(other_404) == 40  # the 40 names in one series
    assert added(other_200 | {"status": "200"}) == 1  # the unpriced one served
    assert added(known | {"status": "200"}) == 1  # catalog models keep their own


def test_a_client_that_leaves_mid_upload_is_no_server_error(gw: GatewayProcess) -> None:
    key = gw.keys["main"]
    left = dict(key="main", model="", provider="", status="499")
    before = gw.metrics()
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/embeddings"):
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            head = f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
            s.sendall(head.encode() + b"Content-Length: 5000\r\n\r\n" + b'{"model": "gpt-4o')
            time.sleep(0.3)  # the gateway is reading the body when the client goes
    time.sleep(0.5)
    log = gw.log_tail(20_000)
    assert "Traceback" not in log and "Exception in ASGI application" not in log
    text = gw.metrics()
    for endpoint in ("chat", "messages"):  # one each (counted since this gateway started)
        labels = left | {"endpoint": endpoint}
        got = metric_sample(text, "costline_gateway_requests_total", **labels)
        assert got - metric_sample(before, "costline_gateway_requests_total", **labels) == 1
    assert c_ok(gw)  # and it serves the next request as usual


def c_ok(gw: GatewayProcess) -> bool:
    done = client(gw).chat.completions.create(model="gpt-4o-mini", messages=ASK)  # type: ignore[arg-type]
    return bool(done.choices[0].message.content)


def test_an_embeddings_429_names_the_limit_that_ran_out_as_chat_does(gw: GatewayProcess) -> None:
    c = client(gw, "rl")
    ok = c.embeddings.with_raw_response.create(model="dryrun-embed", input="one")
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as exc:
        c.embeddings.create(model="dryrun-embed", input="two")
    h = exc.value.response.headers
    assert int(h["retry-after"]) > 0
    assert h["x-ratelimit-limit-requests"] == "1"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")


def test_the_sdks_read_each_answers_request_id_as_their_own(gw: GatewayProcess) -> None:
    """``completion._request_id`` / ``error.request_id`` (the request id support asks for):
    the openai SDK reads ``x-request-id``, the anthropic SDK ``request-id``; both are the
    id Costline logged the call under, on answers, streams and errors alike."""
    c, a = client(gw), anthropic_client(gw)
    done = c.chat.completions.create(model="dryrun-small", messages=ASK, max_tokens=20)  # type: ignore[arg-type]
    assert done._request_id is not None and done._request_id.startswith("req_")
    (ev,) = events(gw.home, 1, request_id=done._request_id)
    assert ev.key == "main"
    stream = c.chat.completions.create(model="dryrun-small", messages=ASK, stream=True)  # type: ignore[arg-type]
    assert stream.response.headers.get("x-request-id", "").startswith("req_")
    stream.close()
    emb = c.embeddings.create(model="dryrun-embed", input="hello")
    assert emb._request_id is not None and emb._request_id.startswith("req_")
    msg = a.messages.create(model="dryrun-small", max_tokens=20, messages=ASK)  # type: ignore[arg-type]
    assert msg._request_id is not None and msg._request_id.startswith("req_")
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(gw, "only").chat.completions.create(model="dryrun-small", messages=ASK)  # type: ignore[arg-type]
    assert (denied.value.request_id or "").startswith("req_")
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        anthropic_client(gw, "only").messages.create(
            model="dryrun-small",
            max_tokens=20,
            messages=ASK,  # type: ignore[arg-type]
        )
    assert (refused.value.request_id or "").startswith("req_")
