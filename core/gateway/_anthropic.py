"""Anthropic Messages shapes: POST /v1/messages (and its SSE events), count_tokens.

Text content (a string, or ``text`` blocks) and the ``system`` prompt are translated to a
Costline request routed like any other; other block types (images, tool use) are refused
by name. ``stop_sequences`` and ``top_p``/``top_k`` travel as upstream fields.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.types import ChatRequest, Completion, Message

from ._errors import bad_request
from ._openai import _is_num, _type
from ._request import Meta

STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
STOP |= {"end_turn": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}


def _text(where: str, content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(
            f"{where}: must be a string or a list of content blocks, got {_type(content)}", where
        )
    parts = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind != "text" or not isinstance(block.get("text"), str):
            raise bad_request(
                f"{where}[{j}]: only text blocks are accepted, got type {kind!r}",
                f"{where}[{j}].type",
            )
        parts.append(block["text"])
    return "".join(parts)


def messages_request(body: object, meta: Meta, request_id: str) -> ChatRequest:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_type(body)}")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise bad_request(f"model: must be a non-empty string, got {model!r}", "model")
    if model is None and meta.task is None:
        raise bad_request("model: required (or name a task in x-costline-task)", "model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        got = "an empty list" if msgs == [] else _type(msgs)
        raise bad_request(f"messages: must be a non-empty list of messages, got {got}", "messages")
    messages = []
    if body.get("system") is not None:
        messages.append(Message("system", _text("system", body["system"])))
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise bad_request(f"{where}.role: {role!r} is not user or assistant", f"{where}.role")
        messages.append(Message(role, _text(f"{where}.content", m.get("content"))))
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request(
            f"max_tokens: required, an integer >= 1, got {max_tokens!r}", "max_tokens"
        )
    temp = body.get("temperature")
    if temp is not None and (not _is_num(temp) or not 0 <= temp <= 1):
        raise bad_request(f"temperature: must be a number in [0, 1], got {temp!r}", "temperature")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"stream: must be true or false, got {stream!r}", "stream")
    extra: dict[str, Any] = {}
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad_request("stop_sequences: must be a list of strings", "stop_sequences")
        extra["stop"] = stops
    for name in ("top_p", "top_k"):
        if body.get(name) is not None:
            extra[name] = body[name]
    for name in ("tools", "tool_choice"):
        if body.get(name):
            raise bad_request(f"{name}: tool use is not supported on /v1/messages", name)
    user = (
        (body.get("metadata") or {}).get("user_id")
        if isinstance(body.get("metadata"), dict)
        else None
    )
    return ChatRequest(
        messages=messages,
        model=model,
        task=meta.task,
        max_tokens=max_tokens,
        temperature=temp,
        stream=stream,
        org=meta.org,
        project=meta.project,
        user=meta.user or (user if isinstance(user, str) else None),
        criticality=meta.criticality,  # type: ignore[arg-type]
        tags=meta.tags,
        cache=meta.cache and not extra,
        request_id=request_id,
        extra=extra,
    )


def _usage(done: Completion) -> dict[str, int]:
    u = done.usage
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
    }


def _costline(done: Completion) -> dict[str, Any]:
    from ._openai import costline_json

    return costline_json(done)


def stop_reason(done: Completion) -> str:
    f = done.finish_reason or "stop"
    return STOP.get(f, "end_turn")


def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("req_")


def message_response(done: Completion) -> bytes:
    return orjson.dumps(
        {
            "id": message_id(done.request_id),
            "type": "message",
            "role": "assistant",
            "model": done.model,
            "content": [{"type": "text", "text": done.text}],
            "stop_reason": stop_reason(done),
            "stop_sequence": None,
            "usage": _usage(done),
            "costline": _costline(done),
        }
    )


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


def stream_start(request_id: str, model: str, input_tokens: int) -> bytes:
    message: dict[str, Any] = {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 0},
    }
    return (
        event("message_start", {"message": message})
        + event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        + event("ping", {})
    )


def stream_delta(text: str) -> bytes:
    return event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})


def stream_end(done: Completion) -> bytes:
    delta = {"stop_reason": stop_reason(done), "stop_sequence": None}
    return (
        event("content_block_stop", {"index": 0})
        + event(
            "message_delta", {"delta": delta, "usage": _usage(done), "costline": _costline(done)}
        )
        + event("message_stop", {})
    )


def count_request(body: object) -> list[Message]:
    """The messages of a count_tokens body (same rules as /v1/messages, no max_tokens)."""
    if isinstance(body, dict) and "max_tokens" not in body:
        body = {**body, "max_tokens": 1}
    req = messages_request(body, Meta(task="count"), "req_count")
    return req.messages
