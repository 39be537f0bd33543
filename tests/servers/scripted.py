"""A real HTTP server on 127.0.0.1 that plays back a per-test script of responses.

It speaks OpenAI Chat Completions and Anthropic Messages. Each request takes the next scripted
``Reply`` (a value, or a function of the recorded request); with an empty script it answers
like a well-behaved provider, echoing the last user message. Every request is recorded::

    with ScriptedServer() as srv:
        srv.enqueue(rate_limited(retry_after="2"), openai_chat("hi"))
        ...                      # point a provider at srv.openai_url / srv.url
        srv.requests[-1].json    # the body the client sent

Faults it can play: any status with any headers, a delay before responding, a connection
reset with no response, malformed bodies, SSE streams with keepalives, streams that stop
without their terminal event, and streams cut mid-way by a reset. A stream whose client
goes away is recorded in ``aborted`` (the client really closed the connection).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None  # SSE blocks, sent one write each (chunked encoding)
    delay: float = 0.0  # seconds before the status line
    event_delay: float = 0.0  # seconds between SSE blocks
    cut_after: int | None = None  # reset the connection after this many SSE blocks
    reset: bool = False  # reset the connection without answering


Script = Reply | Callable[[Recorded], Reply]


# ---- reply builders ---------------------------------------------------------------------
def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(data).encode(), headers=dict(headers or {}))


def raw(body: bytes | str, status: int = 200, content_type: str = "application/json") -> Reply:
    return Reply(status, body.encode() if isinstance(body, str) else body, content_type)


def error(
    status: int, message: str, *, type: str = "api_error", headers: dict[str, str] | None = None
) -> Reply:
    """An error body shaped like both OpenAI's and Anthropic's ({"error": {type, message}})."""
    data = {"type": "error", "error": {"type": type, "message": message}}
    return json_reply(data, status, headers)


def rate_limited(retry_after: str | None = None, retry_after_ms: str | None = None) -> Reply:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if retry_after_ms is not None:
        headers["retry-after-ms"] = retry_after_ms
    return error(429, "Rate limit reached", type="rate_limit_error", headers=headers)


def reset() -> Reply:
    return Reply(reset=True)


def delayed(reply: Reply, seconds: float) -> Reply:
    return replace(reply, delay=seconds)


def cut(reply: Reply, after: int) -> Reply:
    """A stream that is reset after ``after`` SSE blocks."""
    return replace(reply, cut_after=after)


def openai_usage(
    prompt: int, completion: int, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def openai_chat(
    text: str,
    *,
    model: str = "gpt-4o-mini",
    usage: dict[str, Any] | None = None,
    finish: str = "stop",
) -> Reply:
    return json_reply(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": usage if usage is not None else openai_usage(10, len(text.split())),
        }
    )


def openai_stream(
    chunks: list[str],
    *,
    model: str = "gpt-4o-mini",
    usage: dict[str, Any] | None = None,
    finish: str | None = "stop",
    done: bool = True,
    logprobs: list[dict[str, Any]] | None = None,
) -> Reply:
    """Role chunk, text chunks (with a keepalive comment), finish, usage-only chunk, [DONE].
    ``logprobs``: one choice ``logprobs`` object per text chunk, sent with it."""

    def data(obj: Any) -> str:
        return f"data: {json.dumps(obj)}\n\n"

    def chunk(delta: dict[str, Any], fin: str | None = None, lp: Any = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": fin}
        if lp is not None:
            choice["logprobs"] = lp
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [choice],
        }

    lps: list[Any] = list(logprobs) if logprobs is not None else [None] * len(chunks)
    events = [data(chunk({"role": "assistant", "content": ""})), ": keepalive\n\n"]
    events += [data(chunk({"content": c}, None, lp)) for c, lp in zip(chunks, lps, strict=True)]
    if finish:
        events.append(data(chunk({}, finish)))
    if usage is not None:
        events.append(
            data(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        )
    if done:
        events.append("data: [DONE]\n\n")
    return Reply(content_type="text/event-stream", events=events)


def anthropic_usage(
    input: int, output: int, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    return {
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }


def tool_use(ident: str, name: str, input: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``tool_use`` content block."""
    return {"type": "tool_use", "id": ident, "name": name, "input": input}


def anthropic_message(
    text: str,
    *,
    model: str = "claude-3-5-haiku-20241022",
    usage: dict[str, int] | None = None,
    stop: str = "end_turn",
    tools: list[dict[str, Any]] | None = None,
) -> Reply:
    """A Messages answer: its text block (none when empty and there are tool calls), then
    ``tools`` (``tool_use`` blocks; ``stop_reason: tool_use``), as Claude answers."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not tools else []
    content += tools or []
    return json_reply(
        {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if tools else stop,
            "stop_sequence": None,
            "usage": usage if usage is not None else anthropic_usage(10, len(text.split())),
        }
    )


def anthropic_stream(
    chunks: list[str],
    *,
    model: str = "claude-3-5-haiku-20241022",
    usage: dict[str, int] | None = None,
    stop: bool = True,
    error: dict[str, str] | None = None,
    stop_reason: str = "end_turn",
    tools: list[dict[str, Any]] | None = None,
    pieces: int = 3,
) -> Reply:
    """message_start .. content_block_delta* .. message_delta, message_stop (with a ping).
    ``tools``: ``tool_use`` blocks streamed after the text as Claude streams them: each a
    content_block_start with an empty input, an empty ``input_json_delta``, then its JSON
    input in ``pieces`` ``input_json_delta`` fragments, content_block_stop;
    ``stop_reason: tool_use``. Without text and with tools, no text block."""
    u = usage if usage is not None else anthropic_usage(10, len(chunks))
    start_usage = {k: v for k, v in u.items() if k != "output_tokens"} | {"output_tokens": 1}

    def ev(name: str, obj: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps({'type': name, **obj})}\n\n"

    events = [
        ev(
            "message_start",
            {
                "message": {
                    "id": "msg_test",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "usage": start_usage,
                }
            },
        ),
        ev("ping", {}),
    ]
    block = -1
    if chunks or not tools:
        block = 0
        text_start = {"index": 0, "content_block": {"type": "text", "text": ""}}
        events.insert(1, ev("content_block_start", text_start))
        events += [
            ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": c}})
            for c in chunks
        ]
    if error is not None:
        events.append(ev("error", {"error": error}))
    if block == 0:
        events.append(ev("content_block_stop", {"index": 0}))
    for call in tools or []:
        block += 1
        start = {**call, "input": {}}
        events.append(ev("content_block_start", {"index": block, "content_block": start}))
        raw = json.dumps(call["input"])
        size = -(-len(raw) // pieces)
        for part in ["", *(raw[i : i + size] for i in range(0, len(raw), size))]:
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(ev("content_block_delta", {"index": block, "delta": delta}))
        events.append(ev("content_block_stop", {"index": block}))
    reason = "tool_use" if tools else stop_reason
    events.append(
        ev(
            "message_delta",
            {
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": u["output_tokens"]},
            },
        )
    )
    if stop:
        events.append(ev("message_stop", {}))
    return Reply(content_type="text/event-stream", events=events)


def anthropic_invalid(body: dict[str, Any]) -> str | None:
    """What Anthropic's Messages API would refuse in ``body`` with a 400 (the rules a
    gateway's translation can break): tools without an object ``input_schema``, an unknown
    ``tool_choice``, empty text blocks, an image without a base64 or url source, a
    ``tool_result`` not answering a ``tool_use`` of the assistant turn just before (or not
    first in its turn), a ``tool_use`` left without its result; None when it is fine."""
    for i, t in enumerate(body.get("tools") or []):
        schema = t.get("input_schema")
        if not isinstance(t.get("name"), str) or not isinstance(schema, dict):
            return f"tools.{i}: name and input_schema are required"
        if schema.get("type") != "object":
            return f"tools.{i}.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return f"tool_choice: unknown type {choice.get('type')!r}"
        if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
            return "tool_choice.name: Field required"
        if not body.get("tools"):
            return "tool_choice may only be specified while providing tools"
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    for i, m in enumerate(body.get("messages") or []):
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        answered: set[str] = set()
        for j, b in enumerate(blocks):
            kind = b.get("type")
            if kind == "text" and not b.get("text"):
                return f"messages.{i}.content.{j}: text content blocks must be non-empty"
            if kind == "image":
                src = b.get("source") or {}
                ok = src.get("type") == "url" and isinstance(src.get("url"), str)
                ok = ok or (
                    src.get("type") == "base64"
                    and isinstance(src.get("data"), str)
                    and str(src.get("media_type", "")).startswith("image/")
                )
                if not ok:
                    return f"messages.{i}.content.{j}.image.source: invalid"
            if kind == "tool_use" and (
                m["role"] != "assistant" or not isinstance(b.get("input"), dict)
            ):
                return f"messages.{i}.content.{j}: a tool_use block (assistant only) needs an input"
            if kind == "tool_result":
                if m["role"] != "user" or b.get("tool_use_id") not in pending:
                    return (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        "`tool_result` blocks: each must answer a tool_use of the previous message"
                    )
                if any(x.get("type") != "tool_result" for x in blocks[:j]):
                    return f"messages.{i}: tool_result blocks must come first in the content"
                answered.add(b["tool_use_id"])
        if pending - answered:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(pending - answered))}"
            )
        pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None


def _tool_input(tool: dict[str, Any]) -> dict[str, Any]:
    """A deterministic input for a tool: each property of its schema, by type."""
    props = (tool.get("input_schema") or {}).get("properties") or {}
    kinds = {"integer": 3, "number": 1.5, "boolean": True, "array": ["a", "b"]}
    return {k: kinds.get(v.get("type"), f"{k}-1") for k, v in props.items()}


def _claude(req: Recorded, body: dict[str, Any], model: str, prompt: int) -> Reply:
    """What Claude would answer: a 400 for what the API refuses; with tools (and a
    tool_choice that allows one) and no tool results to read, a call of the chosen (or
    first) tool; else text echoing the last user text (or the tool results)."""
    bad = anthropic_invalid(body)
    if bad is not None:
        return error(400, bad, type="invalid_request_error")
    last = body["messages"][-1]["content"]
    blocks = [{"type": "text", "text": last}] if isinstance(last, str) else last
    results = [b for b in blocks if b.get("type") == "tool_result"]
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    calls = []
    if tools and not results and choice["type"] != "none":
        named = [t for t in tools if t["name"] == choice.get("name")] or tools[:1]
        ident = f"toolu_{len(body['messages']):02d}_{named[0]['name']}"
        calls = [tool_use(ident, named[0]["name"], _tool_input(named[0]))]
    texts = [str(b.get("content", "")) for b in results] or [
        b.get("text", "") for b in blocks if b.get("type") == "text"
    ]
    text = "" if calls else "echo: " + " ".join(texts)
    words = [w + " " for w in text.split()]
    out = len(words) + sum(len(json.dumps(c["input"])) // 3 for c in calls)
    usage = anthropic_usage(prompt + 40 * len(tools), out)
    if body.get("stream"):
        return anthropic_stream(words, model=model, usage=usage, tools=calls or None)
    return anthropic_message(text, model=model, usage=usage, tools=calls or None)


def auto_reply(req: Recorded) -> Reply:
    """What a healthy provider would answer: echo the last user message."""
    body = req.json if req.method == "POST" else None
    if req.method == "GET" and req.path.endswith("/models"):
        return json_reply({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
    if not isinstance(body, dict):
        return error(404, f"no route {req.method} {req.path}", type="not_found_error")
    prompt = sum(len(str(m.get("content", ""))) // 4 + 4 for m in body.get("messages", []))
    model = str(body.get("model", "scripted"))
    if req.path.endswith("/v1/messages"):
        return _claude(req, body, model, prompt)
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    text = "echo: " + str(users[-1] if users else "")
    words = [w + " " for w in text.split()]
    if req.path.endswith("/chat/completions"):
        usage = openai_usage(prompt, len(words))
        if body.get("stream"):
            return openai_stream(words, model=model, usage=usage)
        return openai_chat(text, model=model, usage=usage)
    return error(404, f"no route {req.method} {req.path}", type="not_found_error")


# ---- the server -------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self.close_connection = True  # one request per connection: no stale keep-alives
        length = int(self.headers.get("content-length") or 0)
        rec = Recorded(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length),
        )
        owner = self.server.owner
        reply = owner._take(rec)
        if reply.delay and owner._stopping.wait(reply.delay):
            return
        if reply.reset:
            self._reset()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Connection", "close")
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if reply.events is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i, event in enumerate(reply.events):
                if reply.cut_after is not None and i >= reply.cut_after:
                    self._reset()
                    return
                if i and reply.event_delay and owner._stopping.wait(reply.event_delay):
                    return
                data = event.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client went away mid-stream
            owner._aborted(rec, i)

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0): the client sees a reset, not a clean end."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # resets and aborted clients are part of the script


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.aborted: list[tuple[Recorded, int]] = []  # (request, SSE blocks sent): client left
        self._script: deque[Script] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for the Anthropic adapter (it appends /v1/messages)."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """Base URL for the OpenAI adapter (it appends /chat/completions)."""
        return self.url + "/v1"

    def enqueue(self, *replies: Script) -> None:
        with self._lock:
            self._script.extend(replies)

    def clear(self) -> None:
        """Drop the replies still scripted (what a failed test left unanswered)."""
        with self._lock:
            self._script.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def _take(self, rec: Recorded) -> Reply:
        with self._lock:
            self.requests.append(rec)
            item = self._script.popleft() if self._script else auto_reply
        return item(rec) if callable(item) else item

    def _aborted(self, rec: Recorded, sent: int) -> None:
        with self._lock:
            self.aborted.append((rec, sent))

    def start(self) -> ScriptedServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
