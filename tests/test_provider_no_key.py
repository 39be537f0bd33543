"""A provider's public API without its key: a clear AuthError naming the variable, sent nowhere.

README's gateway quick start calls gpt-4o-mini; without OPENAI_API_KEY the call used to go out
unauthenticated (a 401 from OpenAI, or with no network a connection error that soon opened the
circuit breaker: "no candidate model left: gpt-4o-mini circuit open"), never saying what to set.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core import ChatRequest, Message, Router
from core.errors import AuthError
from core.providers import create as make_provider
from core.settings import DEFAULT_BASE_URLS, Settings


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def sent(*_a: object, **_k: object) -> None:
        raise AssertionError("a request went out without a key")

    for cls in (httpx.Client, httpx.AsyncClient):
        monkeypatch.setattr(cls, "send", sent)
    for name in ("OPENAI", "ANTHROPIC", "GEMINI", "GROQ"):
        monkeypatch.delenv(f"{name}_API_KEY", raising=False)
        monkeypatch.delenv(f"{name}_BASE_URL", raising=False)


@pytest.mark.parametrize(
    ("provider", "model", "env"),
    [
        ("openai", "gpt-4o-mini", "OPENAI_API_KEY"),
        ("anthropic", "claude-3-5-haiku", "ANTHROPIC_API_KEY"),
        ("google", "gemini-2.0-flash", "GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(
    provider: str, model: str, env: str, no_network: None
) -> None:
    p = make_provider(Settings.from_env().provider(provider))
    req = ChatRequest(messages=[Message("user", "hi")], model=model)
    with pytest.raises(AuthError, match=env):
        p.complete(req, model)
    with pytest.raises(AuthError, match=env):
        asyncio.run(p.acomplete(req, model))
    with pytest.raises(AuthError, match=env):
        list(p.stream(req, model))


def test_router_answers_with_the_variable(no_network: None) -> None:
    with Router() as router, pytest.raises(AuthError, match="set OPENAI_API_KEY"):
        router.complete(ChatRequest(messages=[Message("user", "hi")], model="gpt-4o-mini"))


def test_only_the_public_url_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ollama, vLLM or a proxy may need no key: the call goes out as before."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"sent without a key: {request.url}")

    public = make_provider(
        Settings.from_env().provider("openai"),
        client=httpx.Client(transport=httpx.MockTransport(refuse)),
    )
    with pytest.raises(AuthError, match="OPENAI_API_KEY"):
        public.complete(ChatRequest(messages=[Message("user", "hi")]), "gpt-4o-mini")
    assert DEFAULT_BASE_URLS["ollama"][1].startswith("http://")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            200,
            json={
                "model": "m",
                "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            },
        )

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.internal/v1")
    config = Settings.from_env().provider("openai")
    p = make_provider(config, client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert p.complete(ChatRequest(messages=[Message("user", "hi")]), "gpt-4o-mini").text == "ok"
    assert seen == ["http://proxy.internal/v1/chat/completions"]
