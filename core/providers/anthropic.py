"""Anthropic Messages API (POST /v1/messages), streamed and not.

System messages are joined into the top-level ``system`` field. Anthropic already reports
disjoint classes: ``input_tokens`` excludes cache reads and cache writes; the 1-hour part of
the cache writes (``cache_creation.ephemeral_1h_input_tokens``) becomes
``Usage.cache_write_1h_tokens``.

Prompt caching: with ``req.prompt_cache`` ("5m" or "1h", set by a task's routing policy)
the system prompt and the last message carry ``cache_control`` breakpoints, so the prefix up
to each is written to (and later read from) Anthropic's prompt cache.

Tools: the request is OpenAI-shaped (both gateway wires make it so), translated here:

    | OpenAI (ChatRequest)                         | Anthropic Messages                          |
    |----------------------------------------------|---------------------------------------------|
    | ``tools`` (functions)                        | ``tools`` (name, description, input_schema) |
    | ``tool_choice`` auto / none / required / fn  | ``tool_choice`` auto / none / any / tool    |
    | ``parallel_tool_calls: false``               | ``tool_choice.disable_parallel_tool_use``   |
    | assistant ``tool_calls`` (arguments: JSON)   | ``tool_use`` blocks (input: the object)     |
    | ``tool`` messages (``tool_call_id``)         | ``tool_result`` blocks of one user turn     |
    | ``image_url`` parts (data: URL or https)     | ``image`` blocks (base64 or url source)     |

and the answer back: ``tool_use`` blocks become the OpenAI choice's ``tool_calls`` (its
``finish_reason`` ``tool_calls``), streamed as ``ToolDelta`` pieces from
``content_block_start`` and each ``input_json_delta``. Requests without tools pay nothing
for this: a message without ``extra`` is sent as before.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.errors import BadRequest
from core.providers._errors import ERROR_TYPES, for_status
from core.providers._http import HTTPProvider, StreamState
from core.providers.base import ProviderResult, ToolDelta
from core.settings import ProviderConfig
from core.types import ChatRequest, Message, Usage

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # used alone; a Router sends the catalog's max output instead
SAME_FIELDS = frozenset({"top_p", "top_k", "stop_sequences"})
# OpenAI fields that change the answer's shape: refused rather than silently dropped
SHAPE_FIELDS = frozenset({"functions", "response_format", "logprobs"})
# OpenAI fields translated into Anthropic's (tools, see ``_tools``)
TOOL_FIELDS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})
CHOICES = {"auto": "auto", "none": "none", "required": "any"}
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
# Anthropic stop reasons as an OpenAI choice's finish_reason (an answer with tool calls)
FINISH = {"tool_use": "tool_calls", "max_tokens": "length", "refusal": "content_filter"}


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
        if k in SAME_FIELDS or k in TOOL_FIELDS or k in ("stop", "user") or not _asks(k, v):
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
    if extra.get("tools"):
        _tools(extra, body)
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
        system = [m.content for m in req.messages if m.role == "system"]
        messages = _messages(req.messages)
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
                content = last["content"]
                if isinstance(content, str):
                    last["content"] = [{"type": "text", "text": content, "cache_control": mark}]
                elif content:  # blocks (tool results, images): the breakpoint on the last
                    last["content"] = [*content[:-1], {**content[-1], "cache_control": mark}]
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
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for b in data["content"]:
            kind = b.get("type")
            if kind == "text":
                texts.append(b["text"])
            elif kind == "tool_use":
                args = orjson.dumps(b.get("input") or {}).decode()
                fn = {"name": b["name"], "arguments": args}
                calls.append({"id": b["id"], "type": "function", "function": fn})
        text = "".join(texts)
        stop = data.get("stop_reason")
        choices = None
        if calls:  # the OpenAI wire's choice, as an OpenAI upstream would have sent it
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            msg |= {"refusal": None, "tool_calls": calls}
            finish = FINISH.get(stop or "", "stop")
            choices = [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}]
        return ProviderResult(
            text=text,
            usage=parse_usage(data.get("usage")),
            finish_reason=stop,
            model=data.get("model") or model,
            choices=choices,
            stop_sequence=_str_or_none(data.get("stop_sequence")),
        )

    def parse_event(self, state: StreamState, event: str, data: str) -> str | ToolDelta | None:
        payload = orjson.loads(data)
        kind = payload.get("type") or event
        if kind == "content_block_delta":
            delta = payload["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                return delta.get("text")  # type: ignore[no-any-return]
            if dtype == "input_json_delta":
                return _arguments(state, payload["index"], delta.get("partial_json") or "")
            return None  # thinking, signature and future delta types
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") != "tool_use":
                return None
            i = len(state.tool_calls)  # the call's place among the tool calls (OpenAI index)
            fn = {"name": block["name"], "arguments": ""}
            call = {"index": i, "id": block["id"], "type": "function", "function": fn}
            state.tool_calls[payload["index"]] = call  # by block index, for its deltas
            return ToolDelta(i, "", block["id"], block["name"])
        if kind == "content_block_stop":
            got = state.tool_calls.get(payload.get("index", -1))
            if got is not None and not got["function"]["arguments"]:
                return _arguments(state, payload["index"], "{}")  # a call without input
            return None
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
        return None  # ping and future event types


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


def _content(m: Message, i: int = 0) -> str | list[dict[str, Any]]:
    parts = m.extra.get("content") if m.extra else None
    if isinstance(parts, list) and any(
        not isinstance(p, dict) or p.get("type") != "text" for p in parts
    ):
        return _rich_blocks(i, parts)
    got = _marked_blocks(m)
    return got if got is not None else m.content


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _arguments(state: StreamState, block: int, part: str) -> ToolDelta | None:
    """A piece of the JSON input of the tool_use block at ``block`` (streamed)."""
    call = state.tool_calls.get(block)
    if call is None or not part:
        return None
    call["function"]["arguments"] += part
    return ToolDelta(call["index"], part)


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation without its system messages, as Anthropic messages: a message with
    no wire extras as its text (the usual case, no more work); tool results (``tool``
    messages) as ``tool_result`` blocks of one user turn, with the user content after them;
    tool calls as ``tool_use`` blocks; image parts as ``image`` blocks."""
    out: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the blocks of the current tool-result turn
    for i, m in enumerate(messages):
        role = m.role
        if role == "system":
            continue
        if m.extra is None:
            if results is not None and role == "user":
                if m.content:  # after the tool results, in their turn (no empty block)
                    results.append({"type": "text", "text": m.content})
            else:
                out.append(
                    {"role": "assistant" if role == "assistant" else "user", "content": m.content}
                )
            results = None
            continue
        if role == "tool":
            block = _tool_result(i, m)
            if results is None:
                results = [block]
                out.append({"role": "user", "content": results})
            else:
                results.append(block)
            continue
        if role == "assistant" and m.extra.get("tool_calls"):
            out.append({"role": "assistant", "content": _tool_uses(i, m)})
        elif results is not None and role == "user":
            content = _content(m, i)
            if isinstance(content, list):
                results.extend(content)
            elif content:
                results.append({"type": "text", "text": content})
        else:
            out.append(
                {"role": "assistant" if role == "assistant" else "user", "content": _content(m, i)}
            )
        results = None
    return out


def _tool_result(i: int, m: Message) -> dict[str, Any]:
    ident = m.extra.get("tool_call_id") if m.extra else None
    if not isinstance(ident, str) or not ident:
        raise BadRequest(
            f"messages[{i}].tool_call_id: a tool message needs the id of the call it answers",
            field=f"messages[{i}].tool_call_id",
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": ident}
    parts = m.extra.get("content") if m.extra else None
    if isinstance(parts, list) and any(
        not isinstance(p, dict) or p.get("type") != "text" or "cache_control" in p for p in parts
    ):  # images, or the caller's cache breakpoints: as blocks
        block["content"] = _rich_blocks(i, parts)
    elif m.content:
        block["content"] = m.content
    if m.extra and m.extra.get("is_error") is True:  # the tool failed: Claude's own field
        block["is_error"] = True
    return block


def _tool_uses(i: int, m: Message) -> list[dict[str, Any]]:
    """An assistant's text and ``tool_calls`` as text and ``tool_use`` blocks."""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
    calls = m.extra.get("tool_calls") if m.extra else None
    for j, call in enumerate(calls if isinstance(calls, list) else ()):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        ident = call.get("id") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not isinstance(ident, str)
        ):
            raise BadRequest(f"{where}: a tool call needs an id and a function name", field=where)
        args = fn.get("arguments") or "{}"
        try:
            data = orjson.loads(args) if isinstance(args, str) else args
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise BadRequest(
                f"{where}.function.arguments: must be a JSON object (Anthropic's tool_use "
                f"input), got {str(args)[:60]!r}",
                field=f"{where}.function.arguments",
            )
        blocks.append({"type": "tool_use", "id": ident, "name": fn["name"], "input": data})
    return blocks


def _tools(extra: dict[str, Any], body: dict[str, Any]) -> None:
    """OpenAI ``tools``, ``tool_choice`` and ``parallel_tool_calls: false`` as Anthropic's
    ``tools`` and ``tool_choice``; what has no equivalent is a 400 naming it."""
    tools = extra["tools"]
    if not isinstance(tools, list):
        raise BadRequest("tools: must be a list of tools", field="tools")
    out = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRequest(
                f"tools[{i}]: the Anthropic wire takes function tools (a function with a name)",
                field=f"tools[{i}]",
            )
        if t.get("type", "function") != "function":
            raise BadRequest(
                f"tools[{i}].type: {t.get('type')!r} tools have no Anthropic equivalent "
                "(function tools do)",
                field=f"tools[{i}].type",
            )
        params = fn.get("parameters")
        tool: dict[str, Any] = {"name": fn["name"]}
        if isinstance(fn.get("description"), str):
            tool["description"] = fn["description"]
        tool["input_schema"] = params if isinstance(params, dict) else EMPTY_SCHEMA
        if t.get("cache_control") is not None:  # a breakpoint (as LiteLLM takes it)
            tool["cache_control"] = t["cache_control"]
        out.append(tool)
    body["tools"] = out
    choice = extra.get("tool_choice")
    picked: dict[str, Any] | None = None
    if isinstance(choice, str) and choice in CHOICES:
        picked = {"type": CHOICES[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise BadRequest("tool_choice.function.name: required, a string", field="tool_choice")
        picked = {"type": "tool", "name": name}
    elif choice is not None:
        raise BadRequest(
            f"tool_choice: must be auto, none, required or a function, got {choice!r}",
            field="tool_choice",
        )
    if extra.get("parallel_tool_calls") is False and (picked or {}).get("type") != "none":
        picked = {**(picked or {"type": "auto"}), "disable_parallel_tool_use": True}
    if picked is not None:
        body["tool_choice"] = picked


def _rich_blocks(i: int, parts: list[Any]) -> list[dict[str, Any]]:
    """OpenAI content parts with an image as Anthropic blocks (text and image, marks kept)."""
    blocks = []
    for j, p in enumerate(parts):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": p["text"]}
        elif kind == "image_url":
            block = {"type": "image", "source": _image_source(i, j, p.get("image_url"))}
        else:
            raise BadRequest(
                f"messages[{i}].content[{j}]: parts of type {kind!r} have no Anthropic "
                "equivalent through Costline (text and image_url do)",
                field=f"messages[{i}].content[{j}].type",
            )
        if p.get("cache_control") is not None:
            block["cache_control"] = p["cache_control"]
        blocks.append(block)
    return blocks


def _image_source(i: int, j: int, image: Any) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    where = f"messages[{i}].content[{j}].image_url.url"
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}: required, a string", field=where)
    if not url.startswith("data:"):
        return {"type": "url", "url": url}
    head, sep, data = url[5:].partition(",")
    media, _, encoding = head.partition(";")
    if not sep or encoding != "base64" or not media:
        raise BadRequest(
            f"{where}: a data URL must be data:<media type>;base64,<data>", field=where
        )
    return {"type": "base64", "media_type": media, "data": data}
