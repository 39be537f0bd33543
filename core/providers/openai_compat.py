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

import httpx
import orjson

from core.providers._errors import Where, for_status, for_transport, malformed
from core.providers._http import HTTPProvider, StreamState
from core.providers.base import EmbedInputs, EmbedResult, ProviderResult, TextDelta
from core.settings import ProviderConfig
from core.types import ChatRequest, Usage

# reasoning families that take max_completion_tokens instead of max_tokens
_COMPLETION_TOKENS = re.compile(r"^(o1|o3|o4|gpt-5)(\b|[-_.])")
# servers run on your own machines, which take top_k (vLLM, llama.cpp) or ignore fields they
# do not know; the hosted APIs (OpenAI, Groq, Mistral, ...) have no top_k and no
# cache_control on content parts, and OpenAI and Mistral refuse unknown ones with a 400
SELF_HOSTED = frozenset({"ollama", "vllm", "tgi", "llamacpp"})


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


def usage_details(u: Any) -> dict[str, Any] | None:
    """The detail objects of an OpenAI usage block as the server sent them (cached, audio,
    reasoning and prediction tokens), for the caller; None when it sent none."""
    if not isinstance(u, dict):
        return None
    got = {k: u[k] for k in _DETAILS if isinstance(u.get(k), dict)}
    return got or None


_DETAILS = ("prompt_tokens_details", "completion_tokens_details")


def _fingerprint(data: dict[str, Any]) -> str | None:
    fp = data.get("system_fingerprint")
    return fp if isinstance(fp, str) else None


class OpenAIProvider(HTTPProvider):
    wire = "openai"
    terminal = "[DONE]"

    @classmethod
    def unsent(cls, config: ProviderConfig, req: ChatRequest) -> tuple[str, ...]:
        """Anthropic's ``top_k`` and ``cache_control`` breakpoints (on content parts or tool
        definitions), for a hosted API; a
        ``prompt_cache`` the caller asked for (Anthropic's top-level ``cache_control``), for
        any (OpenAI-compatible servers cache prefixes by themselves, or not at all)."""
        hosted = config.name not in SELF_HOSTED
        out = ["top_k"] if hosted and "top_k" in req.extra else []
        marks = hosted and (
            any(_marks(m.extra) for m in req.messages) or _marked_tools(req.extra.get("tools"))
        )
        if marks or req.prompt_cache:
            out.insert(0, "cache_control")
        return tuple(out)

    def build_request(
        self, req: ChatRequest, model: str, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        unsent = self.unsent(self.config, req)
        hosted = self.config.name not in SELF_HOSTED  # content-part marks taken out
        messages = []
        for m in req.messages:
            msg: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.name:
                msg["name"] = m.name
            if m.extra:
                msg.update(m.extra)
                if hosted and _marks(m.extra):
                    msg["content"] = [_unmarked(p) for p in m.extra["content"]]
                if m.role == "tool" and "is_error" in msg:  # no such field: said in the text
                    _error_result(msg)
            messages.append(msg)
        body: dict[str, Any] = {**req.extra, "model": model, "messages": messages}
        for name in unsent:
            body.pop(name, None)
        if hosted and "cache_control" in unsent and _marked_tools(body.get("tools")):
            body["tools"] = [_unmarked(t) for t in body["tools"]]
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.max_tokens is not None:
            key = "max_completion_tokens" if _COMPLETION_TOKENS.match(model) else "max_tokens"
            body[key] = req.max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        headers = {"accept": "text/event-stream" if stream else "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        if self.config.organization:
            headers["openai-organization"] = self.config.organization
        return "/chat/completions", headers, body

    async def aembed(
        self, texts: EmbedInputs, model: str, dimensions: int | None, user: str | None = None
    ) -> EmbedResult:
        """POST /embeddings (float vectors, ``user`` when given); usage.prompt_tokens when the
        server reports it. Token-ID arrays are sent as they are (OpenAI's API takes them)."""
        if not self.config.api_key:
            self._need_key(model)
        body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        if user is not None:  # as chat passes it: OpenAI's abuse monitoring's end-user id
            body["user"] = user
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        where = Where(self.config.name, model, self.config.api_key)
        url = self.config.base_url.rstrip("/") + "/embeddings"
        try:
            resp = await self.aclient.post(
                url, content=orjson.dumps(body), headers=headers, timeout=self.config.timeout_s
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise for_transport(exc, where) from exc
        if resp.status_code >= 400:
            raise for_status(resp.status_code, resp.content, resp.headers, where)
        try:
            data = orjson.loads(resp.content)
            rows = sorted(data["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in d["embedding"]] for d in rows]
            usage = data.get("usage") or {}
            tokens = usage.get("prompt_tokens")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise malformed(f"unexpected embeddings response ({exc!r})", where) from exc
        if len(vectors) != len(texts):
            raise malformed(f"{len(vectors)} embeddings for {len(texts)} inputs", where)
        return EmbedResult(vectors, tokens if isinstance(tokens, int) else None, model)

    def body_error(self, data: dict[str, Any]) -> int | None:
        """OpenRouter, vLLM and others answer some errors as a 200 ``{"error": {...}}``
        (also mid-stream, see ``parse_event``): its ``code`` when an HTTP status, else 500."""
        if not data.get("error") or data.get("choices"):
            return None
        code = data["error"].get("code") if isinstance(data["error"], dict) else None
        return code if isinstance(code, int) and 400 <= code < 600 else 500

    def parse_response(self, data: dict[str, Any], model: str) -> ProviderResult:
        choices = data["choices"]
        choice = choices[0]
        msg = choice["message"]
        text = msg.get("content") or msg.get("refusal") or ""  # a refusal is its answer
        if not isinstance(text, str):
            raise TypeError(f"message content is not a string: {text!r}")
        return ProviderResult(
            text=text,
            usage=parse_usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
            model=data.get("model") or model,
            choices=choices,
            stop_sequence=_matched_stop(choice),
            usage_details=usage_details(data.get("usage")),
            system_fingerprint=_fingerprint(data),
        )

    def parse_event(self, state: StreamState, event: str, data: str) -> str | TextDelta | None:
        if data.strip() == "[DONE]":
            state.done = True
            return None
        chunk = orjson.loads(data)
        status = self.body_error(chunk)  # vLLM, OpenRouter: an error mid-stream
        if status is not None:
            raise for_status(status, data, {}, state.where)
        if chunk.get("model"):
            state.model = chunk["model"]
        raw = chunk.get("usage")
        usage = parse_usage(raw)
        if usage is not None:
            state.usage = usage
            state.usage_details = usage_details(raw)
        fp = chunk.get("system_fingerprint")
        if fp and isinstance(fp, str):
            state.system_fingerprint = fp
        delta: str | TextDelta | None = None
        for choice in chunk.get("choices") or ():  # [] on the usage-only final chunk
            if choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
                state.stop_sequence = _matched_stop(choice) or state.stop_sequence
            d = choice.get("delta") or {}
            content = d.get("content")
            lp = choice.get("logprobs")  # the request asked for them: passed on with it
            if content:
                delta = content if not lp else TextDelta(content, lp)
            elif refusal := d.get("refusal"):  # the model declined (structured outputs)
                delta = TextDelta(refusal, lp or None, "refusal")
            for call in d.get("tool_calls") or ():
                _merge_tool_call(state.tool_calls, call)
        return delta


def _error_result(msg: dict[str, Any]) -> None:
    """A tool message with Anthropic's ``is_error`` (which OpenAI's API has not, and refuses):
    the flag taken out and, when true, its content led by "Error: " for the model to read."""
    if msg.pop("is_error") is not True:
        return
    content = msg.get("content")
    if isinstance(content, list):
        msg["content"] = [{"type": "text", "text": "Error: "}, *content]
    else:
        msg["content"] = "Error: " + (content or "")


def _marks(extra: Any) -> bool:
    """Do a message's content parts carry ``cache_control`` breakpoints?"""
    parts = extra.get("content") if extra else None
    return isinstance(parts, list) and any(
        isinstance(p, dict) and "cache_control" in p for p in parts
    )


def _marked_tools(tools: Any) -> bool:
    """Do tool definitions carry ``cache_control`` breakpoints (for Claude)?"""
    return isinstance(tools, list) and any(
        isinstance(t, dict) and "cache_control" in t for t in tools
    )


def _unmarked(part: Any) -> Any:
    if not isinstance(part, dict) or "cache_control" not in part:
        return part
    return {k: v for k, v in part.items() if k != "cache_control"}


def _merge_tool_call(calls: dict[int, dict[str, Any]], part: dict[str, Any]) -> None:
    """Fold one streamed tool-call delta into the call at its index (arguments append)."""
    i = int(part.get("index", 0))
    got = calls.setdefault(i, {"index": i, "type": "function", "function": {"arguments": ""}})
    if part.get("id"):
        got["id"] = part["id"]
    if part.get("type"):
        got["type"] = part["type"]
    fn = part.get("function") or {}
    if fn.get("name"):
        got["function"]["name"] = fn["name"]
    got["function"]["arguments"] += fn.get("arguments") or ""


def _matched_stop(choice: dict[str, Any]) -> str | None:
    """The stop string that ended a choice, where the server says (vLLM's ``stop_reason``, a
    string; an int is a stop token id, not a requested sequence)."""
    if choice.get("finish_reason") != "stop":
        return None
    got = choice.get("stop_reason")
    return got if isinstance(got, str) and got else None
