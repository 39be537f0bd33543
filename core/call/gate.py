"""Step 1, sampling gate: a task's sampling strategy may answer with its last answer instead
of a call (``ai_called=False``, the saved cost recorded).

The answers a call may reuse are its tenant's only: the gate keeps one state per (task,
tenant), the tenant being the response cache's (``ResponseCache.tenant``, by the
``cache_scope`` setting: a virtual key's org by default, or the key, or everyone).

A call the gate allows is tentative until a provider is really called: ``report`` tells the
gate at the end of the call whether it was (a failed provider call still counts) or not (the
cache answered, a budget or rate limit refused it). A key whose strategy never skips (ALWAYS
with no minimum interval, an event that is not LOW) is not asked at all: the call's start
time is kept and the gate records the event once, when the call ends (``answered`` or
``report``), with the same counts and last-call time that asking first would leave.

LOW-priority events are batched; a batch is flushed as one call when it is full, when an
event arrives after its timeout, or by the ``Ticker`` (started with the first batched event)
once its timeout elapses with no event arriving: ``due`` hands those batches to the router,
which calls the provider with the request of each batch's latest event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from core.sampling import Event, Priority
from core.types import ZERO_COST, ChatRequest, Completion, Usage, new_request_id

from .context import Context
from .record import record
from .state import Call, Candidate

__all__ = ["Ticker", "answered", "due", "gate", "report"]

log = logging.getLogger(__name__)


def gate(ctx: Context, call: Call) -> Completion | None:
    """The last answer when the strategy skips this call; None to go on."""
    ctl, req = ctx.controls, call.req
    if ctl is None or not req.task or req.task not in ctl.gate_keys:
        return None
    priority = Priority.parse(req.criticality)
    # the answers this call may reuse are its tenant's only, scoped as the response cache is
    call.gate_scope = scope = ctl.cache.tenant(req)
    if ctl.gate.never_skips(req.task, priority):  # nothing to decide: recorded at the end
        call.gate_key, call.gate_at = req.task, ctl.gate.now()
        return None
    payload = req if priority is Priority.LOW else None  # what a timed flush will send
    event = Event(req.task, priority, req.signal, req.score, payload, scope=scope)
    decision = ctl.gate.decide(event, tentative=True)
    if decision.reason == "batched" and ctx.on_batched is not None:
        ctx.on_batched()  # a batch is waiting: make sure its timeout is watched
    last = decision.last_answer if isinstance(decision.last_answer, Completion) else None
    if decision.call or last is None:  # nothing to reuse yet (a LOW event): call anyway
        call.gate_key = req.task
        if decision.tentative is not None:
            call.gate_call = decision
        return None
    done = Completion(
        text=last.text,
        usage=Usage(),
        cost=ZERO_COST,
        model=last.model,
        provider=last.provider,
        latency_ms=call.elapsed_ms(),
        request_id=req.request_id,
        route_reason=f"sampling {decision.reason}: reused the last answer, no call",
        requested_model=call.requested_model,
        saved=last.cost,
        ai_called=False,
    )
    record(
        ctx, call, Candidate(done.model, done.provider, done.model, None), 0, "skipped", done, None
    )
    return done


def answered(ctx: Context, call: Call, done: Completion, cost: int) -> None:
    """The call's answer, the one later events of its key reuse; counts its call."""
    assert ctx.controls is not None and call.gate_key is not None
    sampling = ctx.controls.gate
    if call.gate_at is not None:
        sampling.record_call(
            call.gate_key,
            call.gate_at,
            call.req.signal,
            answer=done,
            cost_picousd=cost,
            scope=call.gate_scope,
        )
    else:
        sampling.record_answer(
            call.gate_key, done, cost, call=call.gate_call, scope=call.gate_scope
        )
    call.gate_call = call.gate_at = None


def report(ctx: Context, call: Call) -> None:
    """Tell the gate whether its tentative call reached a provider (once per call)."""
    sampling = ctx.controls.gate if ctx.controls is not None else None
    if sampling is not None and call.gate_at is not None:
        assert call.gate_key is not None
        # provider_called: a real call that failed, still a call; else answered from the
        # cache, or blocked: no provider call
        sampling.record_call(
            call.gate_key,
            call.gate_at,
            call.req.signal,
            called=call.provider_called,
            scope=call.gate_scope,
        )
    elif sampling is not None and call.gate_call is not None:
        if call.provider_called:
            sampling.called(call.gate_call)
        else:
            sampling.not_called(call.gate_call)
    call.gate_call = call.gate_at = None


def due(ctx: Context) -> list[ChatRequest]:
    """The request to send for each LOW batch whose timeout elapsed (its latest event's)."""
    if ctx.controls is None:
        return []
    out = []
    for d in ctx.controls.gate.flush_due():
        req = next((e.payload for e in reversed(d.batch) if e.payload is not None), None)
        if isinstance(req, ChatRequest):
            out.append(replace(req, request_id=new_request_id()))  # a call of its own
    return out


class Ticker:
    """Runs ``tick`` every ``interval_s`` seconds on a daemon thread until ``stop``."""

    def __init__(self, tick: Callable[[], object], interval_s: float = 1.0) -> None:
        self._tick, self._interval = tick, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="costline-batch-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except Exception:  # one failed flush must not end the timer
                log.exception("sampling batch flush failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
