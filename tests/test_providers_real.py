"""Real models: SmolLM2-135M behind the llama.cpp server, and in-process via llama-cpp-python."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from typing import Any

import pytest

from core.errors import ContextWindowExceeded, ProviderConnectionError
from core.providers import LocalProvider, Provider, ProviderResult, create
from core.settings import ProviderConfig
from core.types import ChatRequest, Message

MODES = ("complete", "acomplete", "stream", "astream")


def req(**kw: Any) -> ChatRequest:
    msgs = [Message("system", "You are a helpful assistant."), Message("user", "Say hello.")]
    return ChatRequest(msgs, max_tokens=8, temperature=0.0, **kw)


def call(p: Provider, mode: str, r: ChatRequest, model: str) -> tuple[list[str], ProviderResult]:
    async def agen() -> list[Any]:
        try:
            return [x async for x in p.astream(r, model)]
        finally:
            await p.aclose()

    async def acomp() -> ProviderResult:
        try:
            return await p.acomplete(r, model)
        finally:
            await p.aclose()

    with p:
        if mode == "complete":
            return [], p.complete(r, model)
        if mode == "acomplete":
            return [], asyncio.run(acomp())
        items = list(p.stream(r, model)) if mode == "stream" else asyncio.run(agen())
    *rest, final = items
    deltas = [d for d in rest if isinstance(d, str)]
    assert len(deltas) == len(rest), "only text deltas before the end"
    assert isinstance(final, ProviderResult), "stream must end with one ProviderResult"
    return deltas, final


def long_prompt() -> ChatRequest:
    return ChatRequest([Message("user", "budget " * 3000)], max_tokens=8)


# ---- llama.cpp server over the OpenAI wire -------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_llamacpp_server(llamacpp_url: str, mode: str) -> None:
    p = create(ProviderConfig("llamacpp", "openai", llamacpp_url, timeout_s=60))
    deltas, res = call(p, mode, req(), "smollm2")
    assert res.text.strip()
    assert res.finish_reason in ("stop", "length")
    if mode in ("stream", "astream"):
        assert "".join(deltas) == res.text and len(deltas) >= 1
        assert res.usage is None  # llama.cpp server streams carry no usage: router estimates
    else:
        assert res.usage is not None
        assert res.usage.input_tokens > 5 and 1 <= res.usage.output_tokens <= 8
        assert res.usage.cached_input_tokens == 0 and res.usage.reasoning_tokens == 0


def test_llamacpp_server_context_window(llamacpp_url: str) -> None:
    p = create(ProviderConfig("llamacpp", "openai", llamacpp_url, timeout_s=60))
    with pytest.raises(ContextWindowExceeded) as info:
        call(p, "complete", long_prompt(), "smollm2")
    assert info.value.provider == "llamacpp" and getattr(info.value, "status_code", 0) == 400


def test_llamacpp_server_context_window_streamed(llamacpp_url: str) -> None:
    """The server answers 200 and then an empty stream: retryable, nothing reached the caller."""
    p = create(ProviderConfig("llamacpp", "openai", llamacpp_url, timeout_s=60))
    with pytest.raises(ProviderConnectionError, match="stream closed before any event"):
        call(p, "stream", long_prompt(), "smollm2")


# ---- in-process SmolLM2 --------------------------------------------------------------------
def need_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        msg = "llama-cpp-python is not installed: pip install 'costline[local]'"
        if os.environ.get("COSTLINE_REQUIRE_SERVICES") == "1":
            pytest.fail(msg + " (COSTLINE_REQUIRE_SERVICES=1)")
        pytest.skip(msg)


@pytest.mark.parametrize("mode", MODES)
def test_local_smollm2(mode: str) -> None:
    need_llama_cpp()
    p = create(ProviderConfig("local", "local"))
    assert isinstance(p, LocalProvider)
    deltas, res = call(p, mode, req(), "smollm2-135m")
    assert res.text.strip() and res.model == "smollm2-135m"
    if mode in ("stream", "astream"):
        assert "".join(deltas) == res.text
        assert res.usage is None
    else:
        assert res.usage is not None
        assert res.usage.input_tokens > 5 and 1 <= res.usage.output_tokens <= 8


def test_local_is_deterministic_at_temperature_zero() -> None:
    need_llama_cpp()
    p = LocalProvider(ProviderConfig("local", "local"))
    assert p.complete(req(), "m").text == p.complete(req(), "m").text


def test_local_concurrent_calls_share_one_model() -> None:
    need_llama_cpp()
    from core.providers import local

    p = LocalProvider(ProviderConfig("local", "local"))

    async def both() -> list[ProviderResult]:
        return list(await asyncio.gather(p.acomplete(req(), "m"), p.acomplete(req(), "m")))

    a, b = asyncio.run(both())
    assert a.text == b.text and a.usage == b.usage
    assert local._llama is not None  # loaded once, by the first call
    first = local._llama
    LocalProvider(ProviderConfig("l3", "local")).complete(req(), "m")
    assert local._llama is first


def test_local_context_window() -> None:
    need_llama_cpp()
    with pytest.raises(ContextWindowExceeded):
        LocalProvider(ProviderConfig("local", "local")).complete(long_prompt(), "smollm2")


def test_the_router_refuses_a_prompt_over_the_local_window_itself(costline_home: object) -> None:
    """The catalog said 8192 tokens while llama.cpp ran SmolLM2 with 2048: a 3,000-token
    prompt passed the router's pre-check and came back as llama.cpp's own error after the
    model was loaded. Both now read the catalog's window; the router refuses first."""
    from core.pricing import load_catalog
    from core.providers import local
    from core.router import Router

    window = load_catalog().context_window("smollm2-135m-instruct")
    assert local.n_ctx() == window == 2048
    loaded = local._llama
    with Router(controls=False) as router:
        req = long_prompt()
        req.model = "local/smollm2-135m-instruct"
        with pytest.raises(ContextWindowExceeded, match="exceeds its context window of 2048") as e:
            router.complete(req)
    assert e.value.window == 2048 and e.value.provider == "local"
    assert local._llama is loaded  # refused before llama.cpp was asked (or loaded)
    if loaded is None and importlib.util.find_spec("llama_cpp") is not None:
        with local._lock:
            assert local._get_llama().n_ctx() == window  # what llama.cpp runs with
