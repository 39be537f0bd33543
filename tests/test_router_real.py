"""The Router against a real OpenAI-compatible server (llama.cpp + SmolLM2) and real OTel SDK."""

from __future__ import annotations

import pytest

from core.router import Router
from core.settings import ProviderConfig, Settings
from core.types import ChatRequest, Message
from core.usage import Reader

MODEL = "llamacpp/smollm2-135m-instruct"


def ask(**kw: object) -> ChatRequest:
    msgs = [Message("system", "Answer in one short sentence."), Message("user", "Name a colour.")]
    return ChatRequest(messages=msgs, model=MODEL, max_tokens=16, temperature=0.0, **kw)  # type: ignore[arg-type]


@pytest.fixture
def real_router(llamacpp_url: str):
    settings = Settings.from_env().with_provider(
        ProviderConfig("llamacpp", "openai", llamacpp_url, timeout_s=120)
    )
    with Router(settings, controls=False) as r:
        yield r


def test_llamacpp_sync_reports_usage_and_is_logged(real_router):
    done = real_router.complete(ask(org="acme"))
    assert done.text.strip() and done.provider == "llamacpp"
    assert done.model == "smollm2-135m-instruct"
    assert not done.usage.estimated and done.usage.input_tokens > 10
    assert done.usage.output_tokens >= 1
    assert not done.cost.unpriced and done.cost.total == 0  # self-hosted default: free
    real_router.log.flush()
    ev = Reader(real_router.settings.home).events()
    assert len(ev) == 1 and ev.iloc[0].provider == "llamacpp"


async def test_llamacpp_async_and_streams(real_router):
    done = await real_router.acomplete(ask())
    assert done.text.strip()
    chunks = list(real_router.stream(ask()))
    final = chunks[-1].completion
    assert final is not None and "".join(c.text for c in chunks).strip()
    # llama.cpp's streams carry no usage block: estimated, flagged
    assert final.usage.estimated and final.usage.output_tokens >= 1
    achunks = [c async for c in real_router.astream(ask())]
    assert achunks[-1].completion is not None and achunks[-1].completion.usage.estimated


def test_self_hosted_cost_per_token_is_configurable(llamacpp_url: str):
    from datetime import date

    from core.pricing import PriceRow, load_catalog

    row = PriceRow.from_usd(
        "smollm2-135m-instruct",
        "local",
        input="0.01",
        output="0.02",
        effective_from=date(2026, 1, 1),
        context_window=2048,
    )
    catalog = load_catalog().with_rows([row])
    settings = Settings.from_env().with_provider(
        ProviderConfig("llamacpp", "openai", llamacpp_url, timeout_s=120)
    )
    with Router(settings, catalog=catalog, controls=False) as r:
        done = r.complete(ask())
    u = done.usage
    assert done.cost.total == u.input_tokens * 10_000 + u.output_tokens * 20_000


def test_otel_span_follows_genai_conventions():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings.from_env(otel=True)
    with Router(settings, tracer_provider=provider, controls=False) as r:
        done = r.complete(
            ChatRequest(
                messages=[Message("user", "hi")], model="dryrun-small", org="acme", max_tokens=40
            )
        )
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.name == "chat dryrun-small"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "dryrun-small"
    # "hi" as one user message: 3 reply-priming + 3 framing + "user" 1 + "hi" 1 tokens
    assert a["gen_ai.usage.input_tokens"] == 8 == done.usage.prompt_tokens
    # the dry run answers with one token per space-separated word (20..40 under max_tokens=40)
    out = len(done.text.split(" "))
    assert 20 <= out <= 40 and a["gen_ai.usage.output_tokens"] == out
    assert a["gen_ai.request.max_tokens"] == 40
    # dryrun-small (data/prices.csv): $0.15 per 1M input tokens, $0.60 per 1M output tokens
    assert a["costline.cost_usd"] == pytest.approx((8 * 0.15 + out * 0.60) / 1e6, rel=1e-9)
    assert a["costline.cache_hit"] is False and a["costline.org"] == "acme"
    span_ms = (span.end_time - span.start_time) / 1e6  # the span covers the call, no more
    assert 0 < span_ms <= done.latency_ms + 50


def test_otel_disabled_records_nothing():
    from core.otel import Tracer

    assert not Tracer(False).enabled
