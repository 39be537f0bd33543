"""Priority request queue: a concurrency limit, per-request retries and timeouts, dead letters.

From the nself-chat seed ("Request Queue"). Priorities are the ``ChatRequest`` criticalities,
critical first, FIFO within one priority; a retried request keeps its place in its priority.

    q = RequestQueue(worker, concurrency=4)   # worker(payload) -> result; sync or ``async def``
    q.start()
    ticket = q.submit(payload, "high", attempts=3, timeout_s=30)   # a concurrent Future
    ticket.result()            # or ``await asyncio.wrap_future(ticket)``; raises the last error
    q.stop(drain=True)         # finish queued work (drain=False cancels what has not started)

A sync worker runs on ``concurrency`` threads. Python cannot kill a thread, so a timed-out
call counts as a failed attempt at once (retry or dead letter) but keeps its slot until it
returns, and its result is discarded: the concurrency limit is never exceeded. An async worker
runs as ``concurrency`` tasks on one event loop thread, and a timeout cancels it.
Failures are retried unless ``retry_on(exc)`` says no (default: not RequestError/PolicyError).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from core.errors import BadRequest, ConfigError, PolicyError, ProviderTimeout, RequestError
from core.types import CRITICALITIES

T = TypeVar("T")
R = TypeVar("R")
PRIORITIES: tuple[str, ...] = CRITICALITIES  # critical, high, normal, low, background


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    payload: Any
    priority: str
    attempts: int
    error: BaseException


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """``submitted == queued + running + done + dead + cancelled``; ``failed`` counts attempts."""

    submitted: int
    queued: int
    running: int
    done: int
    failed: int
    dead: int
    cancelled: int
    wait_ms_p50: float
    wait_ms_p95: float


class Ticket(Future[R]):
    """The Future of one submitted request, with its id and priority."""

    def __init__(self, id: int, priority: str) -> None:
        super().__init__()
        self.id = id
        self.priority = priority


@dataclass(eq=False, slots=True)
class _Job:
    id: int
    payload: Any
    priority: str
    attempts: int
    timeout_s: float | None
    ticket: Ticket[Any]
    submitted_at: float
    tries: int = 0
    active: int = 0  # number of the attempt running now; 0 when none


def default_retry_on(exc: BaseException) -> bool:
    """Retry anything but a wrong request or a Costline policy refusal."""
    return not isinstance(exc, RequestError | PolicyError)


def _bad_count(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < 1


def _bad_timeout(value: object) -> bool:
    if value is None:
        return False
    return isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


class RequestQueue(Generic[T, R]):
    @overload
    def __init__(
        self: RequestQueue[T, R],
        worker: Callable[[T], Awaitable[R]],
        concurrency: int,
        default_attempts: int = ...,
        default_timeout_s: float | None = ...,
        retry_on: Callable[[BaseException], bool] = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: RequestQueue[T, R],
        worker: Callable[[T], R],
        concurrency: int,
        default_attempts: int = ...,
        default_timeout_s: float | None = ...,
        retry_on: Callable[[BaseException], bool] = ...,
    ) -> None: ...

    def __init__(
        self,
        worker: Callable[[T], Any],
        concurrency: int,
        default_attempts: int = 3,
        default_timeout_s: float | None = None,
        retry_on: Callable[[BaseException], bool] = default_retry_on,
    ) -> None:
        for name, value, bad in (
            ("concurrency", concurrency, _bad_count(concurrency)),
            ("default_attempts", default_attempts, _bad_count(default_attempts)),
            ("default_timeout_s", default_timeout_s, _bad_timeout(default_timeout_s)),
        ):
            if bad:
                raise ConfigError(f"{name}: invalid value {value!r}", field=name)
        self._concurrency = concurrency
        self._attempts = default_attempts
        self._timeout = default_timeout_s
        self._worker = worker
        self._is_async = inspect.iscoroutinefunction(worker) or (
            not inspect.isroutine(worker) and inspect.iscoroutinefunction(type(worker).__call__)
        )
        self._retry_on = retry_on
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # new work, finished work, stopping
        self._timers = threading.Condition(self._lock)  # new deadline for the watchdog
        self._heap: list[tuple[int, int, _Job]] = []
        self._deadlines: list[tuple[float, int, _Job, int]] = []
        self._ids = itertools.count(1)
        self._waits: deque[float] = deque(maxlen=10_000)
        self._dead: list[DeadLetter] = []
        self._n = dict.fromkeys(("submitted", "running", "done", "failed", "dead", "cancelled"), 0)
        self._threads: list[threading.Thread] = []
        self._closed = self._stopping = self._abandon = False
        self._slots_alive = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    # -- public API --

    def submit(
        self,
        payload: T,
        priority: str = "normal",
        attempts: int | None = None,
        timeout_s: float | None = None,
    ) -> Ticket[R]:
        if priority not in PRIORITIES:
            raise BadRequest(f"priority: unknown value {priority!r} (expected {PRIORITIES})")
        if attempts is not None and _bad_count(attempts):
            raise BadRequest(f"attempts: must be an integer >= 1, got {attempts!r}")
        if _bad_timeout(timeout_s):
            raise BadRequest(f"timeout_s: must be a number of seconds > 0, got {timeout_s!r}")
        tries = self._attempts if attempts is None else attempts
        timeout = self._timeout if timeout_s is None else timeout_s
        with self._lock:
            if self._closed:
                raise BadRequest("queue is stopped: submit refused")
            job_id = next(self._ids)
            ticket: Ticket[R] = Ticket(job_id, priority)
            job = _Job(job_id, payload, priority, tries, timeout, ticket, time.monotonic())
            heapq.heappush(self._heap, (PRIORITIES.index(priority), job_id, job))
            self._n["submitted"] += 1
            self._notify()
        return ticket

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise BadRequest("queue is stopped: it cannot be restarted")
            self._spawn()

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Refuse new work; ``drain`` finishes queued work, else cancels it. Then join."""
        with self._lock:
            self._closed = True
            cancelled = [] if drain else [job.ticket for _, _, job in self._heap]
            if not drain:
                self._abandon = True
                self._n["cancelled"] += len(self._heap)
                self._heap.clear()
            elif self._heap:
                self._spawn()  # never started: run the queued work now
            self._stopping = True
            self._notify()
            self._timers.notify_all()
        for ticket in cancelled:
            ticket.cancel()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def join(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or running; False on timeout."""
        with self._lock:
            return self._work.wait_for(lambda: not self._heap and self._n["running"] == 0, timeout)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead)

    def metrics(self) -> QueueMetrics:
        with self._lock:
            waits = sorted(self._waits)
            n = dict(self._n)
            queued = len(self._heap)
        return QueueMetrics(
            submitted=n["submitted"],
            queued=queued,
            running=n["running"],
            done=n["done"],
            failed=n["failed"],
            dead=n["dead"],
            cancelled=n["cancelled"],
            wait_ms_p50=_percentile(waits, 0.50),
            wait_ms_p95=_percentile(waits, 0.95),
        )

    # -- bookkeeping (shared by both runners; "lock held" where noted) --

    def _spawn(self) -> None:
        """Start the runner threads once; lock held."""
        if self._threads:
            return
        if self._is_async:
            targets = [self._run_loop]
        else:
            targets = [self._slot] * self._concurrency + [self._watchdog]
            self._slots_alive = self._concurrency
        for i, target in enumerate(targets):
            t = threading.Thread(target=target, name=f"costline-queue-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def _notify(self) -> None:
        """Wake waiting slots and join(); lock held."""
        self._work.notify_all()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(wake.set)

    def _take(self) -> tuple[_Job | None, bool]:
        """(next job, None) or (None, exit?); lock held."""
        while self._heap:
            _, _, job = heapq.heappop(self._heap)
            if job.tries == 0:
                if not job.ticket.set_running_or_notify_cancel():
                    self._n["cancelled"] += 1
                    continue
                self._waits.append((time.monotonic() - job.submitted_at) * 1000.0)
            job.tries += 1
            job.active = job.tries
            self._n["running"] += 1
            return job, False
        return None, self._stopping and self._n["running"] == 0

    def _finish(
        self, job: _Job, attempt: int, result: Any = None, error: BaseException | None = None
    ) -> None:
        with self._lock:
            if job.active != attempt:
                return  # this attempt already timed out: its late result is discarded
            job.active = 0
            self._n["running"] -= 1
            settle = True
            if error is None:
                self._n["done"] += 1
            else:
                self._n["failed"] += 1
                if job.tries < job.attempts and not self._abandon and self._retry_on(error):
                    heapq.heappush(self._heap, (PRIORITIES.index(job.priority), job.id, job))
                    settle = False
                else:
                    self._n["dead"] += 1
                    self._dead.append(
                        DeadLetter(job.id, job.payload, job.priority, job.tries, error)
                    )
            self._notify()
        if not settle:
            return
        if error is None:  # outside the lock: done-callbacks may submit
            job.ticket.set_result(result)
        else:
            job.ticket.set_exception(error)

    # -- thread runner (sync worker) --

    def _slot(self) -> None:
        worker: Callable[[Any], Any] = self._worker
        while True:
            with self._lock:
                job, done = self._take()
                while job is None and not done:
                    self._work.wait()
                    job, done = self._take()
                if job is None:
                    self._slots_alive -= 1
                    self._timers.notify_all()
                    return
                attempt = job.active
                if job.timeout_s is not None:
                    due = time.monotonic() + job.timeout_s
                    heapq.heappush(self._deadlines, (due, job.id, job, attempt))
                    self._timers.notify_all()
            try:
                result = worker(job.payload)
            except Exception as exc:
                self._finish(job, attempt, error=exc)
            else:
                self._finish(job, attempt, result=result)

    def _watchdog(self) -> None:
        """Fail attempts that run past their deadline (sync runner only)."""
        while True:
            expired: list[tuple[_Job, int]] = []
            with self._lock:
                while not expired:
                    if self._stopping and self._slots_alive == 0:
                        return
                    now = time.monotonic()
                    while self._deadlines and self._deadlines[0][0] <= now:
                        _, _, job, attempt = heapq.heappop(self._deadlines)
                        if job.active == attempt:
                            expired.append((job, attempt))
                    if not expired:
                        wait = self._deadlines[0][0] - now if self._deadlines else None
                        self._timers.wait(wait)
            for job, attempt in expired:
                err = ProviderTimeout(f"queue job {job.id} exceeded timeout_s={job.timeout_s}")
                self._finish(job, attempt, error=err)

    # -- asyncio runner (async worker) --

    def _run_loop(self) -> None:
        asyncio.run(self._amain())

    async def _amain(self) -> None:
        wake = asyncio.Event()
        with self._lock:
            self._loop, self._wake = asyncio.get_running_loop(), wake
        try:
            await asyncio.gather(*(self._aslot(wake) for _ in range(self._concurrency)))
        finally:
            with self._lock:
                self._loop = self._wake = None

    async def _aslot(self, wake: asyncio.Event) -> None:
        worker: Callable[[Any], Awaitable[Any]] = self._worker
        while True:
            with self._lock:
                job, done = self._take()
                if job is None and not done:
                    wake.clear()  # re-check after clearing: a later submit sets it again
                    job, done = self._take()
            if done:
                wake.set()  # let the other slots see the exit too
                return
            if job is None:
                await wake.wait()
                continue
            attempt = job.active
            try:
                if job.timeout_s is None:
                    result = await worker(job.payload)
                else:
                    result = await asyncio.wait_for(worker(job.payload), job.timeout_s)
            except TimeoutError:
                err = ProviderTimeout(f"queue job {job.id} exceeded timeout_s={job.timeout_s}")
                self._finish(job, attempt, error=err)
            except Exception as exc:
                self._finish(job, attempt, error=exc)
            else:
                self._finish(job, attempt, result=result)
