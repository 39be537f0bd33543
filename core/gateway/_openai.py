"""OpenAI Chat Completions and Embeddings shapes: request bodies in, responses and SSE out.

Fields Costline reads are checked by name (a wrong type is a 400 naming the field); every
other field (tools, tool_choice, response_format, n, stop, seed, logprobs, ...) is passed
through to OpenAI-compatible upstreams as is. Such requests bypass the response cache, whose
key does not cover them; ``user`` (read as the call's user, and passed through too) does not:
it names who asked, not what the answer is.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from core.cache import NOT_IN_ANSWER
from core.call import Embeddings, EmbedRequest
from core.providers import ToolDelta
from core.types import ChatRequest, Completion, Cost, Message, Usage

from ._errors import bad_request
from ._request import Meta

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
ROLES |= {"tool": "tool"}
READ = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "stream"}
    | {"stream_options"}
)
# fields passed upstream that name who asked, not what the answer is: still cacheable
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
FINISH |= {"tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop"}
FINISH |= {"model_context_window_exceeded": "length"}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type(v: object) -> str:
    return "null" if v is None else type(v).__name__


def message(i: int, m: object) -> Message:
    """One OpenAI message; its text is what Costline counts, the rest goes upstream as is."""
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise bad_request(f"{where}: must be an object, got {_type(m)}", where)
    role = m.get("role")
    if role not in ROLES:
        raise bad_request(
            f"{where}.role: {role!r} is not one of {', '.join(ROLES)}", f"{where}.role"
        )
    content, extra = m.get("content"), {k: v for k, v in m.items() if k not in ("role", "name")}
    extra.pop("content", None)
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"{where}.content[{j}]: must be an object with a 'type'",
                    f"{where}.content[{j}]",
                )
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise bad_request(
                        f"{where}.content[{j}].text: must be a string", f"{where}.content[{j}]"
                    )
                texts.append(part["text"])
        extra["content"] = content
        text = "".join(texts)
    elif isinstance(content, str):
        text = content
    elif content is None and (role == "assistant" and m.get("tool_calls")):
        text, extra["content"] = "", None
    else:
        raise bad_request(
            f"{where}.content: must be a string or a list of content parts, got {_type(content)}",
            f"{where}.content",
        )
    name = m.get("name")
    if name is not None and not isinstance(name, str):
        raise bad_request(f"{where}.name: must be a string, got {_type(name)}", f"{where}.name")
    return Message(ROLES[role], text, name, extra or None)  # type: ignore[arg-type]


def chat_request(body: object, meta: Meta, request_id: str) -> tuple[ChatRequest, bool]:
    """(request, include_usage) from a /v1/chat/completions body."""
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
    messages = [message(i, m) for i, m in enumerate(msgs)]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise bad_request(f"max_tokens: must be an integer >= 1, got {max_tokens!r}", "max_tokens")
    temp = body.get("temperature")
    if temp is not None and (not _is_num(temp) or not 0 <= temp <= 2):
        raise bad_request(f"temperature: must be a number in [0, 2], got {temp!r}", "temperature")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"stream: must be true or false, got {stream!r}", "stream")
    n = body.get("n")
    # a stream carries choice 0 only: refuse several rather than drop all but the first
    if stream and isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise bad_request(
            f"n: {n} choices cannot be streamed through the gateway (it streams one choice); "
            "send stream: false for several choices, or n: 1",
            "n",
        )
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise bad_request("stream_options: must be an object", "stream_options")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request(f"user: must be a string, got {_type(user)}", "user")
    extra = {k: v for k, v in body.items() if k not in READ}
    if user is None:
        extra.pop("user", None)
    plain = extra.keys() <= NOT_IN_ANSWER and all(m.extra is None for m in messages)
    req = ChatRequest(
        messages=messages,
        model=model,
        task=meta.task,
        max_tokens=max_tokens,
        temperature=temp,
        stream=stream,
        org=meta.org,
        project=meta.project,
        user=meta.user,
        criticality=meta.criticality,  # type: ignore[arg-type]
        tags=meta.tags,
        cache=meta.cache and plain,
        request_id=request_id,
        extra=extra,
        timeout=meta.timeout,
    )
    return req, bool(opts.get("include_usage"))


def usage_json(u: Usage, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAI's usage object; ``details``: the upstream's detail objects (audio, prediction
    tokens, ...), passed on with the counts Costline priced (cached, reasoning) in them."""
    prompt, completion = u.prompt_tokens, u.completion_tokens
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }
    if details:
        for k, v in details.items():
            out[k] = {**v, **out[k]}
    return out


def usd_text(cost: Cost) -> str:
    """Exact decimal dollars, plain notation ('0.00001635', '0')."""
    return format(cost.usd.normalize(), "f")


def costline_json(done: Completion) -> dict[str, Any]:
    return {
        "request_id": done.request_id,
        "cost_usd": usd_text(done.cost),
        "unpriced": done.cost.unpriced,
        "usage_estimated": done.usage.estimated,
        "cache_hit": done.cache_hit,
        "provider": done.provider,
        "route_reason": done.route_reason,
    }


def finish(done: Completion) -> str:
    f = done.finish_reason or "stop"
    return FINISH.get(f, f)


def chat_response(done: Completion, created: int) -> bytes:
    choices = done.choices
    if not choices:
        msg = {"role": "assistant", "content": done.text, "refusal": None}
        choices = [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish(done)}]
    return orjson.dumps(
        {
            "id": "chatcmpl-" + done.request_id.removeprefix("req_"),
            "object": "chat.completion",
            "created": created,
            "model": done.model,
            "choices": choices,
            "usage": usage_json(done.usage, done.usage_details),
            "system_fingerprint": done.system_fingerprint,
            "costline": costline_json(done),
        }
    )


class ChunkWriter:
    """SSE chunks of one streamed chat completion."""

    def __init__(self, request_id: str, model: str, created: int) -> None:
        self.id = "chatcmpl-" + request_id.removeprefix("req_")
        self.model = model
        self.created = created
        self.tools = False  # tool calls were streamed piece by piece
        self.fingerprint: str | None = None  # the upstream's system_fingerprint, once known

    def tool(self, piece: ToolDelta) -> bytes:
        """A streamed piece of a tool call, as OpenAI streams it (``delta.tool_calls``)."""
        self.tools = True
        return self.delta({"tool_calls": [piece.openai()]})

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        if self.fingerprint is not None:
            body["system_fingerprint"] = self.fingerprint
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def delta(
        self, delta: dict[str, Any], finish_reason: str | None = None, logprobs: Any = None
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        if logprobs is not None:  # the upstream's, for the tokens of this delta
            choice["logprobs"] = logprobs
        return self._chunk([choice])

    def end(self, done: Completion, include_usage: bool) -> bytes:
        self.model = done.model
        out = b""
        calls = None if self.tools else _tool_calls(done)
        if calls:
            out += self.delta({"tool_calls": calls})
        fp = done.system_fingerprint
        if fp is not None:  # the upstream's; the last chunks carry it
            self.fingerprint = fp
        out += self.delta({}, finish(done))
        if include_usage:
            usage = usage_json(done.usage, done.usage_details)
            out += self._chunk([], usage=usage, costline=costline_json(done))
        return out + b"data: [DONE]\n\n"

    @staticmethod
    def error(body: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(body) + b"\n\n"


def _tool_calls(done: Completion) -> list[dict[str, Any]] | None:
    if not done.choices:
        return None
    msg = done.choices[0].get("message") or {}
    calls = msg.get("tool_calls")
    if not calls:
        return None
    return [{"index": i, **c} if "index" not in c else c for i, c in enumerate(calls)]


# ---- embeddings -------------------------------------------------------------------------
def embed_request(body: object, meta: Meta, request_id: str) -> tuple[EmbedRequest, str]:
    """(request, encoding_format) from a /v1/embeddings body."""
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_type(body)}")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request(f"model: must be a non-empty string, got {model!r}", "model")
    raw = body.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs:
        raise bad_request(
            "input: must be a string, a non-empty list of strings, or token-ID arrays", "input"
        )
    tokens = None if isinstance(inputs[0], str) else _token_arrays(inputs)
    if tokens is None:
        for i, text in enumerate(inputs):
            if not isinstance(text, str) or not text:
                raise bad_request(f"input[{i}]: must be a non-empty string", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise bad_request(f"encoding_format: {fmt!r} is not float or base64", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or dims < 1):
        raise bad_request(f"dimensions: must be an integer >= 1, got {dims!r}", "dimensions")
    user = body.get("user")  # the call's user, as chat's (a string; else a 400, as there)
    if user is not None and not isinstance(user, str):
        raise bad_request(f"user: must be a string, got {_type(user)}", "user")
    req = EmbedRequest(
        inputs=[] if tokens is not None else list(inputs),
        model=model,
        dimensions=dims,
        org=meta.org,
        project=meta.project,
        user=meta.user,
        task=meta.task,
        criticality=meta.criticality,
        tags=meta.tags,
        request_id=request_id,
        end_user=user,  # sent upstream, as chat's ``user`` is
        tokens=tokens,
    )
    return req, fmt


def _token_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _token_arrays(inputs: list[Any]) -> list[list[int]]:
    """OpenAI's token forms of ``input``: one array of token ids, or a list of them (what
    LangChain's OpenAIEmbeddings sends); a 400 naming ``input`` for anything else."""
    if all(_token_id(x) for x in inputs):
        return [inputs]
    for i, arr in enumerate(inputs):
        if not isinstance(arr, list) or not arr or not all(_token_id(x) for x in arr):
            raise bad_request(
                f"input[{i}]: must be a non-empty string or a non-empty array of token ids "
                "(integers >= 0), the same form as every other input",
                "input",
            )
    return inputs


def embed_response(done: Embeddings, fmt: str) -> bytes:
    def encode(v: list[float]) -> Any:
        if fmt == "float":
            return v
        return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()

    data = [
        {"object": "embedding", "index": i, "embedding": encode(v)}
        for i, v in enumerate(done.vectors)
    ]
    prompt = done.usage.prompt_tokens
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": done.model,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            "costline": {
                "request_id": done.request_id,
                "cost_usd": usd_text(done.cost),
                "unpriced": done.cost.unpriced,
                "usage_estimated": done.usage.estimated,
                "provider": done.provider,
            },
        }
    )
