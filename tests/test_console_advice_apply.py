"""Forecast → "Apply on Routing & Sampling" for each kind of savings advice: the editor it
opens holds the change the advice proposes (nothing saved until Save), on the tab it lives
on, and saving it really turns the saving on (the control plane's own view of the task).

Data: ten days of calls through UsageLog with their prompts logged - a 'support' task asking
the same question again and again (response cache), a 'draft' task on an Anthropic model and
a 'notes' task on an OpenAI model, both repeating a long system prompt (prompt caching)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from console import editor
from core import clock
from core.control import (
    DEFAULT_CACHE_TTL_S,
    SYSTEM,
    CacheSetting,
    ControlPlane,
    RoutingPolicy,
)
from core.insights import Advice, savings_advice
from core.pricing import load_catalog, price
from core.types import Usage
from core.usage import Reader, UsageEvent, UsageLog
from tests.console_support import ADMIN_PASSWORD, app, make_users

FORECAST = "app_pages/forecast.py"
SYSTEM_PROMPT = "system: " + "You are a careful assistant. " * 300  # over 1024 tokens


def calls(task: str, model: str, n: int, start: datetime, prompt: Any) -> list[UsageEvent]:
    catalog = load_catalog()
    usage = Usage(input_tokens=3000, output_tokens=300)
    cost = price(usage, catalog.lookup(model, start.date())).total
    return [
        UsageEvent(
            request_id=f"{task}-{i}",
            ts=start + timedelta(seconds=60 * i),
            org="a",
            user="u1",
            task=task,
            model=model,
            requested_model=model,
            provider=catalog.provider_of(model),
            input_tokens=3000,
            output_tokens=300,
            cost_picousd=cost,
            latency_ms=900.0,
            prompt=prompt(i),
            source="test",
        )
        for i in range(n)
    ]


@pytest.fixture
def home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    start = clock.now() - timedelta(days=10)
    log = UsageLog(costline_home)
    for e in (
        calls("support", "gpt-4o", 200, start, lambda i: "user: where is my order?")
        + calls("draft", "claude-sonnet-4", 200, start, lambda i: f"{SYSTEM_PROMPT}\nuser: {i}")
        + calls("notes", "gpt-4o", 200, start, lambda i: f"{SYSTEM_PROMPT}\nuser: {i}")
    ):
        log.append(e)
    log.close()
    make_users(costline_home)
    yield costline_home


def advice(kind: str, task: str) -> Advice:
    with ControlPlane() as plane, Reader(clock_home()) as reader:
        report = savings_advice(
            reader, load_catalog(), policies=plane.policies(), scores=plane.model_scores()
        )
    found = [a for a in report.items if a.kind == kind and a.task == task]
    assert found, [(a.kind, a.task) for a in report.items]
    return found[0]


def clock_home() -> Path:
    import os

    return Path(os.environ["COSTLINE_HOME"])


def apply(item: Advice) -> Any:
    """Open the Forecast page as an engineer and press the advice's Apply button."""
    at = app("engineer", timeout=240).run()
    at.switch_page(FORECAST).run()
    assert not at.exception, at.exception
    titles = [m.value for m in at.markdown if m.value.startswith("**")]
    at.button(key=f"fc_apply_{titles.index(f'**{item.title}**')}").click().run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Routing & Sampling"]
    # AppTest runs the page it last switched to again: stay on the page the app switched to
    return at.switch_page("app_pages/routing.py")


def slug(at: Any, prefix: str) -> str:
    pick = at.selectbox(key=f"{prefix}_pick").value
    return "new" if pick == editor.NEW else str(pick)


def cache_ttl(task: str) -> int:
    with ControlPlane() as plane:
        return plane.snapshot().cache_ttl(task)


def test_response_cache_advice_opens_a_new_cache_setting_turned_on(home: Path) -> None:
    at = apply(advice("response_cache", "support"))
    assert at.session_state["rt_tab"] == "Cache & rate limits"
    assert slug(at, "rt_cache") == "new"
    assert at.text_input(key="rt_cache_new_task").value == "support"
    assert at.checkbox(key="rt_cache_new_enabled").value is True
    assert at.number_input(key="rt_cache_new_ttl_s").value >= DEFAULT_CACHE_TTL_S
    assert any("where is my order" not in i.value and "advice" in i.value for i in at.info)
    with ControlPlane() as plane:
        assert plane.cache_settings() == []  # nothing saved before Save
    at.button(key="FormSubmitter:rt_cache_form_new-Save").click().run()
    assert [s.value for s in at.success] == ["Cache setting saved."]
    assert cache_ttl("support") >= DEFAULT_CACHE_TTL_S


def test_response_cache_advice_turns_a_disabled_cache_setting_back_on(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_cache_setting(CacheSetting("support", ttl_s=0, enabled=False), SYSTEM)
    assert cache_ttl("support") == 0
    at = apply(advice("response_cache", "support"))
    assert slug(at, "rt_cache") == "support"
    assert at.checkbox(key="rt_cache_support_enabled").value is True
    assert at.number_input(key="rt_cache_support_ttl_s").value > 0  # 0 would still not cache
    at.button(key="FormSubmitter:rt_cache_form_support-Save").click().run()
    assert not at.exception and cache_ttl("support") > 0


def test_response_cache_advice_edits_the_policy_when_its_ttl_decides(home: Path) -> None:
    """A policy's cache TTL wins over the task's cache setting: with 'Cache TTL (s)' 0 on
    the policy, only the policy can turn the cache on."""
    with ControlPlane() as plane:
        plane.upsert_policy(RoutingPolicy("support", "gpt-4o", cache_ttl_s=0), SYSTEM)
    at = apply(advice("response_cache", "support"))
    assert at.session_state["rt_tab"] == "Task policies"
    assert slug(at, "rt_pol") == "support"
    ttl = at.text_input(key="rt_pol_support_cache_ttl_s").value
    assert ttl and int(ttl) > 0
    at.button(key="FormSubmitter:rt_pol_form_support-Save").click().run()
    assert [s.value for s in at.success] == ["Policy saved."]
    assert cache_ttl("support") == int(ttl)
    with ControlPlane() as plane:
        (p,) = plane.policies()
    assert (p.primary_model, p.cache_ttl_s) == ("gpt-4o", int(ttl))  # the rest unchanged


def test_prompt_cache_advice_turns_on_provider_prompt_caching_for_the_task(home: Path) -> None:
    with ControlPlane() as plane:
        plane.upsert_policy(
            RoutingPolicy("draft", "claude-sonnet-4", ("claude-3-5-haiku",), max_tokens=800),
            SYSTEM,
        )
    item = advice("prompt_cache", "draft")
    assert item.model == "claude-sonnet-4"
    at = apply(item)
    assert at.session_state["rt_tab"] == "Task policies"
    assert slug(at, "rt_pol") == "draft"
    assert at.selectbox(key="rt_pol_draft_prompt_cache").value == "5m"
    assert at.selectbox(key="rt_pol_draft_primary_model").value == "claude-sonnet-4"
    assert at.multiselect(key="rt_pol_draft_fallbacks").value == ["claude-3-5-haiku"]
    at.button(key="FormSubmitter:rt_pol_form_draft-Save").click().run()
    assert [s.value for s in at.success] == ["Policy saved."]
    with ControlPlane() as plane:
        (p,) = plane.policies()
    assert (p.prompt_cache, p.primary_model, p.fallbacks, p.max_tokens) == (
        "5m",
        "claude-sonnet-4",
        ("claude-3-5-haiku",),
        800,
    )


def test_prompt_cache_advice_without_a_policy_proposes_one_on_the_advised_model(
    home: Path,
) -> None:
    at = apply(advice("prompt_cache", "draft"))
    assert slug(at, "rt_pol") == "new"
    assert at.text_input(key="rt_pol_new_task").value == "draft"
    assert at.selectbox(key="rt_pol_new_primary_model").value == "claude-sonnet-4"
    assert at.selectbox(key="rt_pol_new_prompt_cache").value == "5m"
    at.button(key="FormSubmitter:rt_pol_form_new-Save").click().run()
    with ControlPlane() as plane:
        (p,) = plane.policies()
    assert (p.task, p.primary_model, p.prompt_cache) == ("draft", "claude-sonnet-4", "5m")


def test_prompt_cache_advice_on_a_provider_that_caches_by_itself_says_so(home: Path) -> None:
    """The policy's prompt caching marks Anthropic requests only; OpenAI caches a repeated
    prefix on its own, so the advice cannot be applied by that setting: say what to do."""
    item = advice("prompt_cache", "notes")
    assert item.model == "gpt-4o"
    at = apply(item)
    notes = [i.value for i in at.info]
    assert any("openai" in n and "on its own" in n for n in notes), notes
    assert at.selectbox(key=f"rt_pol_{slug(at, 'rt_pol')}_prompt_cache").value == ""


def test_model_switch_replaces_the_advised_model_in_place() -> None:
    """Unit: the primary when it is the advised model, a fallback in its place, else the
    alternative becomes primary; never a model twice."""
    from console.inputs.routing import proposal

    def switch(model: str, alternative: str, policy: RoutingPolicy | None) -> Any:
        item = Advice("model_switch", "chat", "t", "d", 1, "high", "routing", model, alternative)
        values = proposal(item, [policy] if policy else [], [], lambda m: ("x", "openai")).values
        return values["primary_model"], values["fallbacks"]

    p = RoutingPolicy("chat", "gpt-4o-mini", ("gpt-4o", "claude-3-5-haiku"))
    assert switch("gpt-4o", "gemini-2.5-flash", p) == (
        "gpt-4o-mini",
        ["gemini-2.5-flash", "claude-3-5-haiku"],
    )
    assert switch("gpt-4o-mini", "gemini-2.5-flash", p) == (
        "gemini-2.5-flash",
        ["gpt-4o", "claude-3-5-haiku"],
    )
    assert switch("gpt-4o", "gpt-4o-mini", p) == ("gpt-4o-mini", ["claude-3-5-haiku"])
    assert switch("o3", "gemini-2.5-flash", p) == (
        "gemini-2.5-flash",
        ["gpt-4o", "claude-3-5-haiku"],
    )
    assert switch("gpt-4o", "gemini-2.5-flash", None) == ("gemini-2.5-flash", [])
