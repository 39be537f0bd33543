"""Provider wires and pricing rules end to end: the Router against the real scripted HTTP
server, with the usage events it logged. xAI and Cohere over the OpenAI-compatible wire,
the OpenAI-Organization header, Anthropic cache_control from a task policy (and the saving
it records), batch without a batch API and prompts over the context window (flagged)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.control import ControlPlane, RoutingPolicy
from core.controls import Controls
from core.errors import ConfigError
from core.pricing import FLAG_BATCH_UNAVAILABLE, FLAG_OVER_CONTEXT, load_catalog
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Message
from core.usage import Reader, UsageEvent
from tests.servers import scripted as s
from tests.servers.scripted import ScriptedServer
from tests.test_controls_support import ENGINEER, make_plane

M = 10**6  # pUSD per token for USD 1 per 1M tokens


def ask(**kw: Any) -> ChatRequest:
    msgs = [Message("system", "You are terse."), Message("user", "Summarise the bill.")]
    return ChatRequest(messages=msgs, max_tokens=50, **kw)


def events(router: Router) -> list[UsageEvent]:
    router.log.flush()
    return Reader(router.settings.home).fetch()


@pytest.fixture
def env(scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> ScriptedServer:
    """Every provider pointed at the scripted server, with a key."""
    for name in ("OPENAI", "XAI", "COHERE", "DEEPSEEK"):
        monkeypatch.setenv(f"{name}_BASE_URL", scripted_server.openai_url)
        monkeypatch.setenv(f"{name}_API_KEY", f"{name.lower()}-key-0123456789")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", scripted_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-key-0123456789")
    return scripted_server


@pytest.fixture
def router(env: ScriptedServer) -> Iterator[Router]:
    with Router(Settings.from_env(), controls=False) as r:
        yield r


@pytest.mark.parametrize(
    ("model", "provider", "inp", "out"),
    [("grok-4", "xai", 3_000_000, 15_000_000), ("command-r", "cohere", 150_000, 600_000)],
)
def test_xai_and_cohere_over_the_openai_wire(
    env: ScriptedServer, router: Router, model: str, provider: str, inp: int, out: int
) -> None:
    env.enqueue(s.openai_chat("ok", model=model, usage=s.openai_usage(1_000, 200)))
    done = router.complete(ask(model=model))
    sent = env.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == model
    assert sent.headers["authorization"] == f"Bearer {provider}-key-0123456789"
    assert done.provider == provider and done.cost.total == 1_000 * inp + 200 * out
    (ev,) = events(router)
    assert (ev.provider, ev.cost_picousd, ev.price_flags) == (provider, done.cost.total, ())


def test_openai_organization_header(env: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-costline")
    with Router(Settings.from_env(), controls=False) as r:
        r.complete(ask(model="gpt-4o-mini"))
    assert env.requests[-1].headers["openai-organization"] == "org-costline"
    assert "openai-organization" not in _sent_to(env, "xai", "grok-3")


def _sent_to(env: ScriptedServer, provider: str, model: str) -> dict[str, str]:
    with Router(Settings.from_env(), controls=False) as r:
        r.complete(ask(model=model))
    assert r.catalog.provider_of(model) == provider
    return env.requests[-1].headers


def test_batch_on_a_provider_without_a_batch_api_is_flagged(
    env: ScriptedServer, router: Router
) -> None:
    env.enqueue(s.openai_chat("ok", model="deepseek-chat", usage=s.openai_usage(1_000, 100)))
    done = router.complete(ask(model="deepseek-chat", batch=True))
    row = load_catalog().lookup("deepseek-chat")
    assert done.cost.total == 1_000 * row.input + 100 * row.output  # type: ignore[operator]
    assert done.cost.flags == (FLAG_BATCH_UNAVAILABLE,)
    (ev,) = events(router)
    assert ev.price_flags == (FLAG_BATCH_UNAVAILABLE,)


def test_a_reported_prompt_over_the_context_window_is_flagged(
    env: ScriptedServer, router: Router
) -> None:
    # gpt-4's window is 8,192 tokens; the provider reports 9,000 prompt tokens
    env.enqueue(s.openai_chat("ok", model="gpt-4", usage=s.openai_usage(9_000, 10)))
    done = router.complete(ask(model="gpt-4"))
    assert done.cost.total == 9_000 * 30 * M + 10 * 60 * M
    (ev,) = events(router)
    assert ev.price_flags == (FLAG_OVER_CONTEXT,)


# ---- Anthropic prompt caching from the task's routing policy ----------------------------
def policy_router(plane: ControlPlane, ttl: str | None) -> Router:
    plane.upsert_policy(
        RoutingPolicy(task="bill", primary_model="claude-sonnet-4-5", prompt_cache=ttl), ENGINEER
    )
    controls = Controls(load_catalog(), plane=plane, poll_s=0.02)
    return Router(Settings.from_env(), controls=controls)


def cached_reply(read: int, write: int, hour: int) -> s.Reply:
    usage: dict[str, Any] = s.anthropic_usage(
        input=40, output=20, cache_read=read, cache_write=write
    )
    usage["cache_creation"] = {
        "ephemeral_5m_input_tokens": write - hour,
        "ephemeral_1h_input_tokens": hour,
    }
    return s.anthropic_message("ok", model="claude-sonnet-4-5", usage=usage)


def test_policy_prompt_cache_sends_cache_control_and_records_the_saving(
    env: ScriptedServer,
) -> None:
    plane = make_plane()
    env.enqueue(cached_reply(read=900, write=300, hour=0))
    with policy_router(plane, "5m") as r:
        done = r.complete(ask(task="bill"))
        (ev,) = events(r)
    body = env.requests[-1].json
    mark = {"type": "ephemeral"}
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": mark}]
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "Summarise the bill.", "cache_control": mark}
    ]
    # cost: 40 x 3.00 + 900 x 0.30 + 300 x 3.75 + 20 x 15.00 (USD per 1M)
    assert done.cost.total == 40 * 3 * M + 900 * 300_000 + 300 * 3_750_000 + 20 * 15 * M
    # saved: 900 reads x (3.00 - 0.30) less 300 writes x (3.75 - 3.00)
    assert done.saved.total == 900 * 2_700_000 - 300 * 750_000 == 2_205_000_000
    assert (ev.saved_picousd, ev.cache_write_1h_tokens) == (2_205_000_000, 0)
    plane.close()


def test_one_hour_prompt_cache(env: ScriptedServer) -> None:
    plane = make_plane()
    env.enqueue(cached_reply(read=0, write=300, hour=300))
    with policy_router(plane, "1h") as r:
        done = r.complete(ask(task="bill"))
        (ev,) = events(r)
    body = env.requests[-1].json
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert done.cost.cache_write == 300 * 6 * M  # the 1-hour rate, 2x input
    assert ev.cache_write_1h_tokens == 300 and ev.saved_picousd == -300 * 3 * M
    plane.close()


def test_no_cache_control_without_the_policy(env: ScriptedServer) -> None:
    plane = make_plane()
    with policy_router(plane, None) as r:
        r.complete(ask(task="bill"))
    body = env.requests[-1].json
    assert body["system"] == "You are terse."
    assert body["messages"][-1]["content"] == "Summarise the bill."
    with pytest.raises(ConfigError, match="prompt_cache"):
        plane.upsert_policy(
            RoutingPolicy(task="x", primary_model="claude-sonnet-4-5", prompt_cache="2h"),
            ENGINEER,
        )
    plane.close()
