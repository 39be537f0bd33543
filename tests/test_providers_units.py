"""Provider registry, dryrun simulator, SSE decoding and error helpers (no network)."""

from __future__ import annotations

import asyncio
import email.utils
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

import core.providers as providers
from core import clock
from core.errors import ConfigError, MalformedResponse, ProviderConnectionError
from core.providers import (
    AnthropicProvider,
    DryRunProvider,
    LocalProvider,
    OpenAIProvider,
    Provider,
    ProviderResult,
    create,
    register,
    registered,
)
from core.providers import dryrun as dryrun_mod
from core.providers import local as local_mod
from core.providers._errors import error_detail, parse_retry_after
from core.providers._sse import SSEDecoder
from core.settings import ProviderConfig
from core.types import ChatRequest, Message, Usage

DRY = ProviderConfig("dryrun", "dryrun")


def req(text: str = "How much did we spend on embeddings last week?", **kw: object) -> ChatRequest:
    return ChatRequest([Message("system", "Be brief."), Message("user", text)], **kw)  # type: ignore[arg-type]


# ---- registry ---------------------------------------------------------------------------
def test_all_is_sorted_and_complete() -> None:
    assert providers.__all__ == sorted(providers.__all__)
    public = {n for n in vars(providers) if not n.startswith("_")}
    modules = {n for n, v in vars(providers).items() if type(v) is type(sys)}
    assert public - modules - {"annotations", "httpx", "ConfigError", "ProviderConfig"} == set(
        providers.__all__
    )


@pytest.mark.parametrize(
    ("wire", "cls"),
    [
        ("openai", OpenAIProvider),
        ("anthropic", AnthropicProvider),
        ("dryrun", DryRunProvider),
        ("local", LocalProvider),
    ],
)
def test_builtins_registered(wire: str, cls: type[Provider]) -> None:
    assert registered()[wire] is cls
    p = create(ProviderConfig("x", wire))  # type: ignore[arg-type]
    assert type(p) is cls and p.name == "x"


def test_unknown_wire_is_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown wire 'smoke'") as info:
        create(ProviderConfig("weird", "smoke"))  # type: ignore[arg-type]
    assert info.value.field == "wire" and info.value.provider == "weird"


def test_plugin_registers_like_builtins() -> None:
    class Echo(Provider):
        wire = "echo"

        def complete(self, req: ChatRequest, model: str) -> ProviderResult:
            return ProviderResult(req.messages[-1].content, None, "stop", model)

        def stream(self, req: ChatRequest, model: str) -> Iterator[str | ProviderResult]:
            yield req.messages[-1].content
            yield self.complete(req, model)

    register("echo", Echo)
    try:
        p = create(ProviderConfig("e", "echo"))  # type: ignore[arg-type]
        assert p.complete(req("hi"), "m").text == "hi"
        assert asyncio.run(p.acomplete(req("yo"), "m")).text == "yo"  # default: to_thread

        async def collect() -> list[object]:
            return [x async for x in p.astream(req("ab"), "m")]

        items = asyncio.run(collect())
        assert items[0] == "ab" and isinstance(items[1], ProviderResult)
    finally:
        providers._REGISTRY.pop("echo")
    with pytest.raises(TypeError):
        register("bad", dict)  # type: ignore[arg-type]


# ---- dryrun -----------------------------------------------------------------------------
def test_dryrun_is_labelled_and_echoes() -> None:
    res = DryRunProvider(DRY).complete(req(), "gpt-4o-mini")
    assert res.text.startswith("[dryrun] ")
    assert "How much did we spend on embeddings last week?" in res.text
    assert res.model == "gpt-4o-mini" and res.finish_reason == "stop"


def test_dryrun_is_deterministic() -> None:
    a = DryRunProvider(DRY).complete(req(), "gpt-4o-mini")
    b = create(DRY).complete(req(), "gpt-4o-mini")
    assert a == b
    others = {DryRunProvider(DRY).complete(req(f"question {i}"), "m").usage for i in range(20)}
    assert len(others) > 5  # length depends on the request


@pytest.mark.parametrize("max_tokens", [None, 25, 100, 400, 5000])
def test_dryrun_length_and_usage(max_tokens: int | None) -> None:
    cap = min(max_tokens or 400, 400)
    for i in range(30):
        res = DryRunProvider(DRY).complete(req(f"q{i} " * 3, max_tokens=max_tokens), "m")
        assert res.usage is not None
        assert 20 <= res.usage.output_tokens <= cap
        assert len(res.text.split(" ")) == res.usage.output_tokens
        assert res.usage.input_tokens > 0 and not res.usage.estimated


def test_dryrun_tiny_max_tokens() -> None:
    res = DryRunProvider(DRY).complete(req(max_tokens=3), "m")
    assert res.usage == Usage(
        input_tokens=res.usage.input_tokens if res.usage else -1, output_tokens=3
    )
    assert res.text == "[dryrun] Re: How" and res.finish_reason == "length"


def test_dryrun_stream_matches_complete() -> None:
    p = DryRunProvider(DRY)
    full = p.complete(req(), "m")
    *chunks, final = list(p.stream(req(), "m"))
    assert final == full and "".join(chunks) == full.text  # type: ignore[arg-type]
    assert len(chunks) == full.usage.output_tokens  # type: ignore[union-attr]

    async def collect() -> list[object]:
        return [x async for x in p.astream(req(), "m")]

    assert asyncio.run(collect()) == [*chunks, final]
    assert asyncio.run(p.acomplete(req(), "m")) == full


def test_dryrun_input_tokens_use_token_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dryrun_mod, "_count", lambda model, messages: 1234)
    assert DryRunProvider(DRY).complete(req(), "m").usage.input_tokens == 1234  # type: ignore[union-attr]


def test_dryrun_fallback_counter() -> None:
    msgs = [Message("user", "x" * 40)]
    assert dryrun_mod._fallback_count("m", msgs) == 10 + 4 + 3
    assert dryrun_mod._fallback_count("m", []) == 0


def test_dryrun_latency_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTLINE_DRYRUN_LATENCY_MS", "40")
    p = create(DRY)
    assert isinstance(p, DryRunProvider) and p.latency_ms == 40.0
    t0 = time.perf_counter()
    p.complete(req(), "m")
    assert time.perf_counter() - t0 >= 0.039  # it slept (a lower bound, not a benchmark)
    monkeypatch.delenv("COSTLINE_DRYRUN_LATENCY_MS")
    assert create(DRY).latency_ms == 0.0  # type: ignore[attr-defined]


def test_dryrun_stream_pace_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTLINE_DRYRUN_MS_PER_TOKEN", "5")
    p = create(DRY)
    assert isinstance(p, DryRunProvider) and p.ms_per_token == 5.0
    t0 = time.perf_counter()
    chunks = [c for c in p.stream(req(), "m") if isinstance(c, str)]
    assert time.perf_counter() - t0 >= 0.005 * len(chunks) - 0.001  # it slept per chunk
    monkeypatch.delenv("COSTLINE_DRYRUN_MS_PER_TOKEN")
    assert create(DRY).ms_per_token == 0.0  # type: ignore[attr-defined]


# ---- SSE decoding -----------------------------------------------------------------------
def test_sse_decoder() -> None:
    d = SSEDecoder()
    lines = [
        ": keepalive",
        "",
        "event: ping",
        "data: {}",
        "",
        "data: a",
        "data:b",
        "id: 7",
        "retry: 10",
        "",
        "",
        "data: [DONE]",
    ]
    out = [ev for line in lines if (ev := d.feed(line)) is not None]
    assert out == [("ping", "{}"), ("", "a\nb")]
    assert d.flush() == ("", "[DONE]") and d.flush() is None


# ---- error helpers ----------------------------------------------------------------------
def test_retry_after_forms() -> None:
    now = clock.timestamp()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after-ms": "20", "retry-after": "9"}) == 0.02
    assert parse_retry_after({"retry-after": "-5"}) == 0.0
    assert parse_retry_after({}) is None


def test_error_detail() -> None:
    assert error_detail(b'{"error": {"type": "x", "message": "boom"}}') == "x: boom"
    assert error_detail(b'{"error": "plain"}') == "plain"  # TGI
    assert error_detail(b'{"detail": [{"msg": "field required"}]}').startswith("[")
    assert error_detail(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert error_detail(b"") == "(empty body)"


# ---- parsing via MockTransport (tiny unit tests) ------------------------------------------
def mock(body: bytes, content_type: str = "application/json") -> httpx.Client:
    return httpx.Client(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, content=body, headers={"content-type": content_type})
        )
    )


def test_openai_content_null_is_empty_text() -> None:
    body = b'{"choices": [{"message": {"content": null}, "finish_reason": "length"}]}'
    p = OpenAIProvider(ProviderConfig("o", "openai", "http://x/v1"), client=mock(body))
    res = p.complete(req(), "m")
    assert res == ProviderResult("", None, "length", "m")


def test_openai_usage_field_of_wrong_type_is_malformed() -> None:
    body = b'{"choices": [{"message": {"content": "a"}}], "usage": {"prompt_tokens": "7"}}'
    p = OpenAIProvider(ProviderConfig("o", "openai", "http://x/v1"), client=mock(body))
    with pytest.raises(MalformedResponse, match="unexpected response shape"):
        p.complete(req(), "m")


def test_anthropic_skips_non_text_blocks() -> None:
    body = (
        b'{"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "A"},'
        b' {"type": "text", "text": "B"}], "stop_reason": "end_turn", "model": "c"}'
    )
    p = AnthropicProvider(ProviderConfig("a", "anthropic", "http://x"), client=mock(body))
    assert p.complete(req(), "c").text == "AB"


def test_empty_stream_is_retryable() -> None:
    p = OpenAIProvider(
        ProviderConfig("o", "openai", "http://x/v1"), client=mock(b"", "text/event-stream")
    )
    with pytest.raises(ProviderConnectionError):
        list(p.stream(req(), "m"))


def test_bad_base_url_is_config_error() -> None:
    p = OpenAIProvider(ProviderConfig("o", "openai", "ftp://nowhere/v1"))
    with pytest.raises(ConfigError) as info:
        p.complete(req(), "m")
    assert info.value.field == "base_url"


# ---- local provider without its extra ------------------------------------------------------
def test_local_without_llama_cpp_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod, "_llama", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import now fails
    with pytest.raises(ConfigError, match=r"pip install 'costline\[local\]'"):
        LocalProvider(ProviderConfig("local", "local")).complete(req(), "smollm2")


def test_local_missing_model_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTLINE_LOCAL_GGUF", "/nonexistent/model.gguf")
    with pytest.raises(ConfigError, match="local model file not found"):
        local_mod.smollm2_path()
