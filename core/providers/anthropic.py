"""Anthropic Messages API (POST /v1/messages), streamed and not.

System messages are joined into the top-level ``system`` field. Anthropic already reports
disjoint classes: ``input_tokens`` excludes cache reads and cache writes; the 1-hour part of
the cache writes (``cache_creation.ephemeral_1h_input_tokens``) becomes
``Usage.cache_write_1h_tokens``.

Prompt caching: with ``req.prompt_cache`` ("5m" or "1h", set by a task's routing policy)
the system prompt and the last message carry ``cache_control`` breakpoints, so the prefix up
to each is written to (and later read from) Anthropic's prompt cache.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.errors import BadRequest
from core.providers._errors import ERROR_TYPES, for_status
from core.providers._http import HTTPProvider, StreamState
from core.providers.base import ProviderResult, text_only
from core.settings import ProviderConfig
from core.types import ChatRequest, Message, Usage

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # used alone; a Router sends the catalog's max output instead
SAME_FIELDS = frozenset({"top_p", "top_k", "stop_sequences"})
# OpenAI fields that change the answer's shape: refused rather than silently dropped
SHAPE_FIELDS = frozenset({"tools", "tool_choice", "functions", "response_format", "logprobs"})


def _n(u: dict[str, Any], key: str) -> int:
    value = u.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"usage field {key!r} is not an integer: {value!r}")
    return value


def _hour_writes(u: dict[str, Any], b: Usage) -> int:
    detail = u.get("cache_creation")
    if isinstance(detail, dict) and "ephemeral_1h_input_tokens" in detail:
        return _n(detail, "ephemeral_1h_input_tokens")
    return b.cache_write_1h_tokens


def parse_usage(u: Any, base: Usage | None = None) -> Usage | None:
    """Anthropic usage to Costline's; fields absent here are kept from ``base``."""
    if not isinstance(u, dict):
        return base
    b = base or Usage()
    return Usage(
        cache_write_1h_tokens=_hour_writes(u, b),
        input_tokens=_n(u, "input_tokens") if "input_tokens" in u else b.input_tokens,
        cached_input_tokens=(
            _n(u, "cache_read_input_tokens")
            if "cache_read_input_tokens" in u
            else b.cached_input_tokens
        ),
        cache_write_tokens=(
            _n(u, "cache_creation_input_tokens")
            if "cache_creation_input_tokens" in u
            else b.cache_write_tokens
        ),
        output_tokens=_n(u, "output_tokens") if "output_tokens" in u else b.output_tokens,
    )


def _asks(name: str, value: Any) -> bool:
    """Does an OpenAI field's value ask for something (``logprobs: false``, ``n: 1``,
    ``tools: []``, ``response_format`` text, ... ask for nothing and are not refused)?"""
    if value is None or value is False or value == [] or value == {}:
        return False
    if name == "n":
        return bool(value != 1)
    if name == "tool_choice":
        return value not in ("none", "auto")
    if name == "response_format":
        return not (isinstance(value, dict) and value.get("type") == "text")
    return True


def unsent_fields(extra: dict[str, Any]) -> tuple[str, ...]:
    """The OpenAI request fields not sent to Anthropic, which has no equivalent (seed,
    penalties, logit_bias, reasoning_effort, other metadata pairs, ...), sorted; those
    that ask for nothing are left out (and so are the refused ones, see ``passthrough``)."""
    out = []
    for k, v in extra.items():
        if k in SAME_FIELDS or k in ("stop", "user") or not _asks(k, v):
            continue
        if k in SHAPE_FIELDS or k == "n":
            continue  # refused with a 400 by passthrough
        if k == "metadata" and isinstance(v, dict) and v.keys() <= {"user_id"}:
            continue
        out.append(k)
    return tuple(sorted(out))


def passthrough(extra: dict[str, Any], body: dict[str, Any]) -> None:
    """OpenAI request fields Anthropic also has; others that would change the answer's shape
    are refused by name; the user (``metadata.user_id``, else ``user``) is sent as
    ``metadata.user_id``, the only metadata Anthropic takes; the rest (other metadata, seed,
    penalties) are not sent, and named by ``unsent_fields``."""
    user = _user_id(extra)
    if user is not None:
        body["metadata"] = {"user_id": user}
    for k, v in extra.items():
        if k in SAME_FIELDS:
            body[k] = v
        elif k == "stop" and v is not None:
            body["stop_sequences"] = [v] if isinstance(v, str) else list(v)
        elif (k in SHAPE_FIELDS or k == "n") and _asks(k, v):
            raise BadRequest(
                f"{k}: not supported by the Anthropic wire through Costline "
                "(passed through to OpenAI-compatible upstreams only)"
            )


def _user_id(extra: dict[str, Any]) -> str | None:
    meta = extra.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        return meta["user_id"]  # type: ignore[no-any-return]
    user = extra.get("user")
    return user if isinstance(user, str) else None


def _cache_control(ttl: str | None) -> dict[str, str] | None:
    """The ``cache_control`` breakpoint for a prompt-cache TTL (None: no caching asked)."""
    if not ttl:
        return None
    if ttl not in ("5m", "1h"):
        raise ValueError(f"prompt_cache must be '5m' or '1h', not {ttl!r}")
    return {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": "1h"}


class AnthropicProvider(HTTPProvider):
    wire = "anthropic"
    terminal = "message_stop"
    needs_max_tokens = True

    @classmethod
    def unsent(cls, config: ProviderConfig, req: ChatRequest) -> tuple[str, ...]:
        return unsent_fields(req.extra)

    def build_request(
        self, req: ChatRequest, model: str, stream: bool
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        text_only(req, self.config.name, model)  # images and tool calls: refused, not dropped
        system = [m.content for m in req.messages if m.role == "system"]
        messages: list[dict[str, Any]] = [
            {"role": "assistant" if m.role == "assistant" else "user", "content": _content(m)}
            for m in req.messages
            if m.role != "system"
        ]
        # the caller's own cache breakpoints win over the routing policy's (at most 4 each)
        marked = any(_marked_blocks(m) is not None for m in req.messages)
        mark = None if marked else _cache_control(req.prompt_cache)
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if marked and system:
            body["system"] = [
                b for m in req.messages if m.role == "system" for b in _text_blocks(m)
            ]
        if mark is not None:
            if system:
                body["system"] = [{"type": "text", "text": body["system"], "cache_control": mark}]
            if messages:
                last = messages[-1]
                last["content"] = [{"type": "text", "text": last["content"], "cache_control": mark}]
        if req.temperature is not None:
            body["temperature"] = req.temperature
        passthrough(req.extra, body)
        if stream:
            body["stream"] = True
        headers = {
            "anthropic-version": API_VERSION,
            "accept": "text/event-stream" if stream else "application/json",
        }
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return "/v1/messages", headers, body

    def parse_response(self, data: dict[str, Any], model: str) -> ProviderResult:
        blocks = data["content"]
        text = "".join(b["text"] for b in blocks if b.get("type") == "text")
        return ProviderResult(
            text=text,
            usage=parse_usage(data.get("usage")),
            finish_reason=data.get("stop_reason"),
            model=data.get("model") or model,
            stop_sequence=_str_or_none(data.get("stop_sequence")),
        )

    def parse_event(self, state: StreamState, event: str, data: str) -> str | None:
        payload = orjson.loads(data)
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload["delta"]
            return delta.get("text") if delta.get("type") == "text_delta" else None
        if kind == "message_start":
            msg = payload["message"]
            state.model = msg.get("model") or state.model
            state.usage = parse_usage(msg.get("usage"), state.usage)
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            state.finish_reason = delta.get("stop_reason") or state.finish_reason
            state.stop_sequence = _str_or_none(delta.get("stop_sequence")) or state.stop_sequence
            state.usage = parse_usage(payload.get("usage"), state.usage)
        elif kind == "message_stop":
            state.done = True
        elif kind == "error":
            err = payload.get("error") or {}
            status = ERROR_TYPES.get(err.get("type", ""), 500)
            raise for_status(status, data, {}, state.where)
        return None  # ping, content_block_start/stop and future event types


def _marked_blocks(m: Message) -> list[dict[str, Any]] | None:
    """A message's text parts as Anthropic text blocks when one carries the caller's
    ``cache_control`` breakpoint (kept in place), else None (the message is sent as text)."""
    parts = m.extra.get("content") if m.extra else None
    if not isinstance(parts, list) or not any(
        isinstance(p, dict) and p.get("cache_control") is not None for p in parts
    ):
        return None
    blocks = []
    for p in parts:
        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str):
            block: dict[str, Any] = {"type": "text", "text": p["text"]}
            if p.get("cache_control") is not None:
                block["cache_control"] = p["cache_control"]
            blocks.append(block)
    return blocks


def _text_blocks(m: Message) -> list[dict[str, Any]]:
    got = _marked_blocks(m)
    return got if got is not None else [{"type": "text", "text": m.content}]


def _content(m: Message) -> str | list[dict[str, Any]]:
    got = _marked_blocks(m)
    return got if got is not None else m.content


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
