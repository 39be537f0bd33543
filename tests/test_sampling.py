"""Sampling gate: exact call patterns on scripted event streams, with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

import core.sampling as sampling
from core.errors import BadRequest, ConfigError
from core.sampling import Event, Priority, SamplingConfig, SamplingGate, Strategy
from core.types import PICO


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def run(
    gate: SamplingGate,
    clock: Clock,
    events: Iterable[Event],
    step_s: float = 60.0,
    cost: int = 0,
) -> list[bool]:
    """Feed events ``step_s`` apart; record an answer after each real call. Returns call flags."""
    calls = []
    for i, ev in enumerate(events):
        if i:
            clock.advance(step_s)
        d = gate.decide(ev)
        if d.call:
            gate.record_answer(ev.key, f"answer@{clock.t}", cost)
        calls.append(d.call)
    return calls


def pattern(flags: list[bool]) -> str:
    return "".join("C" if f else "." for f in flags)


def gate_for(cfg: SamplingConfig) -> tuple[SamplingGate, Clock]:
    clock = Clock()
    return SamplingGate({"k": cfg}, clock=clock), clock


def test_all_is_exported() -> None:
    public = {n for n in dir(sampling) if not n.startswith("_")}
    assert set(sampling.__all__) == public
    assert sampling.__all__ == sorted(sampling.__all__)


def test_always_calls_every_event() -> None:
    gate, clock = gate_for(SamplingConfig("always"))
    assert pattern(run(gate, clock, [Event("k")] * 6)) == "CCCCCC"


def test_periodic_300s_over_60s_events_calls_every_fifth() -> None:
    gate, clock = gate_for(SamplingConfig("PERIODIC", interval_s=300))
    flags = run(gate, clock, [Event("k", "medium")] * 16)
    assert pattern(flags) == "C....C....C....C"
    st = gate.stats()["k"]
    assert (st.events, st.calls, st.skipped) == (16, 4, 12)


def test_skip_returns_last_answer() -> None:
    gate, clock = gate_for(SamplingConfig("periodic", interval_s=300))
    assert gate.decide(Event("k")).call
    gate.record_answer("k", "A1", 5)
    clock.advance(60)
    d = gate.decide(Event("k"))
    assert (d.call, d.reason, d.last_answer, d.batch) == (False, "not_due", "A1", [])


def test_change_based_calls_on_relative_change_vs_last_call() -> None:
    gate, clock = gate_for(SamplingConfig("change_based", threshold=0.10))
    signals = [100, 105, 109, 110, 111, 120, 98, 100, 0.0]
    flags = run(gate, clock, [Event("k", signal=s) for s in signals])
    # 100 call (first), 105/109 < 10 %, 110 = 10 % call, 111 vs 110, 120 vs 110 = 9.1 %,
    # 98 vs 110 = 10.9 % call, 100 vs 98, 0 vs 98 = 100 % call
    assert pattern(flags) == "C..C..C.C"


def test_change_based_from_zero_reference() -> None:
    gate, clock = gate_for(SamplingConfig("change_based", threshold=0.5))
    assert pattern(run(gate, clock, [Event("k", signal=s) for s in [0, 0, 0.001]])) == "C.C"


def test_change_based_requires_signal() -> None:
    gate, _ = gate_for(SamplingConfig("change_based", threshold=0.1))
    with pytest.raises(BadRequest, match="signal"):
        gate.decide(Event("k"))
    assert "k" not in gate.stats()  # the bad event was not counted


def test_threshold_calls_only_on_high_scores() -> None:
    gate, clock = gate_for(SamplingConfig("threshold", threshold=0.7))
    gate.record_answer("k", "seed answer")  # an answer exists: low scores can be skipped
    scores = [0.9, 0.2, 0.69, 0.7, 0.1, 0.95]
    assert pattern(run(gate, clock, [Event("k", score=s) for s in scores])) == "C..C.C"
    with pytest.raises(BadRequest, match="score"):
        gate.decide(Event("k"))


def test_skip_without_any_answer_calls() -> None:
    gate, clock = gate_for(SamplingConfig("threshold", threshold=0.7))
    first = gate.decide(Event("k", score=0.1))
    assert (first.call, first.reason) == (True, "first")
    clock.advance(60)
    d = gate.decide(Event("k", score=0.1))  # the first call never recorded an answer
    assert (d.call, d.reason) == (True, "no_answer")
    gate.record_answer("k", "A")
    clock.advance(60)
    d = gate.decide(Event("k", score=0.1))
    assert (d.call, d.reason, d.last_answer) == (False, "score_low", "A")


def _adaptive_calls(signals: list[float]) -> tuple[int, SamplingGate]:
    cfg = SamplingConfig(
        "adaptive",
        base_interval_s=600,
        min_interval_s=60,
        max_interval_s=3600,
        volatility_ref=0.01,
    )
    gate, clock = gate_for(cfg)
    flags = run(gate, clock, [Event("k", signal=s) for s in signals])
    return sum(flags), gate


def test_adaptive_calls_more_often_when_volatile() -> None:
    n = 240
    calm = [100.0 * (1.0005 if i % 2 else 1.0) for i in range(n)]  # 0.05 % moves
    volatile = [100.0 * (1.2 if i % 2 else 1.0) for i in range(n)]  # ~20 % moves
    calm_calls, calm_gate = _adaptive_calls(calm)
    volatile_calls, vol_gate = _adaptive_calls(volatile)
    # calm: interval clamps to max (3600 s = every 60th event); volatile: to min (every event)
    assert calm_gate.adaptive_interval("k") == 3600
    assert vol_gate.adaptive_interval("k") == 60
    assert volatile_calls == n
    assert calm_calls <= 6
    assert volatile_calls > 10 * calm_calls


def test_adaptive_interval_formula() -> None:
    cfg = SamplingConfig(
        "adaptive",
        base_interval_s=600,
        min_interval_s=10,
        max_interval_s=3600,
        volatility_window=1,
        volatility_ref=0.01,
    )
    gate, clock = gate_for(cfg)
    assert gate.adaptive_interval("k") == 600  # no data: base
    gate.decide(Event("k", signal=100.0))
    clock.advance(1)
    gate.decide(Event("k", signal=102.0))  # 2 % change, window 1 -> ewma = 0.02
    assert gate.adaptive_interval("k") == pytest.approx(300)
    clock.advance(1)
    gate.decide(Event("k", signal=102.0))  # flat -> max
    assert gate.adaptive_interval("k") == 3600
    assert SamplingGate({}).adaptive_interval("k") is None


def test_critical_bypasses_strategy_and_min_interval() -> None:
    cfg = SamplingConfig("periodic", interval_s=3600, min_interval_s=600)
    gate, clock = gate_for(cfg)
    events = [
        Event("k", "high"),
        Event("k", "medium"),
        Event("k", "critical"),
        Event("k", Priority.CRITICAL),
        Event("k", "high"),
    ]
    assert pattern(run(gate, clock, events, step_s=1)) == "C.CC."
    assert gate.stats()["k"].calls == 3


def test_min_interval_for_high_and_medium() -> None:
    gate, clock = gate_for(SamplingConfig("always", min_interval_s=60))
    events = [Event("k", "high" if i % 2 else "normal") for i in range(10)]
    # 25 s apart: calls at 0, 75 (3rd step), 150, 225 -> every third event
    flags = run(gate, clock, events, step_s=25)
    assert pattern(flags) == "C..C..C..C"
    clock.advance(10)
    d = gate.decide(Event("k", "high"))
    assert (d.call, d.reason) == (False, "min_interval")


def test_low_batching_seed_example_15_events_2_calls() -> None:
    gate, clock = gate_for(SamplingConfig("always", batch_size=10, batch_timeout_s=300))
    decisions = []
    for i in range(15):
        decisions.append(gate.decide(Event("k", "low", payload=i)))
        clock.advance(1)
    calls = [d for d in decisions if d.call]
    assert len(calls) == 1
    assert calls[0].reason == "batch_full"
    assert [e.payload for e in calls[0].batch] == list(range(10))
    gate.record_answer("k", "batch answer", 10 * PICO // 1000)  # $0.01
    assert gate.flush_due() == []  # 5 pending, first one only 5 s old
    assert gate.stats()["k"].pending == 5
    clock.advance(300)
    due = gate.flush_due()
    assert len(due) == 1 and due[0].call and due[0].reason == "batch_timeout"
    assert [e.payload for e in due[0].batch] == list(range(10, 15))
    gate.record_answer("k", "second batch", 10 * PICO // 1000)
    st = gate.stats()["k"]
    assert (st.events, st.calls, st.batched, st.pending, st.saved_calls) == (15, 2, 15, 0, 13)
    assert round(st.saved_pct) == 87  # the seed's "savings: 87%"
    assert st.saved_picousd == 13 * PICO // 100  # 13 calls x $0.01
    assert gate.flush_due() == []


def test_low_batch_flushes_when_late_event_arrives() -> None:
    gate, clock = gate_for(SamplingConfig("always", batch_size=10, batch_timeout_s=300))
    gate.record_answer("k", "old")
    d1 = gate.decide(Event("k", "background"))
    assert (d1.call, d1.reason, d1.last_answer) == (False, "batched", "old")
    clock.advance(299)
    assert not gate.decide(Event("k", "low")).call
    clock.advance(1)
    d3 = gate.decide(Event("k", "low"))
    assert (d3.call, d3.reason, len(d3.batch)) == (True, "batch_timeout", 3)


def test_flush_force_and_batch_size_one() -> None:
    gate, _ = gate_for(SamplingConfig("always", batch_size=1))
    d = gate.decide(Event("k", "low"))
    assert d.call and d.reason == "batch_full" and len(d.batch) == 1
    gate2, _ = gate_for(SamplingConfig("always", batch_size=5))
    gate2.decide(Event("k", "low"))
    gate2.decide(Event("k", "low"))
    forced = gate2.flush_due(force=True)
    assert [(x.reason, len(x.batch)) for x in forced] == [("batch_flush", 2)]


def test_stats_and_saved_dollars() -> None:
    gate, clock = gate_for(SamplingConfig("periodic", interval_s=300))
    costs = iter([3 * PICO // 1000, 5 * PICO // 1000, 4 * PICO // 1000])  # $0.003/5/4
    for i in range(11):
        if i:
            clock.advance(60)
        d = gate.decide(Event("k"))
        if d.call:
            gate.record_answer("k", i, next(costs))
    st = gate.stats()["k"]
    assert (st.events, st.calls, st.skipped, st.saved_calls) == (11, 3, 8, 8)
    assert st.spent_picousd == 12 * PICO // 1000
    assert gate.saved_estimate("k") == 4 * PICO // 1000  # average real call
    assert st.saved_picousd == 8 * 4 * PICO // 1000
    assert gate.saved_estimate("unknown") == 0
    with pytest.raises(BadRequest, match="cost_picousd"):
        gate.record_answer("k", "x", -1)
    with pytest.raises(BadRequest, match="cost_picousd"):
        gate.record_answer("k", "x", 0.5)  # type: ignore[arg-type]


def test_unconfigured_key_always_calls_and_configure() -> None:
    gate, clock = gate_for(SamplingConfig("always"))
    d = gate.decide(Event("other"))
    assert (d.call, d.reason) == (True, "unconfigured")
    assert "other" not in gate.stats()
    gate.configure("other", SamplingConfig("periodic", interval_s=100))
    assert pattern(run(gate, clock, [Event("other")] * 3)) == "C.C"
    gate.configure("other", None)
    assert gate.decide(Event("other")).reason == "unconfigured"


def test_event_ts_overrides_clock() -> None:
    gate, _ = gate_for(SamplingConfig("periodic", interval_s=300))
    gate.decide(Event("k", ts=0.0))
    gate.record_answer("k", "A")
    assert not gate.decide(Event("k", ts=299.0)).call
    assert gate.decide(Event("k", ts=300.0)).call


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "sometimes"}, "strategy"),
        ({"strategy": "periodic"}, "interval_s"),
        ({"strategy": "periodic", "interval_s": -1}, "interval_s"),
        ({"strategy": "periodic", "interval_s": float("nan")}, "interval_s"),
        ({"strategy": "change_based"}, "threshold"),
        ({"strategy": "change_based", "threshold": -0.1}, "threshold"),
        ({"strategy": "threshold"}, "threshold"),
        ({"strategy": "adaptive", "max_interval_s": 60}, "base_interval_s"),
        ({"strategy": "adaptive", "base_interval_s": 60}, "max_interval_s"),
        ({"min_interval_s": 100, "max_interval_s": 50}, "min_interval_s"),
        ({"min_interval_s": -5}, "min_interval_s"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_timeout_s": -1}, "batch_timeout_s"),
        ({"volatility_window": 0}, "volatility_window"),
        ({"volatility_ref": 0}, "volatility_ref"),
    ],
)
def test_config_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SamplingConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)


def test_config_and_event_normalisation() -> None:
    assert SamplingConfig("Change_Based", threshold=0.1).strategy is Strategy.CHANGE_BASED
    assert Event("k", "NORMAL").priority is Priority.MEDIUM
    assert Event("k", "background").priority is Priority.LOW
    with pytest.raises(BadRequest, match="priority"):
        Event("k", "urgent")
    with pytest.raises(BadRequest, match="signal"):
        Event("k", signal=float("inf"))
    with pytest.raises(BadRequest, match="key"):
        Event("")


def test_from_control_plane_strategy() -> None:
    from core.control._models import SamplingStrategy

    s = SamplingStrategy(
        key="market_regime",
        strategy="adaptive",
        params={"min_interval_s": 30, "max_interval_s": 1800, "interval_s": 300},
        min_interval_s=60,
        batch_size=8,
        batch_timeout_s=120,
    )
    cfg = SamplingConfig.from_strategy(s)
    assert cfg.strategy is Strategy.ADAPTIVE
    assert (cfg.base_interval_s, cfg.min_interval_s, cfg.max_interval_s) == (300, 60, 1800)
    assert (cfg.batch_size, cfg.batch_timeout_s) == (8, 120)


def test_thread_safe_counters() -> None:
    gate, _ = gate_for(SamplingConfig("periodic", interval_s=300, batch_size=7))
    gate.record_answer("k", "A")
    assert gate.decide(Event("k")).call  # the only single call: the clock never moves

    def worker(prio: str) -> None:
        for _ in range(500):
            gate.decide(Event("k", prio))

    threads = [threading.Thread(target=worker, args=(p,)) for p in ("low", "medium", "high")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = gate.stats()["k"]
    assert st.events == 1501 and st.batched == 500
    assert st.pending == 500 % 7
    single_calls = st.calls - (500 // 7)
    assert single_calls + st.skipped + st.batched == st.events
    assert single_calls == 1


def test_never_skips_only_always_without_min_interval_and_not_low() -> None:
    gate, _ = gate_for(SamplingConfig("always"))
    assert gate.never_skips("k", Priority.MEDIUM) and gate.never_skips("k", Priority.CRITICAL)
    assert not gate.never_skips("k", Priority.LOW)  # batched
    assert not gate.never_skips("other", Priority.MEDIUM)  # unconfigured
    for cfg in (SamplingConfig("always", min_interval_s=5), SamplingConfig("periodic", 60)):
        gate.configure("k", cfg)
        assert not gate.never_skips("k", Priority.HIGH)


def test_record_call_leaves_what_asking_first_leaves() -> None:
    """The router's path for a key that never skips (record_call at the end) against
    decide(tentative=True) then record_answer / called / not_called: the same stats, the
    same answer, and the same last call and signal (seen once the config changes)."""
    asked, asked_clock = gate_for(SamplingConfig("always"))
    ended, ended_clock = gate_for(SamplingConfig("always"))
    # (signal, outcome): answered, provider called without an answer, or not called
    script = [(1.0, "answer"), (2.0, "failed"), (3.0, "not_called"), (None, "answer")]
    script += [(5.0, "not_called"), (6.0, "answer"), (7.0, "failed")]
    for i, (signal, outcome) in enumerate(script):
        asked_clock.advance(10)
        ended_clock.advance(10)
        d = asked.decide(Event("k", signal=signal), tentative=True)
        assert d.call and ended.never_skips("k", Priority.MEDIUM)
        at = ended.now()
        if outcome == "answer":
            asked.record_answer("k", f"a{i}", 7 * PICO, call=d)
            ended.record_call("k", at, signal, answer=f"a{i}", cost_picousd=7 * PICO)
        else:
            (asked.called if outcome == "failed" else asked.not_called)(d)
            ended.record_call("k", at, signal, called=outcome == "failed")
    assert asked.stats() == ended.stats()
    assert (ended.stats()["k"].events, ended.stats()["k"].calls) == (7, 5)
    assert asked.last_answer("k") == ended.last_answer("k") == "a5"
    assert asked.saved_estimate("k") == ended.saved_estimate("k")
    for gate, clock in ((asked, asked_clock), (ended, ended_clock)):
        gate.configure("k", SamplingConfig("change_based", threshold=0.5, min_interval_s=15))
        clock.advance(10)  # 10 s since the last call: within the minimum interval
        assert gate.decide(Event("k", signal=7.1)).reason == "min_interval"
        clock.advance(10)  # then the last call's signal (7.0) is the reference
        assert gate.decide(Event("k", signal=7.1)).reason == "unchanged"


def test_record_call_keeps_the_latest_start_when_calls_end_out_of_order() -> None:
    gate, clock = gate_for(SamplingConfig("always"))
    first = gate.now()
    clock.advance(30)
    second = gate.now()
    gate.record_call("k", second, 2.0)  # the later call ends first
    gate.record_call("k", first, 1.0)
    gate.configure("k", SamplingConfig("change_based", threshold=0.5, min_interval_s=40))
    gate.record_answer("k", "a")
    clock.advance(20)  # 20 s after the later start, 50 s after the first
    assert gate.decide(Event("k", signal=2.0)).reason == "min_interval"
    clock.advance(30)
    assert gate.decide(Event("k", signal=2.0)).reason == "unchanged"  # reference 2.0
    with pytest.raises(BadRequest):
        gate.record_call("k", gate.now(), answer="x", cost_picousd=-1)


def test_each_scope_has_its_own_interval_batch_and_answer() -> None:
    """A tenant (scope) never reuses another's answer: its first event calls, its skips reuse
    its own answer, its LOW events batch apart; stats add the scopes up per key."""
    clock = Clock()
    gate = SamplingGate({"k": SamplingConfig("periodic", interval_s=300, batch_size=2)}, clock)
    a = gate.decide(Event("k", scope="org:a"))
    assert a.call and a.scope == "org:a"
    gate.record_answer("k", "a's answer", 10, scope="org:a")
    b = gate.decide(Event("k", scope="org:b"))  # a's call is not b's: b calls
    assert b.call and b.last_answer is None
    gate.record_answer("k", "b's answer", 30, scope="org:b")
    assert gate.decide(Event("k", scope="org:a")).last_answer == "a's answer"
    assert gate.decide(Event("k", scope="org:b")).last_answer == "b's answer"
    assert gate.last_answer("k") is None and gate.saved_estimate("k", "org:b") == 30
    low = [gate.decide(Event("k", "low", scope=s)) for s in ("org:a", "org:b", "org:a")]
    assert [d.call for d in low] == [False, False, True]  # a's pair is full, b's waits
    assert low[2].scope == "org:a" and len(low[2].batch) == 2
    st = gate.stats()["k"]
    assert (st.events, st.calls, st.skipped, st.batched) == (7, 3, 2, 3)
