"""Step 1, sampling gate: a task's sampling strategy may answer with its last answer instead
of a call (``ai_called=False``, the saved cost recorded).

A call the gate allows is tentative until a provider is really called: ``report`` tells the
gate at the end of the call whether it was (a failed provider call still counts) or not (the
cache answered, a budget or rate limit refused it).
"""

from __future__ import annotations

from core.sampling import Event, Priority
from core.types import ZERO_COST, Completion, Usage

from .context import Context
from .record import record
from .state import Call, Candidate

__all__ = ["gate", "report"]


def gate(ctx: Context, call: Call) -> Completion | None:
    """The last answer when the strategy skips this call; None to go on."""
    ctl, req = ctx.controls, call.req
    if ctl is None or not req.task or req.task not in ctl.gate_keys:
        return None
    event = Event.of(req.task, Priority.parse(req.criticality), req.signal, req.score)
    decision = ctl.gate.decide(event, tentative=True)
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


def report(ctx: Context, call: Call) -> None:
    """Tell the gate whether its tentative call reached a provider (once per call)."""
    if call.gate_call is not None and ctx.controls is not None:
        if call.provider_called:  # a real call that failed: still a call
            ctx.controls.gate.called(call.gate_call)
        else:  # answered from the cache, or blocked: no provider call
            ctx.controls.gate.not_called(call.gate_call)
    call.gate_call = None
