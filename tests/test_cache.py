"""ResponseCache on memory and real Redis: keys, TTLs, personal data, counters, bad values."""

from __future__ import annotations

import logging
import os

import orjson
import pytest

from core.cache import FORMAT_VERSION, ResponseCache, cache_key, decode, normalised
from core.control import CacheSetting, RoutingPolicy
from core.state import MemoryState, RedisState, State
from core.types import ChatRequest, Completion, Cost, Message, Usage

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def req(text: str = "Summarise this report", **kw: object) -> ChatRequest:
    kw.setdefault("task", "summarize")
    return ChatRequest(messages=[Message("system", "Be brief."), Message("user", text)], **kw)  # type: ignore[arg-type]


def answer(text: str = "A short summary.", **kw: object) -> Completion:
    base: dict[str, object] = dict(
        text=text,
        usage=Usage(
            input_tokens=800, cached_input_tokens=200, output_tokens=50, reasoning_tokens=7
        ),
        cost=Cost(
            input=120_000_000, cached_input=15_000_000, output=30_000_000, reasoning=4_200_000
        ),
        model="gpt-4o-mini",
        provider="openai",
        latency_ms=812.0,
        request_id="req_1",
        finish_reason="stop",
    )
    base.update(kw)
    return Completion(**base)  # type: ignore[arg-type]


# ---- keys -------------------------------------------------------------------------------
def test_canonical_form_is_pinned() -> None:
    r = ChatRequest(messages=[Message("user", "hi")], model="GPT-4o ", temperature=0.5)
    assert normalised(r) == (
        b'{"k":1,"max_tokens":null,"messages":[["user","hi",null]],'
        b'"target":"model:gpt-4o","temperature":0.5}'
    )


def test_key_ignores_who_asks_but_not_what_changes_the_answer() -> None:
    base = cache_key(req())
    assert base == cache_key(req())
    same = [
        req(user="ann"),
        req(org="acme", project="p", app="k"),
        req(tags=("a", "b")),
        req(metadata={"x": "1"}),
        req(criticality="critical"),
        req(stream=True),
        req(fallbacks=("x",)),
        req(ttl=5),
    ]
    assert {cache_key(r) for r in same} == {base}
    assert cache_key(req(temperature=1)) == cache_key(req(temperature=1.0))
    different = [
        req(temperature=0.7),
        req(temperature=0.2),
        req(max_tokens=100),
        req("Summarise this report!"),
        req(task="translate"),
        req(model="gpt-4o"),
        req(model="gpt-4o-mini"),
        ChatRequest(
            messages=[Message("user", "Be brief."), Message("user", "Summarise this report")],
            task="summarize",
        ),
        ChatRequest(
            messages=[
                Message("system", "Be brief.", name="bot"),
                Message("user", "Summarise this report"),
            ],
            task="summarize",
        ),
    ]
    keys = [cache_key(r) for r in different]
    assert base not in keys and len(set(keys)) == len(keys)


# ---- round trip -------------------------------------------------------------------------
def test_put_then_get_round_trips_text_usage_and_cost(state: State) -> None:
    cache = ResponseCache(state, clock=Clock())
    done = answer()
    assert cache.get(req()) is None
    assert cache.put(req(), done)
    hit = cache.get(req(user="someone-else"))
    assert hit is not None
    assert (hit.text, hit.usage, hit.model, hit.provider) == (
        done.text,
        done.usage,
        "gpt-4o-mini",
        "openai",
    )
    assert hit.saved == done.cost and hit.saved.total == 169_200_000
    assert hit.created == T0 and hit.finish_reason == "stop"
    served = hit.completion(req(), latency_ms=1.5)
    assert served.cost.total == 0 and not served.cost.unpriced
    assert served.saved == done.cost and served.cache_hit and served.text == done.text
    raw = state.cache_get(cache_key(req()))
    assert raw is not None and orjson.loads(raw)["v"] == FORMAT_VERSION


def test_unpriced_and_estimated_flags_survive() -> None:
    cache = ResponseCache(MemoryState("t:"), clock=Clock())
    cache.put(req(), answer(cost=Cost(unpriced=True), usage=Usage(input_tokens=3, estimated=True)))
    hit = cache.get(req())
    assert hit is not None and hit.saved.unpriced and hit.usage.estimated


def test_cached_answers_are_not_stored_again() -> None:
    cache = ResponseCache(MemoryState("t:"), clock=Clock())
    assert not cache.put(req(), answer(cache_hit=True))
    assert not cache.put(req(), answer(ai_called=False))
    assert cache.get(req()) is None


# ---- TTLs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "ttl"),
    [
        ("chat", 300),
        ("summarize", 1800),
        ("summarization", 1800),
        ("search", 3600),
        ("embeddings", 7200),
        ("translation", 86400),
        ("caption", 1000),
        (None, 1000),
    ],
)
def test_ttl_per_task_from_the_seed_table(task: str | None, ttl: int) -> None:
    clock = Clock()
    cache = ResponseCache(MemoryState("t:"), default_ttl_s=1000, clock=clock)
    r = req(task=task, model=None if task else "gpt-4o")
    assert cache.ttl_for(r) == ttl
    cache.put(r, answer())
    clock.t = T0 + ttl - 1
    assert cache.get(r) is not None
    clock.t = T0 + ttl
    assert cache.get(r) is None


def test_ttl_expires_on_the_injected_clock_and_in_the_backend(state: State) -> None:
    clock = Clock()
    cache = ResponseCache(state, clock=clock)
    r = req(task="chat")
    cache.put(r, answer())
    clock.t += 299
    assert cache.get(r) is not None
    clock.t += 1
    assert cache.get(r) is None
    assert state.cache_get(cache_key(r)) is None  # an expired entry is deleted
    if isinstance(state, RedisState):
        cache.put(r, answer())
        pttl = state.client.pttl(state.prefix + "c:" + cache_key(r))
        assert 299_000 < pttl <= 300_000


def test_settings_policies_and_requests_override_ttl() -> None:
    settings = {
        "summarize": CacheSetting("summarize", ttl_s=60),
        "chat": CacheSetting("chat", enabled=False),
    }
    policies = {"summarize": RoutingPolicy("summarize", "gpt-4o", cache_ttl_s=120)}
    cache = ResponseCache(MemoryState("t:"), settings=settings, clock=Clock())
    assert cache.ttl_for(req()) == 60
    cache.configure(policies=policies)
    assert cache.ttl_for(req()) == 120
    assert cache.ttl_for(req(ttl=5)) == 5
    assert cache.ttl_for(req(ttl=0)) == 0 and cache.key(req(ttl=0)) is None
    assert cache.key(req(task="chat")) is None and cache.key(req(task="chat", ttl=99)) is None


def test_request_ttl_bounds_the_age_it_accepts(state: State) -> None:
    clock = Clock()
    cache = ResponseCache(state, clock=clock)
    cache.put(req(), answer())  # stored for the task's 30 min
    clock.t += 100
    assert cache.get(req(ttl=60)) is None  # this caller wants at most 60 s old
    hit = cache.get(req())
    assert hit is not None and hit.age_s == 100
    cache.put(req(ttl=10), answer("fresh"))  # stored for 10 s only
    clock.t += 10
    assert cache.get(req()) is None


# ---- personal data and opting out -------------------------------------------------------
def test_personal_requests_are_never_cached_nor_served(state: State) -> None:
    cache = ResponseCache(state, clock=Clock())
    assert cache.key(req(personal=True, user="ann")) is None
    assert not cache.put(req(personal=True, user="ann"), answer("Ann's private answer"))
    assert cache.get(req(user="bob")) is None  # nothing of Ann's was stored
    cache.put(req(user="bob"), answer("shared"))
    assert cache.get(req(personal=True, user="ann")) is None  # nor served a shared one
    assert cache.stats()["by_task"]["summarize"]["bypass"] == 1  # counted on reads


def test_personalised_tasks_are_never_cached(state: State) -> None:
    policies = {"inbox": RoutingPolicy("inbox", "gpt-4o", personalised=True)}
    cache = ResponseCache(state, policies=policies, clock=Clock())
    r = req(task="inbox", user="ann")
    assert cache.key(r) is None and not cache.put(r, answer())
    assert state.counters("cache.write") == {}
    assert cache.get(req(task="inbox", user="bob")) is None


def test_cache_false_neither_reads_nor_writes(state: State) -> None:
    cache = ResponseCache(state, clock=Clock())
    cache.put(req(), answer("stored"))
    assert cache.get(req(cache=False)) is None
    assert not cache.put(req(cache=False, temperature=0.3), answer())
    assert cache.get(req(temperature=0.3)) is None


# ---- counters ---------------------------------------------------------------------------
def test_hit_and_miss_counters_per_task(state: State) -> None:
    cache = ResponseCache(state, clock=Clock())
    cache.get(req())
    cache.put(req(), answer())
    cache.get(req())
    cache.get(req())
    cache.get(req(task="chat"))
    stats = cache.stats()
    assert stats["by_task"]["summarize"]["hit"] == 2
    assert stats["by_task"]["summarize"]["miss"] == 1
    assert stats["by_task"]["chat"]["miss"] == 1
    assert (stats["hits"], stats["misses"], stats["writes"]) == (2, 2, 1)
    assert stats["hit_rate"] == 0.5 and stats["by_task"]["summarize"]["hit_rate"] == 2 / 3


def test_counters_and_entries_are_shared_through_redis(redis_url: str) -> None:
    prefix = os.environ["COSTLINE_TEST_PREFIX"]
    a, b = RedisState(redis_url, prefix), RedisState(redis_url, prefix)
    try:
        ResponseCache(a).put(req(), answer())
        assert ResponseCache(b).get(req()) is not None
        assert ResponseCache(a).stats()["hits"] == 1
    finally:
        a.close()
        b.close()


# ---- bad values and unavailable state ---------------------------------------------------
def test_garbage_bytes_are_a_miss_with_a_warning(
    state: State, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ResponseCache(state, clock=Clock())
    k = cache_key(req())
    state.cache_set(k, b"\xff\xfe\x00garbage", 60)
    with caplog.at_level(logging.WARNING, logger="core.cache"):
        assert cache.get(req()) is None
    assert "corrupt cached value" in caplog.text
    assert state.cache_get(k) is None  # removed, so the next call can store a good one
    assert cache.stats()["corrupt"] == 1 and cache.stats()["misses"] == 1
    state.cache_set(k, b'{"v": 1, "text": "no other fields"}', 60)
    assert cache.get(req()) is None and cache.stats()["corrupt"] == 2


def test_other_format_versions_are_ignored_quietly(caplog: pytest.LogCaptureFixture) -> None:
    state = MemoryState("t:")
    cache = ResponseCache(state, clock=Clock())
    state.cache_set(cache_key(req()), b'{"v": 99, "text": "from the future"}', 60)
    with caplog.at_level(logging.WARNING, logger="core.cache"):
        assert cache.get(req()) is None
    assert caplog.text == ""
    assert decode(b'{"v": 99}') is None
    with pytest.raises(ValueError):
        decode(b"[1, 2]")


def test_unreachable_redis_is_a_miss_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    dead = RedisState("redis://127.0.0.1:1/0", "t:", socket_timeout=0.2, connect_timeout=0.2)
    cache = ResponseCache(dead)
    with caplog.at_level(logging.WARNING, logger="core.cache"):
        assert cache.get(req()) is None
        assert cache.put(req(), answer()) is False
    assert "cache read failed" in caplog.text
    dead.close()


@pytest.mark.parametrize(
    ("part", "field", "value", "message"),
    [
        ("usage", "output_tokens", -1, "output_tokens is not an int >= 0"),
        ("usage", "input_tokens", 1.5, "input_tokens is not an int >= 0"),
        ("cost", "reasoning", True, "reasoning is not an int >= 0"),
        ("cost", "cache_write", None, "cache_write is not an int >= 0"),
    ],
)
def test_a_bad_count_or_cost_is_a_corrupt_entry_naming_the_field(
    part: str, field: str, value: object, message: str
) -> None:
    from core.cache import encode

    entry = orjson.loads(encode(answer(), 1.0, 2.0))
    entry[part][field] = value
    with pytest.raises(ValueError, match=message):
        decode(orjson.dumps(entry))
    del entry[part][field]
    with pytest.raises(ValueError, match=f"missing field '{field}'"):
        decode(orjson.dumps(entry))
    good = decode(encode(answer(), 1.0, 2.0), now=1.5)
    assert good is not None and good.usage == answer().usage and good.saved == answer().cost
    assert (good.created, good.expires, good.age_s) == (1.0, 2.0, 0.5)


def test_entries_are_scoped_by_tenant_on_every_backend(state: State) -> None:
    """Two routers (processes) on one state: a key of another org, or a key bound to no org
    naming one, misses; a key of the same org hits (cache_scope 'org', the default)."""
    from core.control import ControlSnapshot, VirtualKey

    keys = (
        VirtualKey("a1", "sk-cl-x", "h1", org="acme"),
        VirtualKey("a2", "sk-cl-x", "h2", org="acme"),
        VirtualKey("g", "sk-cl-x", "h3", org="globex"),
        VirtualKey("free", "sk-cl-x", "h4"),
    )
    writer, reader = ResponseCache(state, clock=Clock()), ResponseCache(state, clock=Clock())
    for c in (writer, reader):
        c.apply(ControlSnapshot(1, keys=keys))
    writer.put(req(key="a1", org="acme"), answer("acme only"))
    got = reader.get(req(key="a2", org="acme"))
    assert got is not None and got.text == "acme only"
    assert reader.get(req(key="g", org="globex")) is None
    assert reader.get(req(key="free", org="acme")) is None
    assert reader.get(req()) is None  # the library's shared namespace
    reader.apply(ControlSnapshot(2, keys=keys, settings={"cache_scope": "key"}))
    assert reader.get(req(key="a2", org="acme")) is None


# ---- what the key cannot see ------------------------------------------------------------
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
CALL = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


@pytest.mark.parametrize(
    "r",
    [
        req(extra={"tools": TOOLS}),
        req(extra={"response_format": {"type": "json_object"}}),
        req(extra={"stop": ["\n"]}),
        req(extra={"n": 3}),
        req(extra={"seed": 7, "user": "u1"}),
        ChatRequest(
            messages=[Message("user", "What is this?", extra={"content": [IMAGE]})],
            task="summarize",
        ),
        ChatRequest(
            messages=[
                Message("user", "go"),
                Message("assistant", "", extra={"content": None, "tool_calls": CALL}),
                Message("tool", "42", extra={"tool_call_id": "c1"}),
            ],
            task="summarize",
        ),
    ],
    ids=["tools", "response_format", "stop", "n", "seed", "image", "tool_calls"],
)
def test_requests_with_wire_fields_the_key_cannot_see_are_never_cached(
    state: State, r: ChatRequest
) -> None:
    """The key holds text, roles, names, temperature and max_tokens: a request whose answer
    depends on anything else (an image, tools, a stop sequence, tool calls) bypasses the
    cache, as the gateway's requests always did; before, a library call with another image
    got the first image's answer."""
    cache = ResponseCache(state, clock=Clock())
    plain = ChatRequest(messages=[Message(m.role, m.content, m.name) for m in r.messages])
    plain.task = r.task
    cache.put(plain, answer("the plain answer"))
    assert cache.key(r) is None and cache.get(r) is None
    assert not cache.put(r, answer("its own answer"))
    assert cache.get(plain) is not None  # the plain request is still served


def test_the_openai_user_field_alone_keeps_a_request_cacheable(state: State) -> None:
    cache = ResponseCache(state, clock=Clock())
    cache.put(req(extra={"user": "end-user-1"}), answer("shared"))
    hit = cache.get(req(extra={"user": "end-user-2"}))
    assert hit is not None and hit.text == "shared"


def test_a_router_asked_about_two_images_answers_each(scripted_server) -> None:
    from core.router import Router
    from core.settings import ProviderConfig, Settings
    from tests.servers import scripted as s

    settings = Settings.from_env().with_provider(
        ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-123456")
    )

    def about(url: str) -> ChatRequest:
        parts = [{"type": "text", "text": "What is in this image?"}]
        parts.append({"type": "image_url", "image_url": {"url": url}})
        msg = Message("user", "What is in this image?", extra={"content": parts})
        return ChatRequest(messages=[msg], model="gpt-4o-mini")

    scripted_server.enqueue(s.openai_chat("a cat"), s.openai_chat("a dog"))
    with Router(settings) as router:  # the control plane's response cache is on
        cat = router.complete(about("https://example.com/cat.png"))
        dog = router.complete(about("https://example.com/dog.png"))
    assert (cat.text, dog.text) == ("a cat", "a dog") and not dog.cache_hit
    assert len(scripted_server.requests) == 2


def test_text_parts_that_only_mark_cache_breakpoints_keep_a_request_cacheable(
    state: State,
) -> None:
    mark = {"type": "ephemeral"}
    parts = [{"type": "text", "text": "Summarise ", "cache_control": mark}]
    parts.append({"type": "text", "text": "this report"})
    marked = ChatRequest(
        messages=[Message("user", "Summarise this report", extra={"content": parts})],
        task="summarize",
    )
    cache = ResponseCache(state, clock=Clock())
    assert cache.put(marked, answer("shared"))
    assert cache.get(marked) is not None
    other = [{"type": "text", "text": "Something else", "cache_control": mark}]
    differs = ChatRequest(  # parts whose text is not the message's: the key cannot see it
        messages=[Message("user", "Summarise this report", extra={"content": other})],
        task="summarize",
    )
    assert cache.key(differs) is None


def test_a_routers_cache_ages_its_answers_on_core_clock() -> None:
    """The cache's default clock is ``core.clock``, as every other "now" of a call: a pinned
    clock pins a cached answer's age (the route reason says it), a moved one expires it."""
    from datetime import UTC, datetime, timedelta

    from core import clock
    from core.router import Router

    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    ask = req(model="dryrun-small", task="chat", org="acme")  # chat: 5 minutes
    with Router() as router:
        with clock.frozen(at):
            first = router.complete(ask)
        with clock.frozen(at + timedelta(seconds=120)):
            again = router.complete(ask)
        with clock.frozen(at + timedelta(seconds=300)):
            late = router.complete(ask)
    assert not first.cache_hit and again.cache_hit and not late.cache_hit
    assert again.route_reason == "dryrun-small: cache hit (exact, age 120s)"
