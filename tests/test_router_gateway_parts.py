"""The Router-side parts the gateway relies on: a stream consumer that leaves is logged and
cancels the upstream, the ``key`` dimension (usage column, budget and rate-limit scope),
passthrough of OpenAI fields, and embeddings."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import tokens
from core.control import SYSTEM, Budget, ControlPlane, RateLimit
from core.controls import Controls
from core.errors import BadRequest, BudgetExceeded, RateLimitExceeded
from core.pricing import load_catalog
from core.providers import AnthropicProvider, DryRunProvider, OpenAIProvider
from core.router import EmbedRequest, Router
from core.settings import ProviderConfig, Settings
from core.state import MemoryState
from core.types import ChatRequest, Message
from core.usage import Filters, Reader
from core.usage._schema import SCHEMA
from tests.servers import scripted as s


def ask(**kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message("user", "tell me a long story")], **kw)  # type: ignore[arg-type]


def slow_router(controls: Controls | bool = False) -> Router:
    dry = DryRunProvider(ProviderConfig("dryrun", "dryrun"), ms_per_token=20)
    return Router(providers={"dryrun": dry}, controls=controls)


def only(router: Router) -> object:
    router.log.flush()
    (ev,) = Reader(router.settings.home).fetch()
    return ev


async def test_a_stream_closed_by_its_consumer_is_logged_estimated_never_zero() -> None:
    with slow_router() as r:
        agen = r.astream(ask(model="dryrun-small", key="k1"))
        got = [await agen.__anext__() for _ in range(3)]
        await agen.aclose()  # what the gateway does when its client disconnects
        ev = only(r)
    assert [c.text for c in got] and all(c.completion is None for c in got)
    assert ev.error_type == "ClientDisconnected" and ev.status == "error"  # type: ignore[attr-defined]
    partial = "".join(c.text for c in got)
    assert partial == "[dryrun] Re: tell "
    out = tokens.count_text("dryrun-small", partial)  # the partial answer, estimated
    assert ev.usage_estimated and ev.output_tokens == out > 0 and ev.input_tokens > 0  # type: ignore[attr-defined]
    # hand-priced: dryrun-small $0.15 / $0.60 per 1M tokens
    want = ev.input_tokens * 150_000 + out * 600_000  # type: ignore[attr-defined]
    assert ev.cost_picousd == want and ev.key == "k1"  # type: ignore[attr-defined]


async def test_a_cancelled_consumer_task_is_logged_once() -> None:
    with slow_router() as r:

        async def consume() -> None:
            async for _ in r.astream(ask(model="dryrun-small")):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)  # a few 20 ms tokens in
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ev = only(r)
    assert ev.error_type == "ClientDisconnected" and ev.cost_picousd > 0  # type: ignore[attr-defined]


def test_sync_stream_closed_early_is_logged_and_a_finished_one_once() -> None:
    with slow_router() as r:
        it = r.stream(ask(model="dryrun-small"))
        next(it)
        it.close()
        full = list(r.stream(ask(model="dryrun-small", max_tokens=25)))
        r.log.flush()
        evs = Reader(r.settings.home).fetch(order_by="ts", descending=False)
    assert [e.error_type for e in evs] == ["ClientDisconnected", None]
    assert full[-1].completion is not None and evs[1].status == "ok"


async def test_closing_the_stream_closes_the_upstream_connection() -> None:
    with s.ScriptedServer() as srv:
        words = [f"w{i} " for i in range(30)]
        srv.enqueue(replace(s.openai_stream(words, usage=s.openai_usage(9, 30)), event_delay=0.05))
        settings = Settings.from_env().with_provider(
            ProviderConfig("openai", "openai", srv.openai_url, api_key="sk-test-123456")
        )
        with Router(settings, controls=False) as r:
            agen = r.astream(ask(model="gpt-4o-mini"))
            for _ in range(2):
                await agen.__anext__()
            await agen.aclose()
            for _ in range(100):
                if srv.aborted:
                    break
                await asyncio.sleep(0.05)
            ev = only(r)
        assert srv.aborted and srv.aborted[0][1] < len(words) + 3
        assert ev.error_type == "ClientDisconnected" and ev.output_tokens >= 2  # type: ignore[attr-defined]


def controls_with(tmp: Path, *rows: object) -> Controls:
    plane = ControlPlane(model_exists=load_catalog().has)
    for row in rows:
        if isinstance(row, Budget):
            plane.upsert_budget(row, SYSTEM)
        else:
            assert isinstance(row, RateLimit)
            plane.upsert_rate_limit(row, SYSTEM)
    return Controls(load_catalog(), plane=plane, state=MemoryState("t:"))


def test_key_scoped_budget_and_rate_limit_apply_to_that_key_only(costline_home: Path) -> None:
    ctl = controls_with(
        costline_home,
        Budget(
            id="kb",
            name="key b",
            scope="key",
            scope_value="b",
            limit_usd=Decimal("0.00001"),
            action="block",
        ),
        RateLimit(
            id="kr", scope="key", scope_value="c", limit=1, window_s=60, algorithm="sliding_window"
        ),
    )
    with Router(controls=ctl) as r:
        ask_ = lambda **kw: ask(cache=False, **kw)  # noqa: E731 - one answer per call
        r.complete(ask_(model="dryrun-small", key="a", max_tokens=50))  # no budget on key a
        with pytest.raises(BudgetExceeded, match="key=b"):
            r.complete(ask_(model="dryrun-small", key="b", max_tokens=50))
        r.complete(ask_(model="dryrun-small", key="c", max_tokens=20))
        with pytest.raises(RateLimitExceeded, match="key=c"):
            r.complete(ask_(model="dryrun-small", key="c", max_tokens=20))
        r.log.flush()
        with Reader(r.settings.home) as rd:
            by_key = rd.spend_by(["key", "status"])
    pairs = {(k, st) for k, st in zip(by_key["key"], by_key["status"], strict=True)}
    assert pairs == {("a", "ok"), ("b", "blocked"), ("c", "ok"), ("c", "rate_limited")}


def test_key_column_reads_from_segments_written_before_it_existed(costline_home: Path) -> None:
    with Router(controls=False) as r:
        r.complete(ask(model="dryrun-small", key="new"))
        r.log.flush()
    seg_dir = next(p.parent for p in (costline_home / "events").rglob("*.parquet"))
    old = SCHEMA.remove(SCHEMA.get_field_index("key"))
    row = {f.name: None for f in old}
    row |= {"request_id": "req_old", "ts": pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()}
    row |= {"provider": "dryrun", "model": "dryrun-small", "status": "ok", "cost_picousd": 7}
    tmp = (
        seg_dir.parent / "old-segment.tmp"
    )  # written aside, then moved in whole (as a writer does)
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp)
    tmp.rename(seg_dir / "old-segment.parquet")
    with Reader(costline_home) as rd:
        evs = {e.request_id: e for e in rd.fetch()}
        assert rd.count(Filters(key="new")) == 1
    assert evs["req_old"].key is None and evs["req_old"].cost_picousd == 7
    assert next(e for e in evs.values() if e.request_id != "req_old").key == "new"


def test_openai_wire_passes_extra_fields_and_message_parts() -> None:
    p = OpenAIProvider(ProviderConfig("openai", "openai", "http://x/v1"))
    tool_msg = Message("tool", "sunny", extra={"tool_call_id": "c1"})
    req = ChatRequest(
        messages=[Message("user", "hi"), tool_msg],
        model="gpt-4o-mini",
        extra={"tools": [{"type": "function"}], "seed": 3, "model": "ignored"},
    )
    _, _, body = p.build_request(req, "gpt-4o-mini", False)
    assert body["tools"] == [{"type": "function"}] and body["seed"] == 3
    assert body["model"] == "gpt-4o-mini"  # Costline's resolved id wins
    assert body["messages"][1] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}


def test_openai_wire_takes_cache_marks_out_for_hosted_apis_only() -> None:
    """A hosted API (OpenAI refuses unknown fields in content parts) gets the text parts
    without their cache_control; a server of your own gets them as sent, whatever the
    call's prompt_cache; top_k likewise."""
    parts = [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]
    req = ChatRequest(
        messages=[Message("user", "hi", extra={"content": parts})],
        extra={"top_k": 5},
        prompt_cache="5m",
    )
    for name, content, top_k in (
        ("openai", [{"type": "text", "text": "hi"}], None),
        ("vllm", parts, 5),
    ):
        p = OpenAIProvider(ProviderConfig(name, "openai", "http://x/v1"))
        _, _, body = p.build_request(req, "m", False)
        assert body["messages"][0]["content"] == content and body.get("top_k") == top_k, name
    assert OpenAIProvider.unsent(ProviderConfig("openai", "openai"), req) == (
        "cache_control",
        "top_k",
    )


def test_anthropic_wire_translates_tools_and_refuses_what_has_no_equivalent() -> None:
    p = AnthropicProvider(ProviderConfig("anthropic", "anthropic", "http://x"))
    req = ChatRequest(messages=[Message("user", "hi")], extra={"stop": "END", "top_p": 0.5})
    _, _, body = p.build_request(req, "claude-3-5-haiku", False)
    assert body["stop_sequences"] == ["END"] and body["top_p"] == 0.5
    fn = {"name": "f", "description": "F.", "parameters": {"type": "object"}}
    tools = [{"type": "function", "function": fn}]
    want = [{"name": "f", "description": "F.", "input_schema": {"type": "object"}}]
    for choice, sent in (
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ):
        extra = {"tools": tools, "tool_choice": choice}
        _, _, body = p.build_request(replace(req, extra=extra), "claude-3-5-haiku", False)
        assert body["tools"] == want and body["tool_choice"] == sent, choice
    extra = {"tools": tools, "parallel_tool_calls": False}
    _, _, body = p.build_request(replace(req, extra=extra), "claude-3-5-haiku", False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert AnthropicProvider.unsent(p.config, replace(req, extra=extra)) == ()
    with pytest.raises(BadRequest, match="functions: not supported by the Anthropic wire"):
        p.build_request(replace(req, extra={"functions": [fn]}), "claude-3-5-haiku", False)
    custom = [{"type": "custom", "custom": {"name": "g"}}]
    with pytest.raises(BadRequest, match=r"tools\[0\]: the Anthropic wire takes function"):
        p.build_request(replace(req, extra={"tools": custom}), "claude-3-5-haiku", False)
    # an empty tool list asks for nothing: not refused, not sent
    _, _, body = p.build_request(replace(req, extra={"tools": []}), "claude-3-5-haiku", False)
    assert "tools" not in body


def test_anthropic_wire_puts_tool_results_and_what_follows_in_one_user_turn() -> None:
    """Consecutive ``tool`` messages and the user message after them are one user turn
    (tool_result blocks first); an empty user message adds no empty text block (Anthropic
    refuses those); a prompt-cache policy marks the turn's last block."""
    p = AnthropicProvider(ProviderConfig("anthropic", "anthropic", "http://x"))
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}
    msgs = [
        Message("user", "go"),
        Message("assistant", "", None, {"content": None, "tool_calls": [call]}),
        Message("tool", "one", None, {"tool_call_id": "t1"}),
        Message("user", ""),
        Message("user", "more"),
    ]
    req = ChatRequest(messages=msgs, prompt_cache="5m")
    _, _, body = p.build_request(req, "claude-3-5-haiku", False)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "one"}],
        },
        {
            "role": "user",
            "content": [{"type": "text", "text": "more", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    req = ChatRequest(messages=msgs[:3], prompt_cache="5m")
    _, _, body = p.build_request(req, "claude-3-5-haiku", False)
    assert body["messages"][-1]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "content": "one",
            "cache_control": {"type": "ephemeral"},
        }
    ]


async def test_embeddings_are_priced_budgeted_and_logged(costline_home: Path) -> None:
    ctl = controls_with(
        costline_home,
        Budget(
            id="eb",
            name="emb",
            scope="key",
            scope_value="e",
            limit_usd=Decimal("0.000001"),
            action="block",
        ),
    )
    with Router(controls=ctl) as r:
        got = await r.aembed(EmbedRequest(["one two three", "four"], "dryrun-embed", key="e"))
        assert len(got.vectors) == 2 and len(got.vectors[0]) == 256
        # 4 tokens at $0.02 per 1M = 20,000 pUSD each
        assert got.usage.input_tokens == 4 and got.cost.total == 80_000
        with pytest.raises(BudgetExceeded):
            await r.aembed(EmbedRequest(["x " * 100], "dryrun-embed", key="e"))
        with pytest.raises(BadRequest, match="has no embeddings endpoint"):
            await r.aembed(EmbedRequest(["x"], "claude-3-5-haiku"))
        r.log.flush()
        evs = Reader(r.settings.home).fetch(order_by="ts", descending=False)
    assert [(e.status, e.cost_picousd) for e in evs] == [
        ("ok", 80_000),
        ("blocked", 0),
        ("error", 0),
    ]
