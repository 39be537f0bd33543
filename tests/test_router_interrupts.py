"""A caller that goes away mid-call - Ctrl-C, a cancelled task, ``asyncio.wait_for``'s
timeout - after the request reached the provider: the call is still priced (its prompt and
any partial answer, estimated) and logged exactly once, for every entry point. Real HTTP to
the scripted server."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import replace
from types import FrameType

import pytest

from core import tokens
from core.router import EmbedRequest, Router
from core.settings import ProviderConfig, Settings
from core.types import ChatRequest, Message
from core.usage import Reader
from tests.servers import scripted as s

PROMPT = [Message("user", "tell me a long story about routers")]
IN_PRICE, OUT_PRICE = 150_000, 600_000  # gpt-4o-mini, pUSD per token


@pytest.fixture
def router(scripted_server: s.ScriptedServer) -> Iterator[Router]:
    settings = Settings.from_env().with_provider(
        ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-123456")
    )
    with Router(settings, controls=False) as r:
        yield r


def ask(**kw: object) -> ChatRequest:
    return ChatRequest(messages=list(PROMPT), model="gpt-4o-mini", **kw)  # type: ignore[arg-type]


def only_event(router: Router) -> object:
    router.log.flush()
    evs = Reader(router.settings.home).fetch()
    assert len(evs) == 1, [(e.status, e.error_type) for e in evs]
    return evs[0]


def assert_abandoned(ev: object, prompt_tokens: int, partial: str = "") -> None:
    out = tokens.count_text("gpt-4o-mini", partial)
    assert ev.status == "error" and ev.error_type == "ClientDisconnected"  # type: ignore[attr-defined]
    assert ev.usage_estimated and ev.input_tokens == prompt_tokens > 0  # type: ignore[attr-defined]
    assert ev.output_tokens == out  # type: ignore[attr-defined]
    assert ev.cost_picousd == prompt_tokens * IN_PRICE + out * OUT_PRICE  # type: ignore[attr-defined]


@pytest.fixture
def interrupt_after() -> Iterator[object]:
    """``interrupt_after(seconds)``: KeyboardInterrupt in the main thread, as Ctrl-C does."""

    def fire(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, fire)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def interrupt_once_sent(interrupt_after: object) -> Iterator[object]:
    """``interrupt_once_sent(server)``: Ctrl-C in the main thread 0.2 s after ``server`` has
    the request (instead of at a fixed time chosen long enough for it to get there)."""
    import threading
    import time

    done = threading.Event()

    def watch(server: s.ScriptedServer) -> None:
        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline and not done.is_set():
            time.sleep(0.01)
        if not done.wait(0.2):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)

    threads: list[threading.Thread] = []

    def start(server: s.ScriptedServer) -> None:
        threads.append(threading.Thread(target=watch, args=(server,), daemon=True))
        threads[-1].start()

    yield start
    done.set()
    for t in threads:
        t.join(5)


def prompt_tokens() -> int:
    return tokens.count_messages("gpt-4o-mini", PROMPT).tokens


async def test_acomplete_cut_by_wait_for_is_priced_and_logged_once(router, scripted_server):
    scripted_server.enqueue(s.delayed(s.openai_chat("late"), 10.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(router.acomplete(ask()), 2.0)
    assert len(scripted_server.requests) == 1  # the provider had the request
    assert_abandoned(only_event(router), prompt_tokens())


async def test_a_cancelled_acomplete_task_is_priced_and_logged_once(router, scripted_server):
    scripted_server.enqueue(s.delayed(s.openai_chat("late"), 10.0))
    task = asyncio.create_task(router.acomplete(ask()))
    while not scripted_server.requests:  # cancelled once the provider has the request
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_abandoned(only_event(router), prompt_tokens())


def test_complete_interrupted_by_ctrl_c_is_priced_and_logged_once(
    router, scripted_server, interrupt_once_sent
):
    scripted_server.enqueue(s.delayed(s.openai_chat("late"), 10.0))
    interrupt_once_sent(scripted_server)
    with pytest.raises(KeyboardInterrupt):
        router.complete(ask())
    assert len(scripted_server.requests) == 1
    assert_abandoned(only_event(router), prompt_tokens())


def test_stream_interrupted_by_ctrl_c_is_priced_and_logged_once(
    router, scripted_server, interrupt_after
):
    words = [f"w{i} " for i in range(20)]
    slow = replace(s.openai_stream(words, usage=s.openai_usage(9, 20)), event_delay=0.2)
    scripted_server.enqueue(slow)
    got: list[str] = []
    interrupt_after(1.0)  # a few chunks in, while the upstream is being read
    with pytest.raises(KeyboardInterrupt):
        for chunk in router.stream(ask()):
            got.append(chunk.text)
    assert got and len(got) < len(words)
    assert_abandoned(only_event(router), prompt_tokens(), "".join(got))


async def test_aembed_cut_by_wait_for_is_priced_and_logged_once(router, scripted_server):
    data = {"object": "list", "data": [{"index": 0, "embedding": [0.1, 0.2]}]}
    scripted_server.enqueue(s.delayed(s.json_reply(data), 10.0))
    req = EmbedRequest(["one two three four"], "text-embedding-3-small")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(router.aembed(req), 2.0)
    assert len(scripted_server.requests) == 1
    ev = only_event(router)
    n = tokens.count_text("text-embedding-3-small", "one two three four")
    assert ev.error_type == "ClientDisconnected" and ev.input_tokens == n  # type: ignore[attr-defined]
    assert ev.cost_picousd == n * 20_000  # type: ignore[attr-defined]  # $0.02 per 1M tokens


def test_a_stream_left_by_an_error_in_the_callers_loop_is_logged_once(router, scripted_server):
    scripted_server.enqueue(s.openai_stream(["a ", "b "], usage=s.openai_usage(9, 2)))
    with pytest.raises(ZeroDivisionError):
        for _ in router.stream(ask()):
            1 / 0  # noqa: B018  (the caller's own bug: the stream is closed when dropped)
    assert_abandoned(only_event(router), prompt_tokens(), "a ")
