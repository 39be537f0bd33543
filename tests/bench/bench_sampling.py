"""Sampling gate: calls saved per strategy on a synthetic trading day, and decide() cost.

The stream: one event a minute for a day (1,440 events), a seeded random-walk price with calm
hours (0.05 % per minute) and volatile hours (0.5 %), priorities mixed 1 % critical, 10 % high,
69 % medium, 20 % low; an event's score is its absolute move over 0.5 % (capped at 1).
Every strategy sees the same stream with min_interval 60 s and LOW batches of 10 / 300 s.
"""

from __future__ import annotations

import random
import statistics
import time

from core.sampling import Event, SamplingConfig, SamplingGate

MINUTES = 24 * 60
VOLATILE_HOURS = {9, 10, 14, 20}


def config(strategy: str, **knobs: float) -> SamplingConfig:
    return SamplingConfig(
        strategy,
        min_interval_s=60.0,
        batch_size=10,
        batch_timeout_s=300.0,
        **knobs,  # type: ignore[arg-type]
    )


CONFIGS = {
    "always": config("always"),
    "periodic": config("periodic", interval_s=300),
    "change_based": config("change_based", threshold=0.005),
    "threshold": config("threshold", threshold=0.7),
    "adaptive": config("adaptive", base_interval_s=300, max_interval_s=1800, volatility_ref=0.001),
}


def stream(seed: int = 20240501) -> list[Event]:
    rng = random.Random(seed)
    price, events = 100.0, []
    for minute in range(MINUTES):
        sigma = 0.005 if minute // 60 in VOLATILE_HOURS else 0.0005
        move = rng.gauss(0.0, sigma)
        price *= 1.0 + move
        u = rng.random()
        prio = "critical" if u < 0.01 else "high" if u < 0.11 else "low" if u < 0.31 else "medium"
        score = min(1.0, abs(move) / 0.005)
        events.append(Event("agent", prio, signal=price, score=score, ts=minute * 60.0))
    return events


def replay(cfg: SamplingConfig, events: list[Event], timings: list[int] | None) -> int:
    """Real calls the gate asks for over the stream (pending LOW batches flushed at the end)."""
    now = [0.0]
    gate = SamplingGate({"agent": cfg}, clock=lambda: now[0])
    calls = 0
    for ev in events:
        now[0] = ev.ts or 0.0
        calls += len(gate.flush_due())  # the background tick, once a minute
        t0 = time.perf_counter_ns()
        d = gate.decide(ev)
        if timings is not None:
            timings.append(time.perf_counter_ns() - t0)
        if d.call:
            calls += 1
            gate.record_answer("agent", f"answer {ev.ts}", 2_000_000_000)  # $0.002
    calls += len(gate.flush_due(force=True))
    st = gate.stats()["agent"]
    assert st.calls == calls and st.pending == 0, (st, calls)
    return calls


def run(quick: bool) -> dict[str, float]:
    events = stream()
    out: dict[str, float] = {}
    timings: list[int] = []
    for name, cfg in CONFIGS.items():
        calls = replay(cfg, events, None)
        out[f"sampling_saved_pct_{name}"] = round(100.0 * (len(events) - calls) / len(events), 1)
        for _ in range(1 if quick else 5):
            replay(cfg, events, timings)
    out["sampling_decide_us"] = round(statistics.median(timings) / 1000.0, 2)
    out["sampling_events"] = float(len(events))
    return out


if __name__ == "__main__":
    print(run(quick=False))
