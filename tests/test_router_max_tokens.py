"""A Claude request without max_tokens (an OpenAI-shaped one) is sent the model's maximum
output from the price catalog, not a fixed 1024 that cut long answers off, and admission's
reservation assumes exactly that many output tokens: a token budget one token short of
``prompt + max output`` refuses the call, one of exactly that admits it. Real HTTP to the
scripted Anthropic server, real control plane and budget guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import tokens
from core.control import SYSTEM, Budget, ControlPlane
from core.controls import Controls
from core.errors import BudgetExceeded
from core.pricing import load_catalog
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.state import MemoryState
from core.types import ChatRequest, Message
from tests.servers import scripted as s

MODEL = "claude-sonnet-4-5"
MSGS = [Message("user", "Write me a long essay about routers.")]


def _router(scripted_server: s.ScriptedServer, *budgets: Budget) -> Router:
    catalog = load_catalog()
    plane = ControlPlane(model_exists=catalog.has)
    for b in budgets:
        plane.upsert_budget(b, SYSTEM)
    settings = Settings.from_env().with_provider(
        ProviderConfig("anthropic", "anthropic", scripted_server.url, api_key="sk-ant-test-1234")
    )
    ctl = Controls(catalog, plane=plane, state=MemoryState("mt:"))
    return Router(settings, controls=ctl, retry=RetryPolicy(max_attempts=1))


def test_claude_default_max_tokens_is_the_catalogs_and_the_reservation_assumes_it(
    costline_home: Path, scripted_server: s.ScriptedServer
) -> None:
    catalog = load_catalog()
    out = catalog.max_output(MODEL)
    assert out > 4096  # a model whose long answers a fixed default cut off
    prompt = tokens.count_request(MODEL, MSGS, {}, "").tokens

    def budget(key: str, limit: int) -> Budget:
        return Budget(
            id=key, name=key, scope="key", scope_value=key, limit_tokens=limit, action="block"
        )

    r = _router(scripted_server, budget("short", prompt + out - 1), budget("exact", prompt + out))
    with r:
        ask = lambda key: ChatRequest(messages=MSGS, model=MODEL, key=key, cache=False)  # noqa: E731
        with pytest.raises(BudgetExceeded, match="key=short"):
            r.complete(ask("short"))
        assert scripted_server.requests == []  # refused before any upstream call
        scripted_server.enqueue(s.anthropic_message("a long essay"))
        done = r.complete(ask("exact"))
        assert done.text == "a long essay"
    sent = scripted_server.requests[-1].json
    assert sent["max_tokens"] == out


def test_a_callers_max_tokens_is_sent_as_is(
    costline_home: Path, scripted_server: s.ScriptedServer
) -> None:
    with _router(scripted_server) as r:
        scripted_server.enqueue(s.anthropic_message("short"))
        r.complete(ChatRequest(messages=MSGS, model=MODEL, max_tokens=77, cache=False))
    assert scripted_server.requests[-1].json["max_tokens"] == 77


def test_a_call_asking_for_n_answers_reserves_every_answers_output(costline_home: Path) -> None:
    """``n`` choices may each produce max_tokens, and the upstream bills every one: the
    reservation holds n x max_tokens, so a token budget one short of that refuses the call."""
    model, n, most = "dryrun-small", 3, 10
    prompt = tokens.count_request(model, MSGS, {}, "").tokens

    def budget(key: str, limit: int) -> Budget:
        return Budget(
            id=key, name=key, scope="key", scope_value=key, limit_tokens=limit, action="block"
        )

    catalog = load_catalog()
    plane = ControlPlane(model_exists=catalog.has)
    for b in (budget("short", prompt + n * most - 1), budget("exact", prompt + n * most)):
        plane.upsert_budget(b, SYSTEM)
    ctl = Controls(catalog, plane=plane, state=MemoryState("nc:"))
    with Router(Settings.from_env(), controls=ctl, retry=RetryPolicy(max_attempts=1)) as r:

        def ask(key: str) -> ChatRequest:
            return ChatRequest(
                messages=MSGS, model=model, key=key, cache=False, max_tokens=most, extra={"n": n}
            )

        with pytest.raises(BudgetExceeded, match="key=short"):
            r.complete(ask("short"))
        done = r.complete(ask("exact"))
        assert done.usage.output_tokens <= n * most
