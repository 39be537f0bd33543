"""Bad input is refused before any provider is paid (issue 12, section 4).

Every ChatRequest field is checked up front: a BadRequest names the field, the scripted
provider (real HTTP on loopback) receives nothing, and the one usage event logged for the
rejection is storable (bad bytes escaped). Provider usage that cannot be true is estimated
(flagged) instead of priced; ``batch()`` keeps every other item's result.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from core.errors import BadRequest, CostlineError
from core.retry import RetryPolicy
from core.router import Router
from core.settings import ProviderConfig, Settings
from core.types import ChatRequest, Completion, Message
from core.usage import Reader
from core.validate import check_request, checked_usage
from tests.servers import scripted as s

FAST = RetryPolicy(max_attempts=2, base_s=0.001, cap_s=0.005)


def ask(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message("user", text)], model="gpt-4o-mini", **kw)


@pytest.fixture
def router(scripted_server: s.ScriptedServer):
    settings = (
        Settings.from_env()
        .with_provider(
            ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-1")
        )
        .with_provider(
            ProviderConfig("anthropic", "anthropic", scripted_server.url, api_key="sk-ant-t-1")
        )
    )
    r = Router(settings, retry=FAST, seed=1, controls=False)
    yield r
    r.close()


def logged(router: Router):
    router.log.flush()
    return Reader(router.settings.home).events(order_by="ts", descending=False)


class Weird:
    pass


BAD = [
    ("user", dict(user="ann \ud800")),
    ("org", dict(org="\udfffacme")),
    ("project", dict(project="p\ud83d")),
    ("task", dict(task=42)),
    ("tags[1]", dict(tags=("ok", "x\ud800"))),
    ("tags", dict(tags="abc")),
    ("metadata", dict(metadata={"n": Weird()})),
    ("metadata", dict(metadata={"n": 1j})),
    ("metadata", dict(metadata="k=v")),
    ("metadata", dict(metadata={"n": math.nan})),
    ("metadata key", dict(metadata={"k\ud800": "v"})),
    ("max_tokens", dict(max_tokens="100")),
    ("max_tokens", dict(max_tokens=50.5)),
    ("max_tokens", dict(max_tokens=math.nan)),
    ("max_tokens", dict(max_tokens=-1)),
    ("max_tokens", dict(max_tokens=True)),
    ("temperature", dict(temperature="0.5")),
    ("temperature", dict(temperature=math.nan)),
    ("temperature", dict(temperature=2.5)),
    ("criticality", dict(criticality="ultra")),
    ("timeout", dict(timeout=-1)),
    ("timeout", dict(timeout=math.inf)),
    ("fallbacks", dict(fallbacks="gpt-4o")),
    ("stream", dict(stream="yes")),
    ("extra", dict(extra={"seed": Weird()})),
    ("messages[0].content", dict(text=b"bytes")),
    ("prompt_cache", dict(prompt_cache="2h")),
    ("prompt_cache", dict(prompt_cache="")),
    ("request_id", dict(request_id="")),  # was accepted: events logged with no id
    ("request_id", dict(request_id="  ")),
]


@pytest.mark.parametrize(("field", "kw"), BAD, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD)])
@pytest.mark.parametrize("entry", ["complete", "acomplete", "stream", "astream"])
def test_bad_field_refused_before_the_provider(router, scripted_server, field, kw, entry):
    req = ask(**kw)
    with pytest.raises(BadRequest) as info:
        if entry == "complete":
            router.complete(req)
        elif entry == "acomplete":
            asyncio.run(router.acomplete(req))
        elif entry == "stream":
            list(router.stream(req))
        else:

            async def drain() -> None:
                async for _ in router.astream(req):
                    pass

            asyncio.run(drain())
    assert info.value.field == field
    assert info.value.message.startswith(field)  # the message names the field
    assert scripted_server.requests == []  # nothing reached (or was paid to) the provider
    ev = logged(router)
    assert len(ev) == 1  # the rejection itself is logged, storably
    row = ev.iloc[0]
    assert row.error_type == "BadRequest" and int(row.cost_picousd) == 0
    assert row.status == "error"


@pytest.mark.parametrize("entry", ["complete", "stream"])
def test_a_bad_prompt_cache_for_anthropic_is_a_bad_request_not_a_value_error(
    router, scripted_server, entry
):
    """Before, the Anthropic adapter raised ValueError (outside the error tree, unlogged)."""
    req = ChatRequest([Message("user", "hi")], model="claude-3-5-haiku", prompt_cache="1d")
    with pytest.raises(BadRequest, match="prompt_cache: '1d' is not one of 5m, 1h") as info:
        router.complete(req) if entry == "complete" else list(router.stream(req))
    assert info.value.field == "prompt_cache" and scripted_server.requests == []
    assert logged(router).iloc[0].error_type == "BadRequest"


def test_rejection_keeps_the_escaped_identity(router):
    with pytest.raises(BadRequest):
        router.complete(ask(user="ann \ud800", org="acme"))
    row = logged(router).iloc[0]
    assert row.user == "ann \\ud800" and row.org == "acme"


def test_good_requests_still_pass(router, scripted_server):
    scripted_server.enqueue(s.openai_chat("fine"))
    done = router.complete(
        ask(
            user="ann",
            tags=["a", "b"],
            metadata={"n": 1, "x": [1.5, "y"]},
            max_tokens=50,
            temperature=0,
            criticality="critical",
            timeout=2.5,
        )
    )
    assert done.text == "fine"
    assert check_request(ask(max_tokens=1, temperature=2)) is not None


@pytest.mark.parametrize(
    "usage",
    [
        s.openai_usage(prompt=10**15, completion=5),
        s.openai_usage(prompt=10, completion=10**15),
        s.openai_usage(prompt=10, completion=5, reasoning=-3),
    ],
    ids=["absurd-prompt", "absurd-completion", "negative-reasoning"],
)
def test_absurd_provider_usage_is_estimated_not_priced(router, scripted_server, usage):
    scripted_server.enqueue(s.openai_chat("four words of answer", usage=usage))
    done = router.complete(ask())
    assert done.usage.estimated
    assert 0 < done.cost.total < 10**9  # a few tokens at gpt-4o-mini's price, never negative
    assert done.usage.input_tokens < 1000 and done.usage.output_tokens < 1000
    row = logged(router).iloc[0]
    assert row.status == "ok" and bool(row.usage_estimated)
    assert int(row.cost_picousd) == done.cost.total


def test_negative_anthropic_usage_is_never_priced_negative(router, scripted_server):
    usage = s.anthropic_usage(input=-500, output=20)
    scripted_server.enqueue(s.anthropic_message("ok then", usage=usage))
    done = router.complete(ChatRequest([Message("user", "hi")], model="claude-3-5-haiku-20241022"))
    assert done.usage.estimated and done.cost.total > 0
    assert int(logged(router).iloc[0].cost_picousd) == done.cost.total


def test_checked_usage_rules():
    from core.types import Usage

    assert checked_usage(None) is None
    assert checked_usage(Usage(input_tokens=5)) == Usage(input_tokens=5)
    assert checked_usage(Usage(input_tokens=-1)) is None
    assert checked_usage(Usage(output_tokens=2 * 10**9)) is None


def test_batch_returns_every_result_with_errors_in_place(router, scripted_server):
    for i in range(9):
        scripted_server.enqueue(s.openai_chat(f"answer {i}"))
    reqs: list[Any] = [ask(f"q{i}") for i in range(10)]
    reqs[4] = ask("bad", max_tokens="100")
    reqs[7] = None  # not even a ChatRequest
    reqs.append(ask("q10"))
    scripted_server.enqueue(s.openai_chat("answer 9"))
    out = router.batch(reqs, concurrency=3)
    assert len(out) == 11
    assert isinstance(out[4], BadRequest) and out[4].field == "max_tokens"
    assert isinstance(out[7], CostlineError)
    good = [o for i, o in enumerate(out) if i not in (4, 7)]
    assert all(isinstance(o, Completion) for o in good) and len(good) == 9
    assert len(scripted_server.requests) == 9


def test_abatch_returns_every_result_with_errors_in_place(router, scripted_server):
    for i in range(3):
        scripted_server.enqueue(s.openai_chat(f"answer {i}"))
    reqs = [ask("a"), ask("b", temperature="0.5"), ask("c"), ask("d", tags="abc")]
    reqs.append(ask("e"))
    out = asyncio.run(router.abatch(reqs, concurrency=2))
    assert [type(o).__name__ for o in out] == [
        "Completion",
        "BadRequest",
        "Completion",
        "BadRequest",
        "Completion",
    ]


@pytest.mark.parametrize(
    ("field", "messages"),
    [
        ("messages[1].content", [Message("user", "ok é"), Message("user", "x\ud800")]),
        ("messages[0].name", [Message("user", "hi", name="a\udc00")]),
        ("messages[0].extra", [Message("user", "hi", extra={"x": Weird()})]),
        ("messages[0].role", [Message("robot", "hi")]),  # type: ignore[arg-type]
        ("messages[1]", [Message("user", "hi"), "hi"]),
    ],
)
def test_messages_off_the_quick_path_are_named(field: str, messages: list[Any]) -> None:
    """check_request passes the usual message at a glance; anything else is checked field by
    field and named (hand-written expectations, not the checker's own output)."""
    with pytest.raises(BadRequest) as info:
        check_request(ChatRequest(messages=messages, model="gpt-4o-mini"))
    assert info.value.field == field


def test_usual_but_not_plain_requests_pass() -> None:
    """Non-ASCII text, a named message with extras, tags, metadata: all well-formed."""
    req = ChatRequest(
        messages=[
            Message("system", "Réponds en français 🙂"),
            Message("user", "hi", name="ann", extra={"tool_call_id": "t1"}),
        ],
        model="gpt-4o-mini",
        org="Acmé",
        tags=["a", "b"],
        metadata={"k": "v"},
    )
    assert check_request(req) is req


def test_every_bad_request_of_a_library_call_names_its_field(costline_home) -> None:
    """``BadRequest.field`` names what is wrong wherever the call path refuses a request:
    a name with a control character, the input a sampling strategy needs. Before, these
    said it in the message only (field None)."""
    from core.control import SYSTEM, ControlPlane, SamplingStrategy

    plane = ControlPlane()
    plane.upsert_sampling(SamplingStrategy("rank", "threshold", {"threshold": 0.7}), SYSTEM)
    plane.upsert_sampling(SamplingStrategy("watch", "change_based", {"threshold": 0.1}), SYSTEM)
    plane.close()
    cases = [
        ("org", dict(org="acme\u202e")),
        ("project", dict(project="p\x07")),
        ("score", dict(task="rank")),
        ("signal", dict(task="watch")),
    ]
    with Router() as router:
        for field, kw in cases:
            req = ChatRequest(messages=[Message("user", "hi")], model="dryrun-small", **kw)
            with pytest.raises(BadRequest) as info:
                router.complete(req)
            assert info.value.field == field and info.value.message.startswith(field)


def test_refusals_outside_check_request_name_their_field(router, scripted_server) -> None:
    """``batch``/``abatch`` concurrency, the bare path without a model, the old
    ``core.call.validate`` and an unknown fallback named the problem in the message only
    (``field`` None); the fallback's error did not say it was a fallback."""
    from core.call import validate
    from core.errors import UnpricedModel

    for run in (
        lambda: router.batch([ask()], concurrency=0),
        lambda: asyncio.run(router.abatch([ask()], concurrency=0)),
    ):
        with pytest.raises(BadRequest, match="^concurrency: must be >= 1, got 0") as info:
            run()
        assert info.value.field == "concurrency"
    cases: list[tuple[str, ChatRequest]] = [
        ("messages", ChatRequest(messages=[], model="gpt-4o-mini")),
        ("messages[0].role", ChatRequest([Message("robot", "hi")], model="m")),  # type: ignore[arg-type]
        ("messages[0].content", ChatRequest([Message("user", b"hi")], model="m")),  # type: ignore[arg-type]
        ("messages[0].content", ChatRequest([Message("user", "a\ud800")], model="m")),
        ("max_tokens", ask(max_tokens=0)),
        ("temperature", ask(temperature=3.0)),
    ]
    for field, req in cases:
        with pytest.raises(BadRequest) as info:
            validate(req)
        assert info.value.field == field and info.value.message.startswith(field), info.value
    with pytest.raises(BadRequest, match="^model: required") as info:
        router.complete(ChatRequest([Message("user", "hi")], task="summarise"))
    assert info.value.field == "model"
    for fallbacks, field in [
        (("nope-model",), "fallbacks[0]"),
        (("gpt-4o", "nope"), "fallbacks[1]"),
    ]:
        with pytest.raises(UnpricedModel) as unpriced:
            router.complete(ask(fallbacks=fallbacks))
        assert unpriced.value.field == field and unpriced.value.model == fallbacks[-1]
        assert unpriced.value.message.startswith(f"{field}: model {fallbacks[-1]!r}")
    with pytest.raises(UnpricedModel) as unpriced:
        router.complete(
            ChatRequest([Message("user", "hi")], model="nope-model", fallbacks=("gpt-4o",))
        )
    assert unpriced.value.field == "model"
    assert scripted_server.requests == []  # checked before any provider was called


def test_a_task_without_a_policy_names_the_task(costline_home) -> None:
    with Router() as router, pytest.raises(BadRequest, match="^task: no routing policy") as info:
        router.complete(ChatRequest([Message("user", "hi")], task="nobody-set-this"))
    assert info.value.field == "task"


def test_the_usage_log_and_its_reader_take_a_str_path(tmp_path) -> None:
    """``Reader("path")`` and ``UsageLog("path")`` raised TypeError (str / str)."""
    import os

    from core.usage import UsageLog

    home = str(tmp_path / "home")
    log = UsageLog(home, flush_interval_s=0)
    log.close()
    for given in (home, os.fsencode(home).decode(), tmp_path / "home"):
        reader = Reader(given)
        assert str(reader.home) == home and len(reader.events()) == 0
        reader.close()
