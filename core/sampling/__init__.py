"""Sampling gate (step 1 of the call path): per agent/task, call the model now, reuse the
last answer, or batch LOW events into one call (docs/architecture.md, "The call path").

    gate = SamplingGate({"market_regime": SamplingConfig("periodic", interval_s=300)})
    d = gate.decide(Event("market_regime", "medium", signal=price))
    if d.call:
        answer = call_model(d.batch or [event]); gate.record_answer(d.key, answer, cost_pico)
    else:
        reuse d.last_answer; Completion(ai_called=False, saved=gate.saved_estimate(d.key))
    for d in gate.flush_due(): ...   # background tick: LOW batches whose timeout elapsed
"""

from core.sampling._gate import SamplingGate, relative_change
from core.sampling._values import (
    Decision,
    Event,
    GateStats,
    Priority,
    SamplingConfig,
    Strategy,
    Tentative,
)

__all__ = [
    "Decision",
    "Event",
    "GateStats",
    "Priority",
    "SamplingConfig",
    "SamplingGate",
    "Strategy",
    "Tentative",
    "relative_change",
]
