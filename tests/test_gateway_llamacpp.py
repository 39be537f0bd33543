"""The gateway in front of a real llama.cpp server (SmolLM2-135M), through the openai SDK."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from tests.gateway_support import GatewayProcess, events, openai_client, serve

MODEL = "llamacpp/smollm2-135m-instruct"
ASK = [
    {"role": "system", "content": "Answer in one short sentence."},
    {"role": "user", "content": "Name a colour."},
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, llamacpp_url: str):
    home = tmp_path_factory.mktemp("gw-llamacpp")
    with serve(home, {"local": {}}, {"LLAMACPP_BASE_URL": llamacpp_url}) as proc:
        yield proc


def test_real_model_plain_and_streamed(gw: GatewayProcess) -> None:
    c = openai_client(gw, "local", timeout=120)
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=ASK, max_tokens=16, temperature=0
    )
    done = raw.parse()
    assert done.choices[0].message.content.strip()
    assert raw.headers["x-costline-provider"] == "llamacpp"
    assert raw.headers["x-costline-model"] == "smollm2-135m-instruct"
    (ev,) = events(gw.home, 1, request_id=raw.headers["x-costline-request-id"])
    assert ev.input_tokens == done.usage.prompt_tokens > 10 and not ev.usage_estimated
    assert Decimal(raw.headers["x-costline-cost-usd"]) == Decimal(ev.cost_picousd) == 0  # free
    stream = c.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-costline-cache": "no-store"},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip()
    extra = chunks[-1].model_extra["costline"]  # type: ignore[index]
    assert extra["usage_estimated"] is True  # llama.cpp streams carry no usage block: flagged
    (sev,) = events(gw.home, 1, request_id=extra["request_id"])
    assert sev.usage_estimated and sev.output_tokens >= 1


def test_real_server_error_maps_to_bad_request(gw: GatewayProcess) -> None:
    c = openai_client(gw, "local", timeout=120)
    huge = [{"role": "user", "content": "word " * 3000}]  # over its 2,048-token context
    with pytest.raises(openai.BadRequestError) as exc:
        c.chat.completions.create(model=MODEL, messages=huge, max_tokens=16)
    assert exc.value.status_code == 400
