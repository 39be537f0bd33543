"""OpenAI Chat Completions, and every server that speaks it.

Serves OpenAI, Groq, DeepSeek, Mistral, xAI, Cohere's Compatibility API, Gemini's OpenAI
endpoint, Ollama, vLLM, TGI and the llama.cpp server. ``config.organization`` is sent as the
``OpenAI-Organization`` header. Usage is normalised to Costline's disjoint classes: cached
prompt tokens are taken out of ``input_tokens`` and reasoning tokens out of
``output_tokens``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from core.providers._errors import for_status
from core.providers._http import HTTPProvider, StreamState
from core.providers.base import ProviderResult
from core.types import ChatRequest, Usage

# reasoning families that take max_completion_tokens instead of max_tokens
_COMPLETION_TOKENS = re.compile(r"^(o1|o3|o4|gpt-5)(\b|[-_.])")


def _int(d: dict[str, Any] | None, key: str) -> int:
    value = (d or {}).get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"usage field {key!r} is not an integer: {value!r}")
    return value


def parse_usage(u: Any) -> Usage | None:
    """OpenAI-style usage to disjoint classes; None when the server reported none."""
    if not isinstance(u, dict) or ("prompt_tokens" not in u and "completion_tokens" not in u):
        return None
    prompt, completion = _int(u, "prompt_tokens"), _int(u, "completion_tokens")
    cached = _int(u.get("prompt_tokens_details"), "cached_tokens")
    if not cached and "prompt_cache_hit_tokens" in u:  # DeepSeek's spelling
        cached = _int(u, "prompt_cache_hit_tokens")
    reasoning = _int(u.get("completion_tokens_details"), "reasoning_tokens")
    return Usage(
        input_tokens=max(prompt - cached, 0),
        cached_input_tokens=cached,
        output_tokens=max(completion - reasoning, 0),
        reasoning_tokens=reasoning,
    )


class OpenAIProvider(HTTPProvider):
    wire = "openai"
    terminal = "[DONE]"

    def build_request(
        self, req: ChatRequest, model: str, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        messages = []
        for m in req.messages:
            msg = {"role": m.role, "content": m.content}
            if m.name:
                msg["name"] = m.name
            messages.append(msg)
        body: dict[str, Any] = {"model": model, "messages": messages}
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.max_tokens is not None:
            key = "max_completion_tokens" if _COMPLETION_TOKENS.match(model) else "max_tokens"
            body[key] = req.max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"accept": "text/event-stream" if stream else "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        if self.config.organization:
            headers["openai-organization"] = self.config.organization
        return "/chat/completions", headers, body

    def parse_response(self, data: dict[str, Any], model: str) -> ProviderResult:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"message content is not a string: {text!r}")
        return ProviderResult(
            text=text,
            usage=parse_usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
            model=data.get("model") or model,
        )

    def parse_event(self, state: StreamState, event: str, data: str) -> str | None:
        if data.strip() == "[DONE]":
            state.done = True
            return None
        chunk = orjson.loads(data)
        if chunk.get("error") and not chunk.get("choices"):  # vLLM, OpenRouter: error mid-stream
            code = chunk["error"].get("code") if isinstance(chunk["error"], dict) else None
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise for_status(status, data, {}, state.where)
        if chunk.get("model"):
            state.model = chunk["model"]
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            state.usage = usage
        delta = None
        for choice in chunk.get("choices") or ():  # [] on the usage-only final chunk
            if choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
            content = (choice.get("delta") or {}).get("content")
            if content:
                delta = content
        return delta
