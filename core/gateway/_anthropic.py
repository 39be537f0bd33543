"""Anthropic Messages shapes: POST /v1/messages (and its SSE events), count_tokens.

Content blocks become a Costline request routed like any other:

    | block (request)              | becomes (OpenAI-compatible upstream)                  |
    |------------------------------|-------------------------------------------------------|
    | text, ``system``             | the message's text                                    |
    | image (base64 or url source) | an ``image_url`` content part (a data: URL for base64) |
    | tool_use (assistant)         | ``tool_calls`` of the assistant message               |
    | tool_result (user)           | a ``tool`` message before the user's other content    |
    | thinking, redacted_thinking  | dropped (only Anthropic reads them back)              |
    | ``tools``, ``tool_choice``   | OpenAI ``tools`` (functions), ``tool_choice``         |
    | ``metadata.user_id``         | OpenAI ``user`` (and the call's user)                 |

The answer's ``tool_calls`` come back as ``tool_use`` blocks (``stop_reason: tool_use``),
streamed as ``input_json_delta`` events (``Writer``: piece by piece when the upstream
streamed them, as Claude does; else whole, after the text). A model on the Anthropic wire
gets these fields back as Anthropic blocks from its provider (docs/gateway.md, "Tool calling
with Claude"). Other block types (documents, server tools such as web search) are refused
by name with a 400. ``cache_control`` marks on text blocks are kept (as content parts) for
an Anthropic upstream. ``stop_sequences`` and ``top_p``/``top_k`` travel as upstream fields
(an upstream without ``top_k`` is not sent it, and the answer names it, as it names fields
not read here: ``x-costline-unsent-params``, docs/gateway.md); an answer a
stop sequence ended is ``stop_reason: stop_sequence`` with ``stop_sequence`` set (when the
upstream says which: Anthropic, vLLM's ``stop_reason``, dryrun). A stream's ``message_start``
carries the prompt's counted input tokens; ``message_delta`` the upstream's usage.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.cache import NOT_IN_ANSWER
from core.providers import ToolDelta
from core.types import ChatRequest, Completion, Message

from ._errors import bad_request
from ._openai import _is_num, _type
from ._request import Meta

STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
STOP |= {"content_filter": "refusal"}
# an Anthropic upstream's own stop reasons (Anthropic wire to Anthropic wire) as they are
STOP |= {r: r for r in ("end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal")}
STOP |= {r: r for r in ("pause_turn", "model_context_window_exceeded")}


def _text(where: str, content: object) -> str:
    """Text only (``system``, tool results): a string or a list of text blocks."""
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
                f"{where}[{j}]: only text blocks are accepted here, got type {kind!r}",
                f"{where}[{j}].type",
            )
        parts.append(block["text"])
    return "".join(parts)


def _blocks(where: str, content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(
            f"{where}: must be a string or a list of content blocks, got {_type(content)}", where
        )
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_request(
                f"{where}[{j}]: must be an object with a 'type'", f"{where}[{j}].type"
            )
    return content


def _marked(where: str, block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """``part`` with the block's ``cache_control`` breakpoint, when it has one (an object;
    else a 400 naming it): sent to an Anthropic upstream, not to OpenAI-compatible ones."""
    mark = block.get("cache_control")
    if mark is None:
        return part
    if not isinstance(mark, dict) or not isinstance(mark.get("type"), str):
        raise bad_request(
            f"{where}.cache_control: must be an object with a type, got {_type(mark)}",
            f"{where}.cache_control",
        )
    return {**part, "cache_control": mark}


def _system(content: object) -> Message:
    """The system prompt: its text, and its blocks when one carries a cache breakpoint."""
    text = _text("system", content)
    if not isinstance(content, list) or not any(
        b.get("cache_control") is not None for b in content
    ):
        return Message("system", text)
    parts = [
        _marked(f"system[{j}]", b, {"type": "text", "text": b["text"]})
        for j, b in enumerate(content)
    ]
    return Message("system", text, None, {"content": parts})


def _image(where: str, block: dict[str, Any]) -> dict[str, Any]:
    src = block.get("source")
    kind = src.get("type") if isinstance(src, dict) else None
    if kind == "base64" and isinstance(src, dict):
        media, data = src.get("media_type"), src.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise bad_request(f"{where}.source: media_type and data must be strings", where)
        url = f"data:{media};base64,{data}"
    elif kind == "url" and isinstance(src, dict) and isinstance(src.get("url"), str):
        url = src["url"]
    else:
        raise bad_request(
            f"{where}.source: an image source of type base64 or url is needed, got {kind!r}",
            f"{where}.source",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_call(where: str, block: dict[str, Any]) -> dict[str, Any]:
    ident, name, args = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(ident, str) or not isinstance(name, str):
        raise bad_request(f"{where}: a tool_use block needs string id and name", where)
    if not isinstance(args, dict):
        raise bad_request(f"{where}.input: must be an object", f"{where}.input")
    arguments = orjson.dumps(args).decode()
    return {"id": ident, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool_result(where: str, block: dict[str, Any]) -> Message:
    ident = block.get("tool_use_id")
    if not isinstance(ident, str):
        raise bad_request(f"{where}.tool_use_id: required, a string", f"{where}.tool_use_id")
    content = block.get("content", "")
    if block.get("cache_control") is not None or _rich_result(content):
        m = _tool_result_parts(where, ident, block, content)
    else:
        m = Message("tool", _text(f"{where}.content", content), None, {"tool_call_id": ident})
    if block.get("is_error") is True:  # Claude's own field; OpenAI's reads "Error: " text
        return Message("tool", m.content, None, {**(m.extra or {}), "is_error": True})
    return m


def _rich_result(content: object) -> bool:
    """Does a tool_result's content hold images or cache breakpoints (kept as parts)?"""
    return isinstance(content, list) and any(
        isinstance(b, dict) and (b.get("type") == "image" or b.get("cache_control") is not None)
        for b in content
    )


def _tool_result_parts(where: str, ident: str, block: dict[str, Any], content: object) -> Message:
    """A tool result with images or cache breakpoints: its content as parts (text, with
    their marks, and image_url), sent to Claude as the tool_result's content blocks. A
    breakpoint on the tool_result block itself goes on its last part (the same place in
    the prompt)."""
    items = [{"type": "text", "text": content}] if isinstance(content, str) else content
    items = _blocks(f"{where}.content", items)
    parts: list[dict[str, Any]] = []
    for j, b in enumerate(items):
        at = f"{where}.content[{j}]"
        if b["type"] == "text" and isinstance(b.get("text"), str):
            if b["text"]:
                parts.append(_marked(at, b, {"type": "text", "text": b["text"]}))
        elif b["type"] == "image":
            parts.append(_marked(at, b, _image(at, b)))
        else:
            raise bad_request(
                f"{at}: only text and image blocks are accepted in a tool_result, got type "
                f"{b['type']!r}",
                f"{at}.type",
            )
    if parts and block.get("cache_control") is not None:
        parts[-1] = _marked(where, block, parts[-1])
    text = "".join(p["text"] for p in parts if p["type"] == "text")
    extra: dict[str, Any] = {"tool_call_id": ident}
    if parts:
        extra["content"] = parts
    return Message("tool", text, None, extra)


def _user(where: str, content: object) -> list[Message]:
    """Tool results first (they answer the previous assistant turn), then the rest."""
    out: list[Message] = []
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    rich = False
    for j, block in enumerate(_blocks(where, content)):
        at, kind = f"{where}[{j}]", block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise bad_request(f"{at}.text: must be a string", f"{at}.text")
            texts.append(block["text"])
            part = _marked(at, block, {"type": "text", "text": block["text"]})
            rich = rich or "cache_control" in part
            parts.append(part)
        elif kind == "image":
            parts.append(_image(at, block))
            rich = True
        elif kind == "tool_result":
            out.append(_tool_result(at, block))
        else:
            raise bad_request(_unsupported(at, kind), f"{at}.type")
    if parts:
        extra = {"content": parts} if rich else None
        out.append(Message("user", "".join(texts), None, extra))
    return out


def _assistant(where: str, content: object) -> Message:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(where, content)):
        at, kind = f"{where}[{j}]", block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise bad_request(f"{at}.text: must be a string", f"{at}.text")
            texts.append(block["text"])
            parts.append(_marked(at, block, {"type": "text", "text": block["text"]}))
        elif kind == "tool_use":
            calls.append(_tool_call(at, block))
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise bad_request(_unsupported(at, kind), f"{at}.type")
    text = "".join(texts)
    if not calls:
        marked = any("cache_control" in p for p in parts)
        return Message("assistant", text, None, {"content": parts} if marked else None)
    return Message("assistant", text, None, {"content": text or None, "tool_calls": calls})


def _unsupported(where: str, kind: object) -> str:
    return (
        f"{where}: content blocks of type {kind!r} are not supported through Costline "
        "(text, image, tool_use and tool_result are)"
    )


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    """Anthropic ``tools``/``tool_choice`` as OpenAI fields."""
    out: dict[str, Any] = {}
    tools = body.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise bad_request("tools: must be a list of tools", "tools")
        funcs = []
        for i, t in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise bad_request(f"{where}: must be an object with a name", where)
            if t.get("type") not in (None, "custom") or "input_schema" not in t:
                raise bad_request(
                    f"{where}: server tool {t.get('type') or t['name']!r} is not supported "
                    "through Costline (client tools with an input_schema are)",
                    f"{where}.type",
                )
            fn: dict[str, Any] = {"name": t["name"], "parameters": t["input_schema"]}
            if isinstance(t.get("description"), str):
                fn["description"] = t["description"]
            # a cache breakpoint: sent to Claude, taken out (and named) for hosted APIs
            funcs.append(_marked(where, t, {"type": "function", "function": fn}))
        out["tools"] = funcs
    choice = body.get("tool_choice")
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind == "auto":
            out["tool_choice"] = "auto"
        elif kind == "any":
            out["tool_choice"] = "required"
        elif kind == "none":
            out["tool_choice"] = "none"
        elif kind == "tool" and isinstance(choice.get("name"), str):
            out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            raise bad_request(
                f"tool_choice: type must be auto, any, tool (with a name) or none, got {kind!r}",
                "tool_choice",
            )
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False
    return out


# the /v1/messages fields Costline reads; any other (thinking, service_tier, ...) is not sent
# upstream, and the answer names it in x-costline-unsent-params
READ = frozenset({"model", "messages", "system", "max_tokens", "temperature", "stream"})
READ |= {"stop_sequences", "top_p", "top_k", "tools", "tool_choice", "metadata", "cache_control"}


def ignored_fields(body: object) -> tuple[str, ...]:
    """The request's fields Costline does not read (and so sends nowhere), sorted."""
    if not isinstance(body, dict):
        return ()
    return tuple(sorted(k for k, v in body.items() if k not in READ and v is not None))


def metadata_user(body: object) -> str | None:
    """``metadata.user_id`` of a /v1/messages body (None without one): the call's user unless
    x-costline-user or the key names one. Not a claim a bound key refuses, as OpenAI's ``user``
    is: Anthropic clients (Claude Code) send an opaque one on every call. A ``metadata`` that is
    not an object, a ``user_id`` that is not a string, or another metadata field is a 400
    naming it (Anthropic has no other)."""
    if not isinstance(body, dict) or body.get("metadata") is None:
        return None
    meta = body["metadata"]
    if not isinstance(meta, dict):
        raise bad_request(f"metadata: must be an object, got {_type(meta)}", "metadata")
    for name in meta:
        if name != "user_id":
            raise bad_request(
                f"metadata.{name}: not supported (metadata takes user_id only)",
                f"metadata.{name}",
            )
    user = meta.get("user_id")
    if user is not None and not isinstance(user, str):
        raise bad_request(
            f"metadata.user_id: must be a string, got {_type(user)}", "metadata.user_id"
        )
    return user or None


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
        messages.append(_system(body["system"]))
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise bad_request(f"{where}.role: {role!r} is not user or assistant", f"{where}.role")
        content = m.get("content")
        if role == "user":
            messages.extend(_user(f"{where}.content", content))
        else:
            messages.append(_assistant(f"{where}.content", content))
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
    extra.update(_tools(body))
    prompt_cache = _prompt_cache(body.get("cache_control"))
    user_id = metadata_user(body)
    if user_id is not None:  # OpenAI's field; the Anthropic provider sends metadata.user_id
        extra["user"] = user_id
    return ChatRequest(
        messages=messages,
        model=model,
        task=meta.task,
        max_tokens=max_tokens,
        temperature=temp,
        stream=stream,
        org=meta.org,
        project=meta.project,
        user=meta.user or user_id,  # x-costline-user, or the key's bound user, first
        criticality=meta.criticality,  # type: ignore[arg-type]
        tags=meta.tags,
        cache=meta.cache
        and extra.keys() <= NOT_IN_ANSWER
        and all(m.extra is None or _text_only(m.extra) for m in messages),
        request_id=request_id,
        extra=extra,
        timeout=meta.timeout,
        prompt_cache=prompt_cache,
    )


def _text_only(extra: Any) -> bool:
    """Text blocks kept only for their cache breakpoints: the answer is the one their text
    gives, which the response cache's key holds (so the request stays cacheable)."""
    parts = extra.get("content")
    return (
        extra.keys() == {"content"}
        and isinstance(parts, list)
        and all(isinstance(p, dict) and p.get("type") == "text" for p in parts)
    )


def _prompt_cache(mark: object) -> str | None:
    """The request's top-level ``cache_control`` (Anthropic's automatic caching) as the
    Router's ``prompt_cache`` TTL: the Anthropic provider marks the system prompt and the
    last message. None without one; a malformed one is a 400 naming it."""
    if mark is None:
        return None
    ttl = mark.get("ttl", "5m") if isinstance(mark, dict) else None
    if not isinstance(mark, dict) or mark.get("type") != "ephemeral" or ttl not in ("5m", "1h"):
        raise bad_request(
            f"cache_control: must be {{'type': 'ephemeral'}} with an optional ttl of 5m or "
            f"1h, got {mark!r}",
            "cache_control",
        )
    return str(ttl)


def _usage(done: Completion) -> dict[str, Any]:
    u = done.usage
    hour = min(u.cache_write_1h_tokens, u.cache_write_tokens)
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_creation": {  # the writes by TTL, as Anthropic reports them
            "ephemeral_5m_input_tokens": u.cache_write_tokens - hour,
            "ephemeral_1h_input_tokens": hour,
        },
    }


def _costline(done: Completion) -> dict[str, Any]:
    from ._openai import costline_json

    return costline_json(done)


def stop_reason(done: Completion) -> str:
    """Anthropic's stop_reason: ``stop_sequence`` when one of the request's stop sequences
    ended the answer (the upstream said which: Anthropic, vLLM, dryrun); ``tool_use`` when
    the answer calls tools, whatever finish reason the server gave."""
    if done.stop_sequence is not None:
        return "stop_sequence"
    f = done.finish_reason or "stop"
    reason = STOP.get(f, "end_turn")
    if reason == "end_turn" and _calls_tools(done):  # Ollama, llama.cpp: tool calls + "stop"
        return "tool_use"
    return reason


def _calls_tools(done: Completion) -> bool:
    msg = (done.choices[0].get("message") or {}) if done.choices else {}
    return bool(msg.get("tool_calls"))


def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("req_")


def tool_uses(done: Completion) -> list[dict[str, Any]]:
    """The answer's OpenAI ``tool_calls`` as Anthropic ``tool_use`` blocks."""
    msg = (done.choices[0].get("message") or {}) if done.choices else {}
    blocks = []
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw)
        except orjson.JSONDecodeError:
            args = {"arguments": raw}  # the model wrote something that is not JSON
        ident = call.get("id") or ""
        blocks.append({"type": "tool_use", "id": ident, "name": fn.get("name"), "input": args})
    return blocks


def message_response(done: Completion) -> bytes:
    content: list[dict[str, Any]] = [{"type": "text", "text": done.text}]
    calls = tool_uses(done)
    if calls:
        content = [*(content if done.text else []), *calls]
    return orjson.dumps(
        {
            "id": message_id(done.request_id),
            "type": "message",
            "role": "assistant",
            "model": done.model,
            "content": content,
            "stop_reason": stop_reason(done),
            "stop_sequence": done.stop_sequence,
            "usage": _usage(done),
            "costline": _costline(done),
        }
    )


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


def input_estimate(req: ChatRequest) -> int:
    """The prompt's tokens for message_start (Anthropic reports them there, before any text):
    the offline count count_tokens gives; message_delta carries what the upstream billed."""
    from core import tokens

    return tokens.count_request(req.model or "", req.messages, req.extra).tokens


def stream_start(request_id: str, model: str, input_tokens: int) -> bytes:
    """message_start and a ping; the content blocks open as the answer streams (Writer)."""
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
    return event("message_start", {"message": message}) + event("ping", {})


TEXT_START = {"type": "text", "text": ""}


class Writer:
    """The content blocks of one streamed message, as Anthropic streams them: a block opens
    with its first delta (text, or a tool call's ``tool_use`` with an empty input) and
    closes when the next one opens or the message ends; a tool call's arguments follow as
    ``input_json_delta`` events at its block's index."""

    __slots__ = ("block", "blocks", "text")

    def __init__(self) -> None:
        self.block = -1  # the open block's index (-1: none yet)
        self.text = False  # the open block is a text block
        self.blocks: dict[int, int] | None = None  # streamed tool call index -> block index

    def _open(self, block: dict[str, Any]) -> bytes:
        out = event("content_block_stop", {"index": self.block}) if self.block >= 0 else b""
        self.block += 1
        self.text = block["type"] == "text"
        return out + event("content_block_start", {"index": self.block, "content_block": block})

    def delta(self, text: str) -> bytes:
        out = b"" if self.text else self._open(TEXT_START)
        return out + event(
            "content_block_delta",
            {"index": self.block, "delta": {"type": "text_delta", "text": text}},
        )

    def tool(self, piece: ToolDelta) -> bytes:
        """A streamed piece of a tool call: its tool_use block opens with its id and name;
        its arguments are input_json_delta events."""
        out = b""
        if piece.id is not None:
            start: dict[str, Any] = {"type": "tool_use", "id": piece.id, "name": piece.name}
            start["input"] = {}
            out = self._open(start)
            self.blocks = self.blocks or {}
            self.blocks[piece.index] = self.block
        at = self.blocks.get(piece.index) if self.blocks else None
        if at is None or not piece.arguments:
            return out
        partial = {"type": "input_json_delta", "partial_json": piece.arguments}
        return out + event("content_block_delta", {"index": at, "delta": partial})

    def end(self, done: Completion) -> bytes:
        """The last blocks (an upstream's tool calls not streamed piece by piece: each whole,
        after the text), message_delta with the usage, message_stop."""
        out = b""
        if self.blocks is None:
            calls = tool_uses(done)
            if self.block < 0 and not calls:
                out += self._open(TEXT_START)  # an empty answer: one empty text block
            for block in calls:
                out += self._open({**block, "input": {}})
                partial = orjson.dumps(block["input"]).decode()
                out += event(
                    "content_block_delta",
                    {
                        "index": self.block,
                        "delta": {"type": "input_json_delta", "partial_json": partial},
                    },
                )
        if self.block >= 0:
            out += event("content_block_stop", {"index": self.block})
        delta = {"stop_reason": stop_reason(done), "stop_sequence": done.stop_sequence}
        return (
            out
            + event(
                "message_delta",
                {"delta": delta, "usage": _usage(done), "costline": _costline(done)},
            )
            + event("message_stop", {})
        )


def count_request(body: object) -> ChatRequest:
    """The request of a count_tokens body (same rules as /v1/messages, no max_tokens):
    its messages, and its tools as the call would send them."""
    if isinstance(body, dict) and "max_tokens" not in body:
        body = {**body, "max_tokens": 1}
    return messages_request(body, Meta(task="count"), "req_count")
