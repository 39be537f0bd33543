"""The router counts a prompt only when something needs the count, and nothing a user sees
changes: costs, usage, price tiers, context-window errors (with the exact numbers) and usage
events are those of counting every prompt up front."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core import tokens
from core.errors import ContextWindowExceeded
from core.pricing import Catalog, load_catalog, price
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.types import ChatRequest, Message
from core.usage import Reader
from tests.bench._prompts import corpus
from tests.servers import scripted as s

FAST = RetryPolicy(max_attempts=2, base_s=0.001, cap_s=0.005)
MODEL = "gpt-4o-mini"  # 128k window


def tiered(model: str, above: int) -> Catalog:
    """The catalog with a dearer long-prompt tier for ``model`` above ``above`` tokens."""
    base = load_catalog()
    row = base.lookup(model)
    tier = replace(row, above_prompt_tokens=above, input=row.input * 2, output=row.output * 3)
    return base.with_rows([tier])


def ask(text: str, model: str = MODEL, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message("user", text)], model=model, **kw)  # type: ignore[arg-type]


def exact(req: ChatRequest, model: str = MODEL) -> int:
    return tokens.count_messages(model, list(req.messages)).tokens


def bound(req: ChatRequest, model: str = MODEL) -> int:
    """The bound itself, not the exact count of these Message objects just made."""
    tokens._last = ("", (), 0)
    return tokens.count_upper_bound(model, req.messages)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every exact prompt count made through core.tokens.count_messages, by prompt size."""
    seen: list[int] = []
    real = tokens.count_messages

    def spy(model: str, messages):  # type: ignore[no-untyped-def]
        got = real(model, messages)
        seen.append(got.tokens)
        return got

    monkeypatch.setattr(tokens, "count_messages", spy)
    return seen


def make(scripted_server: s.ScriptedServer, catalog: Catalog | None = None) -> Router:
    settings = Settings.from_env().with_provider(
        ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-123456")
    )
    return Router(settings, catalog=catalog, retry=FAST, seed=1, controls=False)


def test_a_provider_that_reports_usage_needs_no_count(scripted_server, counted):
    scripted_server.enqueue(s.openai_chat("fine", usage=s.openai_usage(1000, 200)))
    with make(scripted_server) as router:
        done = router.complete(ask("how much did we spend on the summariser last week?"))
    assert counted == []  # the bound decided the window and the tier
    row = load_catalog().lookup(MODEL)
    assert done.cost.total == 1000 * row.input + 200 * row.output
    assert not done.usage.estimated and done.usage.input_tokens == 1000


def test_usage_not_reported_is_estimated_from_the_exact_count(scripted_server, counted):
    scripted_server.enqueue(s.openai_stream(["a quick ", "brown fox"], usage=None))
    req = ask("naïve café résumé, 日本語 and 😀 " * 20)
    with make(scripted_server) as router:
        done = list(router.stream(req))[-1].completion
    assert done is not None and done.usage.estimated
    assert done.usage.input_tokens == exact(req) == counted[0]
    assert done.usage.output_tokens == tokens.count_text(MODEL, "a quick brown fox")


def test_a_prompt_whose_bound_exceeds_the_window_is_counted_and_sent(scripted_server, counted):
    req = ask("word " * 100_000, max_tokens=1000)  # 500k bytes, about 100k tokens
    n = exact(req)
    assert bound(req) > 128_000 > n + 1000
    counted.clear()
    scripted_server.enqueue(s.openai_chat("ok", usage=s.openai_usage(100_003, 1)))
    with make(scripted_server) as router:
        done = router.complete(req)
    assert done.text == "ok" and len(scripted_server.requests) == 1
    assert counted == [n]  # counted once, exactly, to decide


def test_over_the_window_the_error_carries_the_exact_numbers(scripted_server):
    req = ask("word " * 130_000, max_tokens=500)
    n = exact(req)
    with make(scripted_server) as router, pytest.raises(ContextWindowExceeded) as info:
        router.complete(req)
    err = info.value
    assert (err.tokens, err.window) == (n + 500, 128_000)
    assert f"prompt {n} + max_tokens 500 = {n + 500} tokens" in err.message
    assert scripted_server.requests == []


@pytest.mark.parametrize("repeat", [400, 1500])  # exact below / above the tier, bound above
def test_the_price_tier_is_the_exact_counts(scripted_server, repeat):
    catalog = tiered(MODEL, 1000)
    req = ask("word " * repeat)
    n = exact(req)
    assert bound(req) > 1000
    usage = s.openai_usage(n, 50)
    scripted_server.enqueue(s.openai_chat("ok", usage=usage))
    with make(scripted_server, catalog) as router:
        done = router.complete(req)
    row = catalog.lookup(MODEL, prompt_tokens=n)
    assert (row.above_prompt_tokens == 1000) is (n > 1000)
    assert done.cost == price(done.usage, row)


def test_costs_usage_and_events_match_counting_every_prompt(tmp_path, monkeypatch):
    """Over the bench's realistic prompts, with a price tier that many of them straddle (the
    exact count below it, the bound above): every cost is the one of the exact count's tier."""
    monkeypatch.setenv("COSTLINE_HOME", str(tmp_path))
    model = "dryrun-small"
    catalog = tiered(model, 60)
    reqs = corpus(200, seed=3, model=model)
    straddle = 0
    with Router(Settings.from_env(), catalog=catalog, controls=False) as router:
        for req in reqs:
            done = router.complete(req)
            n = exact(req, model)
            straddle += bound(req, model) > 60 >= n
            assert done.usage.input_tokens == n and not done.usage.estimated
            assert done.cost == price(done.usage, catalog.lookup(model, prompt_tokens=n))
            assert done.route_reason == f"{model}: requested"
        router.log.flush()
        ev = Reader(router.settings.home).events(order_by="ts", descending=False)
    assert straddle >= 10
    assert list(ev.input_tokens) == [exact(r, model) for r in reqs]
    assert set(ev.status) == {"ok"}
