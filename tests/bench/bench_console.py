"""Console benchmarks: time for AppTest to render the Overview page.

- overview_render_s_1m / _10m: first render (empty data caches) of console/app.py signed in,
  range "last 90 days", over 1M / 10M events spread over those 90 days; median of 3 (the
  machine is shared). Targets: <= 1.5 s and <= 3 s. ``*_rerender_s_*``: the next run (all
  queries cached). Quick mode: 100k events, reported under the 1m keys.
- The events are built with numpy/pyarrow and written with core.usage.write_segment (the
  writer the usage log itself uses), 2M rows per segment, sorted by time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from core import clock
from core.usage import SCHEMA, segments_dir, write_segment

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "gemini-2.0-flash",
    "llama-3.1-8b-instant",
    "deepseek-chat",
    "dryrun-small",
]
PROVIDERS = ["openai", "openai", "anthropic", "anthropic", "google", "groq", "deepseek", "dryrun"]
PRICE_IN = np.array([2_500_000, 150_000, 3_000_000, 1_000_000, 100_000, 50_000, 270_000, 150_000])
CHUNK = 2_000_000
SPAN_US = 90 * 86_400 * 10**6


def _table(rng: np.random.Generator, n: int, first: int, start_us: int, span_us: int) -> pa.Table:
    m = rng.integers(0, len(MODELS), n)
    inp, out = rng.integers(20, 4_000, n), rng.integers(1, 1_500, n)
    cached = np.where(rng.random(n) < 0.3, rng.integers(0, 2_000, n), 0)
    cost = inp * PRICE_IN[m] + cached * PRICE_IN[m] // 10 + out * PRICE_IN[m] * 4
    hit = rng.random(n) < 0.05
    failed = rng.random(n) < 0.02

    def pick(values: list[str], idx: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(
            pa.array(idx.astype(np.int32)), pa.array(values)
        ).cast(pa.string())

    def const(value: object, typ: pa.DataType) -> pa.Array:
        return pa.array(np.full(n, value)).cast(typ)

    cols = {
        "request_id": pa.array([f"req_{i:012d}" for i in range(first, first + n)]),
        "ts": pa.array(
            np.sort(rng.integers(start_us, start_us + span_us, n)), pa.timestamp("us", "UTC")
        ),
        "org": pick([f"org{i}" for i in range(5)], rng.integers(0, 5, n)),
        "project": pick([f"project-{i}" for i in range(20)], rng.integers(0, 20, n)),
        "user": pick([f"user{i}" for i in range(500)], rng.integers(0, 500, n)),
        "task": pick([f"task{i}" for i in range(10)], rng.integers(0, 10, n)),
        "provider": pick(PROVIDERS, m),
        "model": pick(MODELS, m),
        "requested_model": pick(MODELS, m),
        "status": pick(["ok", "error"], failed.astype(np.int32)),
        "error_type": pa.array(np.where(failed, "ProviderServerError", None)),
        "attempt": const(1, pa.int32()),
        "input_tokens": pa.array(inp),
        "cached_input_tokens": pa.array(cached),
        "cache_write_tokens": const(0, pa.int64()),
        "output_tokens": pa.array(out),
        "reasoning_tokens": const(0, pa.int64()),
        "usage_estimated": const(False, pa.bool_()),
        "cost_picousd": pa.array(np.where(hit | failed, 0, cost)),
        "saved_picousd": pa.array(np.where(hit, cost, 0)),
        "unpriced": const(False, pa.bool_()),
        "latency_ms": pa.array(rng.gamma(2.0, 300.0, n)),
        "cache_hit": pa.array(hit),
        "ai_called": const(True, pa.bool_()),
        "degraded": const(False, pa.bool_()),
        "route_reason": const("cheapest", pa.string()),
        "criticality": const("normal", pa.string()),
        "source": const("bench", pa.string()),
        "metadata": const("{}", pa.string()),
    }
    return pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in SCHEMA}, schema=SCHEMA)


def build(home: Path, rows: int, seed: int = 11) -> float:
    """``rows`` events over the last 90 days; returns seconds taken."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    end_us = int(clock.timestamp() * 1e6)
    start_us = end_us - SPAN_US
    for k, first in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - first)
        part = start_us + SPAN_US * first // rows
        write_segment(
            _table(rng, n, first, part, SPAN_US * n // rows), segments_dir(home), f"bench-{k:03d}"
        )
    return time.perf_counter() - t0


def render(home: Path) -> tuple[float, float, str]:
    """(first render s, rerender s, the 'Spend in range' shown) of the Overview."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.control import Actor, ControlPlane, ensure_admin

    os.environ["COSTLINE_HOME"] = str(home)
    # A chosen password: a generated one must be changed before any page shows.
    os.environ.setdefault("COSTLINE_ADMIN_PASSWORD", "bench-admin-password")
    with ControlPlane() as plane:
        ensure_admin(plane)
    st.cache_data.clear()  # every query runs: a cold render
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["actor"] = Actor("admin", "admin")
    at.session_state["f_range"] = "90d"
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    t0 = time.perf_counter()
    at.run()
    again = time.perf_counter() - t0
    shown = next(m.value for m in at.metric if m.label == "Spend in range")
    return first, again, shown


def run(quick: bool) -> dict[str, float]:
    base = Path(os.environ.get("COSTLINE_HOME", "/tmp")) / "bench-console"
    saved_home = os.environ.get("COSTLINE_HOME")
    out: dict[str, float] = {}
    try:
        build(base / "warmup", 1_000)
        render(base / "warmup")  # imports and first-use costs, not part of any figure
        sizes = {"1m": 100_000} if quick else {"1m": 1_000_000, "10m": 10_000_000}
        for name, rows in sizes.items():
            home = base / name
            out[f"overview_build_s_{name}"] = round(build(home, rows), 1)
            runs = sorted(render(home)[:2] for _ in range(3))
            out[f"overview_render_s_{name}"] = round(runs[1][0], 3)
            out[f"overview_rerender_s_{name}"] = round(sorted(r[1] for r in runs)[1], 3)
            out[f"overview_rows_{name}"] = rows
    finally:
        if saved_home is not None:
            os.environ["COSTLINE_HOME"] = saved_home
    return out
