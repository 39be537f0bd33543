"""The gateway's tenant boundaries and upstream-facing edges, over real HTTP to a real
``costline gateway`` in a subprocess: cached answers scoped by org/key, /metrics behind a
token, overloaded upstreams passed through with their Retry-After, count_tokens bound by the
key's models, the per-provider upstream timeout (504) and Anthropic stream fields.

Upstreams: the dryrun provider and the scripted fault server (as OpenAI and as Anthropic).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from core.control import SYSTEM, SamplingStrategy
from tests.gateway_support import (
    METRICS_TOKEN,
    GatewayProcess,
    control_plane,
    events,
    make_token,
    serve,
    upstream_env,
)
from tests.servers.scripted import (
    ScriptedServer,
    anthropic_usage,
    delayed,
    error,
    json_reply,
    openai_chat,
    openai_usage,
)

ASK = [{"role": "user", "content": "What is the capital of France?"}]
SAMPLED = "tenant-sampled"  # a task whose periodic sampling strategy reuses the last answer


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedServer):
    home = tmp_path_factory.mktemp("gw-tenancy")
    keys = {
        "acme-a": {"org": "acme"},
        "acme-b": {"org": "acme"},
        "globex": {"org": "globex"},
        "loose": {},
        "loose2": {},
        "small": {"models": ("dryrun-small",)},
    }
    with control_plane(home) as plane:  # one call an hour for this task; others reuse it
        plane.upsert_sampling(
            SamplingStrategy(
                key=SAMPLED, strategy="periodic", params={"interval_s": 3600}, min_interval_s=0
            ),
            SYSTEM,
        )
    env = upstream_env(scripted, anthropic_key="sk-ant-upstream-0123456789")
    env["OPENAI_TIMEOUT_S"] = "1.5"  # this provider's upstream timeout (default 60 s)
    with serve(home, keys, env) as proc:
        yield proc


def _chat(gw: GatewayProcess, key: str, content: str, **headers: str) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {gw.keys[key]}", **headers},
        json={"model": "dryrun-small", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )


def test_cached_answers_never_cross_orgs_or_unbound_keys(gw: GatewayProcess) -> None:
    q = "Which tenant am I? (cache scoping)"
    first = _chat(gw, "acme-a", q)
    assert first.status_code == 200 and first.headers["x-costline-cache"] == "miss"
    same_org = _chat(gw, "acme-b", q)  # another key of the same org: shared by default
    assert same_org.headers["x-costline-cache"] == "hit"
    other = _chat(gw, "globex", q)  # another org: its own call, its own answer
    assert other.status_code == 200 and other.headers["x-costline-cache"] == "miss"
    # a key bound to no org may name any org, but never reads that org's entries
    claimed = _chat(gw, "loose", q, **{"x-costline-org": "acme"})
    assert claimed.headers["x-costline-cache"] == "miss"
    # ... and is its own tenant: another unbound key does not share its answers
    assert _chat(gw, "loose", q).headers["x-costline-cache"] == "hit"
    assert _chat(gw, "loose2", q).headers["x-costline-cache"] == "miss"
    hits = [
        e
        for e in events(gw.home, 6, timeout=15.0)
        if e.request_id == same_org.headers["x-costline-request-id"]
    ]
    assert hits and hits[0].key == "acme-b"
    other_ev = [
        e for e in events(gw.home) if e.request_id == other.headers["x-costline-request-id"]
    ]
    assert other_ev and other_ev[0].cost_picousd > 0  # globex paid for its own answer


def _text(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return str(r.json()["choices"][0]["message"]["content"])


def test_sampled_answers_are_reused_only_within_the_tenant(gw: GatewayProcess) -> None:
    """A sampling strategy that skips calls reuses the last answer of the caller's tenant
    (scoped like the response cache): never another org's, never another unbound key's."""

    def ask(key: str, content: str, **headers: str) -> httpx.Response:
        return _chat(gw, key, content, **{"x-costline-task": SAMPLED, **headers})

    acme = ask("acme-a", "acme's launch code is 4711; summarise it")
    assert "4711" in _text(acme) and "sampling" not in acme.headers["x-costline-route-reason"]
    same_org = ask("acme-b", "what did we say?")  # the org's tenant: the skip reuses its answer
    assert _text(same_org) == _text(acme)
    assert "sampling" in same_org.headers["x-costline-route-reason"]
    claimed = ask("loose", "loose asks", **{"x-costline-org": "acme"})  # names acme: not acme's
    for r, key in ((ask("globex", "globex asks"), "globex"), (claimed, "loose")):
        assert "4711" not in _text(r), key
        assert f"{key} asks" in _text(r) and "sampling" not in r.headers["x-costline-route-reason"]
    loose2 = ask("loose2", "loose2 asks")  # an unbound key is its own tenant
    assert "loose2 asks" in _text(loose2)
    # later events of each tenant reuse that tenant's own answer; a LOW (batched) one too
    assert _text(ask("globex", "globex again")) == _text(ask("globex", "globex asks"))
    low = ask("loose2", "loose2, low", **{"x-costline-criticality": "low"})
    assert _text(low) == _text(loose2)
    assert _text(ask("acme-a", "acme again")) == _text(acme)


def test_metrics_need_the_metrics_token_or_an_admins_api_token(gw: GatewayProcess) -> None:
    """/metrics names every key and its spend: not for anyone who can reach the port."""
    assert _chat(gw, "acme-a", "metrics, please").status_code == 200
    url = gw.url + "/metrics"
    bare = httpx.get(url)
    assert bare.status_code == 401 and "Bearer" in bare.headers["www-authenticate"]
    assert "acme-a" not in bare.text
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    virtual = {"Authorization": f"Bearer {gw.keys['acme-a']}"}
    assert httpx.get(url, headers=virtual).status_code == 401  # a virtual key is no admin
    viewer = make_token(gw.home, "vera", "viewer")
    got = httpx.get(url, headers={"Authorization": f"Bearer {viewer}"})
    assert got.status_code == 403 and "not an admin" in got.text
    admin = make_token(gw.home, "ada", "admin")
    ok = httpx.get(url, headers={"Authorization": f"Bearer {admin}"})
    assert ok.status_code == 200 and 'key="acme-a"' in ok.text
    scrape = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scrape.status_code == 200 and "costline_gateway_requests_total" in scrape.text


def test_an_overloaded_upstream_is_passed_through_with_its_retry_after(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """No fallback left: 503 (OpenAI wire) / 529 overloaded_error (Anthropic wire) with the
    upstream's Retry-After, so the SDKs retry when the upstream said, not a bare 502. A wait
    over 30 s is not waited by the Router (it moves on at once)."""
    busy = {"Retry-After": "40"}
    before = len(scripted.requests)
    scripted.enqueue(error(503, "The engine is currently overloaded", headers=busy))
    r = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {gw.keys['acme-a']}", "x-costline-cache": "no-store"},
        json={"model": "gpt-4o-mini", "messages": ASK},
        timeout=30,
    )
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "40" and r.headers["retry-after-ms"] == "40000"
    assert r.json()["error"]["code"] == "upstream_overloaded"
    assert "overloaded" in r.json()["error"]["message"]
    assert len(scripted.requests) == before + 1  # 40 s is over the Router's 30 s: not waited
    scripted.enqueue(error(529, "Overloaded", type="overloaded_error", headers=busy))
    a = httpx.post(
        gw.base_url + "/messages",
        headers={"x-api-key": gw.keys["acme-a"], "anthropic-version": "2023-06-01"},
        json={"model": "claude-3-5-haiku", "max_tokens": 10, "messages": ASK},
        timeout=30,
    )
    assert a.status_code == 529, a.text
    assert a.headers["retry-after"] == "40"
    assert a.json()["error"]["type"] == "overloaded_error"


def test_count_tokens_is_bound_by_the_keys_models_as_chat_is(gw: GatewayProcess) -> None:
    def count(model: str) -> httpx.Response:
        return httpx.post(
            gw.base_url + "/messages/count_tokens",
            headers={"x-api-key": gw.keys["small"], "anthropic-version": "2023-06-01"},
            json={"model": model, "messages": ASK},
            timeout=30,
        )

    ok = count("dryrun-small")
    assert ok.status_code == 200 and ok.json()["input_tokens"] > 0
    refused = count("claude-3-5-haiku")  # not in the key's models, nor in its /v1/models
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["type"] == "permission_error"
    assert "may not use model 'claude-3-5-haiku'" in refused.json()["error"]["message"]


def test_upstream_timeout_per_provider_and_per_request_is_a_504(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    """OPENAI_TIMEOUT_S=1.5 bounds each attempt (3 attempts, then 504); x-costline-timeout
    bounds a request's attempts below that."""

    def ask(model: str, **headers: str) -> tuple[httpx.Response, float]:
        t0 = time.monotonic()
        r = httpx.post(
            gw.base_url + "/chat/completions",
            headers={
                "Authorization": f"Bearer {gw.keys['acme-a']}",
                "x-costline-cache": "no-store",
                **headers,
            },
            json={"model": model, "messages": ASK},
            timeout=60,
        )
        return r, time.monotonic() - t0

    slow = delayed(openai_chat("too late"), 4.0)
    scripted.enqueue(slow, slow, slow)
    r, took = ask("gpt-4.1-mini")
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "upstream_timeout"
    assert took < 12, took  # three attempts of 1.5 s (and backoff), not 3 x 4 s
    assert scripted.pending == 0
    slower = delayed(openai_chat("too late"), 1.2)  # within the provider's 1.5 s
    scripted.enqueue(slower, slower, slower)
    r, took = ask("gpt-4.1-nano", **{"x-costline-timeout": "0.4"})
    assert r.status_code == 504, r.text
    assert took < 4, took
    assert scripted.pending == 0
    bad, _ = ask("gpt-4.1-nano", **{"x-costline-timeout": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-costline-timeout"


def _messages(gw: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/messages",
        headers={
            "x-api-key": gw.keys["acme-a"],
            "anthropic-version": "2023-06-01",
            "x-costline-cache": "no-store",
        },
        json=body,
        timeout=30,
    )


def _events(raw: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :]) for line in raw.splitlines() if line.startswith("data: ")
    ]


def test_anthropic_stream_reports_input_tokens_at_message_start(gw: GatewayProcess) -> None:
    ask = [{"role": "user", "content": "Count the tokens of this prompt, then answer briefly."}]
    body = {"model": "dryrun-small", "max_tokens": 30, "messages": ask, "stream": True}
    r = _messages(gw, body)
    assert r.status_code == 200, r.text
    evs = _events(r.text)
    start = next(e for e in evs if e["type"] == "message_start")["message"]
    final = next(e for e in evs if e["type"] == "message_delta")["usage"]
    counted = _messages(gw, {**body, "stream": False})
    plain = counted.json()["usage"]["input_tokens"]
    assert start["usage"]["input_tokens"] > 0, start
    assert start["usage"]["input_tokens"] == final["input_tokens"] == plain


def test_a_stop_sequence_hit_is_stop_reason_stop_sequence(
    gw: GatewayProcess, scripted: ScriptedServer
) -> None:
    # dryrun answers "[dryrun] Re: ..." and honours stop sequences as a model does
    body = {"model": "dryrun-small", "max_tokens": 30, "messages": ASK, "stop_sequences": ["Re:"]}
    plain = _messages(gw, body).json()
    assert plain["stop_reason"] == "stop_sequence" and plain["stop_sequence"] == "Re:"
    assert plain["content"][0]["text"] == "[dryrun] "
    streamed = _events(_messages(gw, {**body, "stream": True}).text)
    delta = next(e for e in streamed if e["type"] == "message_delta")["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "Re:"}
    no_hit = _messages(gw, {**body, "stop_sequences": ["never-in-the-answer"]}).json()
    assert no_hit["stop_reason"] == "end_turn" and no_hit["stop_sequence"] is None
    # an Anthropic upstream says which sequence it stopped at
    scripted.enqueue(
        json_reply(
            {
                "id": "msg_x",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-haiku-20241022",
                "content": [{"type": "text", "text": "1, 2, 3"}],
                "stop_reason": "stop_sequence",
                "stop_sequence": "###",
                "usage": anthropic_usage(12, 5),
            }
        )
    )
    got = _messages(gw, {**body, "model": "claude-3-5-haiku", "stop_sequences": ["###"]}).json()
    assert got["stop_reason"] == "stop_sequence" and got["stop_sequence"] == "###", got
    # an OpenAI-compatible upstream that names the stop string (vLLM's choice.stop_reason)
    scripted.enqueue(
        json_reply(
            {
                "id": "chatcmpl-x",
                "object": "chat.completion",
                "model": "gpt-4o",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "1, 2, 3"},
                        "finish_reason": "stop",
                        "stop_reason": "###",
                    }
                ],
                "usage": openai_usage(12, 5),
            }
        )
    )
    got = _messages(gw, {**body, "model": "gpt-4o", "stop_sequences": ["###"]}).json()
    assert got["stop_reason"] == "stop_sequence" and got["stop_sequence"] == "###", got
