"""Priority request queue: order, concurrency limit, retries, timeouts, metrics, draining.

Workers block on events instead of sleeping; only the timeout tests wait (50 ms deadlines).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError

import pytest

from core.errors import BadRequest, ConfigError, ProviderTimeout
from core.queue import QueueMetrics, RequestQueue

pytestmark = pytest.mark.timeout(30)


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if cond():
            return
        done.wait(0.005)
    raise AssertionError("condition not reached")


def adds_up(m: QueueMetrics) -> bool:
    return m.queued + m.running + m.done + m.dead + m.cancelled == m.submitted


class Tracker:
    """A worker that counts how many calls run at once and can hold them until released."""

    def __init__(self, hold: bool = False) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.seen: list[object] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, payload: object) -> object:
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.seen.append(payload)
        try:
            assert self.release.wait(10)
            return payload
        finally:
            with self.lock:
                self.running -= 1


def test_priority_order_with_concurrency_one() -> None:
    work = Tracker()
    q: RequestQueue[str, object] = RequestQueue(work, concurrency=1)
    jobs = [
        ("low", "l1"),
        ("normal", "n1"),
        ("critical", "c1"),
        ("background", "b1"),
        ("high", "h1"),
        ("critical", "c2"),
        ("normal", "n2"),
        ("low", "l2"),
    ]
    tickets = [q.submit(name, prio) for prio, name in jobs]
    q.start()
    q.stop(drain=True)
    assert work.seen == ["c1", "c2", "h1", "n1", "n2", "l1", "l2", "b1"]
    assert [t.result() for t in tickets] == [name for _, name in jobs]
    assert tickets[2].priority == "critical" and tickets[0].id < tickets[1].id


def test_concurrency_limit_never_exceeded() -> None:
    work = Tracker(hold=True)
    q: RequestQueue[int, object] = RequestQueue(work, concurrency=3)
    q.start()
    tickets = [q.submit(i) for i in range(30)]
    wait_until(lambda: work.running == 3)
    m = q.metrics()
    assert (m.running, m.queued) == (3, 27)
    assert adds_up(m)
    work.release.set()
    assert sorted(t.result(10) for t in tickets) == list(range(30))
    q.stop()
    assert work.max_running == 3
    assert q.metrics().done == 30


def test_retries_then_dead_letter() -> None:
    calls: list[int] = []

    def always_fails(x: int) -> int:
        calls.append(x)
        raise ValueError(f"boom {x}")

    q: RequestQueue[int, int] = RequestQueue(always_fails, concurrency=2, default_attempts=3)
    q.start()
    t1 = q.submit(1, "high")
    t2 = q.submit(2, attempts=1)
    with pytest.raises(ValueError, match="boom 1"):
        t1.result(5)
    with pytest.raises(ValueError, match="boom 2"):
        t2.result(5)
    q.stop()
    assert sorted(calls) == [1, 1, 1, 2]
    dead = sorted(q.dead_letters(), key=lambda d: d.payload)
    assert [(d.payload, d.priority, d.attempts) for d in dead] == [(1, "high", 3), (2, "normal", 1)]
    assert isinstance(dead[0].error, ValueError)
    m = q.metrics()
    assert (m.failed, m.dead, m.done) == (4, 2, 0) and adds_up(m)


def test_flaky_worker_succeeds_on_retry_and_bad_request_is_not_retried() -> None:
    attempts: dict[str, int] = {}

    def flaky(key: str) -> str:
        attempts[key] = attempts.get(key, 0) + 1
        if key == "bad":
            raise BadRequest("empty messages")
        if attempts[key] < 2:
            raise ConnectionError("reset")
        return key.upper()

    q: RequestQueue[str, str] = RequestQueue(flaky, concurrency=1)
    q.start()
    ok, bad = q.submit("ok"), q.submit("bad")
    assert ok.result(5) == "OK"
    with pytest.raises(BadRequest):
        bad.result(5)
    q.stop()
    assert attempts == {"ok": 2, "bad": 1}
    assert [d.attempts for d in q.dead_letters()] == [1]


def test_timeout_counts_as_failed_attempt() -> None:
    release = threading.Event()
    attempt = {"n": 0}
    lock = threading.Lock()

    def slow_first(x: str) -> str:
        with lock:
            attempt["n"] += 1
            n = attempt["n"]
        if n == 1:
            release.wait(10)  # hangs past the 50 ms timeout
            return "late"
        return f"ok-{n}"

    q: RequestQueue[str, str] = RequestQueue(slow_first, concurrency=2)
    q.start()
    t = q.submit("x", attempts=2, timeout_s=0.05)
    assert t.result(5) == "ok-2"  # the retry ran on the free slot
    m = q.metrics()
    assert (m.failed, m.done, m.dead) == (1, 1, 0)
    release.set()
    q.stop()
    assert q.metrics().done == 1  # the late result of the timed-out attempt was discarded

    q2: RequestQueue[str, str] = RequestQueue(
        lambda x: release.wait(10) and x, concurrency=1, default_timeout_s=0.05
    )
    release.clear()
    q2.start()
    t2 = q2.submit("y", attempts=1)
    with pytest.raises(ProviderTimeout):
        t2.result(5)
    assert isinstance(q2.dead_letters()[0].error, ProviderTimeout)
    release.set()
    q2.stop()


def test_metrics_add_up_mid_run_and_at_end() -> None:
    work = Tracker(hold=True)

    def worker(x: int) -> object:
        if x % 5 == 0:
            raise RuntimeError("fail")
        return work(x)

    q: RequestQueue[int, object] = RequestQueue(worker, concurrency=2, default_attempts=2)
    q.start()
    tickets = [q.submit(1), q.submit(2)]
    wait_until(lambda: work.running == 2)  # both slots held from here on
    tickets += [q.submit(i, "low" if i % 2 else "high") for i in range(3, 21)]
    assert tickets[-1].cancel()  # still queued behind the held workers
    m = q.metrics()
    assert (m.running, m.queued) == (2, 18) and adds_up(m)
    work.release.set()
    q.stop(drain=True)
    m = q.metrics()
    assert adds_up(m)
    assert (m.submitted, m.done, m.dead, m.cancelled, m.failed) == (20, 16, 3, 1, 6)
    assert (m.queued, m.running) == (0, 0)
    assert 0 <= m.wait_ms_p50 <= m.wait_ms_p95


def test_stop_drain_finishes_queued_work() -> None:
    work = Tracker()
    q: RequestQueue[int, object] = RequestQueue(work, concurrency=2)
    tickets = [q.submit(i) for i in range(20)]
    q.start()
    q.stop(drain=True)
    assert all(t.done() and not t.cancelled() for t in tickets)
    assert q.metrics().done == 20
    with pytest.raises(BadRequest, match="stopped"):
        q.submit(99)
    with pytest.raises(BadRequest, match="stopped"):
        q.start()

    never_started: RequestQueue[int, object] = RequestQueue(Tracker(), concurrency=1)
    t = never_started.submit(7)
    never_started.stop(drain=True)
    assert t.result(0) == 7


def test_stop_without_drain_cancels_queued_work() -> None:
    work = Tracker(hold=True)
    q: RequestQueue[int, object] = RequestQueue(work, concurrency=1)
    q.start()
    first = q.submit(0)
    wait_until(lambda: work.running == 1)
    rest = [q.submit(i) for i in range(1, 5)]
    stopper = threading.Thread(target=q.stop, kwargs={"drain": False})
    stopper.start()
    wait_until(lambda: all(t.cancelled() for t in rest))
    work.release.set()
    stopper.join(5)
    assert first.result(0) == 0
    with pytest.raises(CancelledError):
        rest[0].result(0)
    m = q.metrics()
    assert (m.done, m.cancelled) == (1, 4) and adds_up(m)


def test_done_callback_may_submit() -> None:
    q: RequestQueue[int, object] = RequestQueue(Tracker(), concurrency=1)
    q.start()
    follow: list[object] = []
    t = q.submit(1)
    t.add_done_callback(lambda f: follow.append(q.submit(2)))
    t.result(5)
    wait_until(lambda: bool(follow))
    assert follow[0].result(5) == 2  # type: ignore[attr-defined]
    q.stop()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 1.5}, "concurrency"),
        ({"concurrency": 1, "default_attempts": 0}, "default_attempts"),
        ({"concurrency": 1, "default_timeout_s": -1}, "default_timeout_s"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RequestQueue(Tracker(), **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_submit_names_the_field() -> None:
    q: RequestQueue[int, object] = RequestQueue(Tracker(), concurrency=1)
    with pytest.raises(BadRequest, match="priority"):
        q.submit(1, "urgent")
    with pytest.raises(BadRequest, match="attempts"):
        q.submit(1, attempts=0)
    with pytest.raises(BadRequest, match="timeout_s"):
        q.submit(1, timeout_s=0)
    assert q.metrics().submitted == 0


async def test_async_worker_priority_concurrency_and_timeout() -> None:
    state = {"running": 0, "max": 0, "cancelled": 0}
    seen: list[str] = []

    async def worker(name: str) -> str:
        state["running"] += 1
        state["max"] = max(state["max"], state["running"])
        seen.append(name)
        try:
            if name == "hang":
                await asyncio.Event().wait()  # never set: only the timeout ends it
            await asyncio.sleep(0)
            return name.upper()
        except asyncio.CancelledError:
            state["cancelled"] += 1
            raise
        finally:
            state["running"] -= 1

    q: RequestQueue[str, str] = RequestQueue(worker, concurrency=1)
    names = [("low", "a"), ("critical", "b"), ("high", "c"), ("background", "hang")]
    tickets = {n: q.submit(n, p, attempts=1, timeout_s=0.05) for p, n in names}
    q.start()
    assert await asyncio.wrap_future(tickets["b"]) == "B"
    with pytest.raises(ProviderTimeout):
        await asyncio.wrap_future(tickets["hang"])
    q.stop()
    assert seen == ["b", "c", "a", "hang"]
    assert state == {"running": 0, "max": 1, "cancelled": 1}
    m = q.metrics()
    assert (m.done, m.dead) == (3, 1) and adds_up(m)


def test_async_worker_runs_concurrently_up_to_the_limit() -> None:
    state = {"running": 0, "max": 0}

    async def worker(x: int) -> int:
        state["running"] += 1
        state["max"] = max(state["max"], state["running"])
        for _ in range(3):
            await asyncio.sleep(0)  # yield so the other slots get to start
        state["running"] -= 1
        return x * 2

    q: RequestQueue[int, int] = RequestQueue(worker, concurrency=4)
    tickets = [q.submit(i) for i in range(40)]
    q.start()
    assert [t.result(5) for t in tickets] == [i * 2 for i in range(40)]
    q.stop()
    assert state["max"] == 4
