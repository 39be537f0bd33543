"""Usage log benchmarks.

- log_ingest_events_per_s: UsageLog.append of N events (4M: 80 segments, so the background
  compaction runs during the measurement), flushes to Parquet included.
- log_ingest_cpu_us_per_event: CPU time of that run (all threads: appends and conversion)
  per event; unlike the rate, it barely depends on what else runs on the machine.
- log_ingest_rss_mb: peak resident memory growth during that run (bounded: the journal is the
  buffer, and a merge holds one chunk of rows, not the merged file), sampled every 10 ms by
  a thread (the converter threads' memory counts too).
- raw_write_events_per_s: the limit measured in the same run - the same events turned into
  Arrow tables (rows_to_table) and written straight to one Parquet file with pyarrow, no
  journal; log_ingest_vs_raw_write = log_ingest_events_per_s / raw_write_events_per_s
  (target >= 0.5).
- log_idle_visible_ms: one append, then nothing: until a Reader sees it (the flush timer,
  flush_interval_s = 2 s by default, plus the conversion).
- query_10m_rows_warm_ms: Reader.spend_by(["model"], "day") over 10M events (1M with
  --quick), median of 5 runs after one warm-up, on files written seconds before: the page
  cache is warm, so this is not a cold-disk figure (query_10m_rows_warm_cpu_ms: CPU time, all
  DuckDB threads). The data is built with numpy/pyarrow and written through the same
  write_segment() the log uses.
- duckdb_10m_rows_warm_ms: the limit in the same run - the same SQL (spend_sql over the
  same ``events``/``facts`` views) run by a bare DuckDB connection on the same files into a
  DataFrame, same warm-up and median; query_10m_vs_duckdb_x = query / bare DuckDB (target
  <= 1.2): what the Reader adds (snapshot scan, view refresh, locking, frame shaping).
- usage_loadavg_1m: the machine's 1-minute load average when the module started.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core import clock
from core.usage import SCHEMA, UsageEvent, UsageLog, rows_to_table, segments_dir, write_segment
from core.usage._schema import event_row

MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "o3-mini",
    "claude-3-5-sonnet",
    "claude-3-5-haiku",
    "gemini-1.5-flash",
    "llama-3.1-8b-instant",
    "deepseek-chat",
]
PROVIDERS = ["openai", "openai", "openai", "anthropic", "anthropic", "google", "groq", "deepseek"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _event(i: int, now: datetime) -> UsageEvent:
    m = i % len(MODELS)
    return UsageEvent(
        request_id=f"req_{i:032x}",
        ts=now + timedelta(milliseconds=i),
        org=f"org{i % 3}",
        project=f"project-{i % 7}",
        user=f"user{i % 50}",
        task="chat" if i % 4 else "summarise",
        app="web",
        tags=("beta",) if i % 10 == 0 else (),
        provider=PROVIDERS[m],
        model=MODELS[m],
        requested_model=MODELS[m],
        input_tokens=500 + i % 1500,
        cached_input_tokens=(i % 3) * 128,
        output_tokens=50 + i % 400,
        cost_picousd=1_234_567 * (1 + i % 1000),
        cost_input_picousd=1_000_000 * (1 + i % 1000),
        cost_output_picousd=234_567 * (1 + i % 1000),
        latency_ms=200.0 + i % 900,
        ttft_ms=50.0 + i % 90,
        route_reason="cheapest",
        metadata={"trace": f"t{i % 100}"} if i % 5 == 0 else {},
    )


def bench_ingest(home: Path, n: int) -> dict[str, float]:
    now = clock.now()
    pool = [_event(i, now) for i in range(1_000)]
    log = UsageLog(home)
    log.append(pool[0])
    log.flush()  # warm-up: imports, first segment
    rss0 = _rss_mb()
    peak = [rss0]
    done = threading.Event()

    def sample() -> None:  # from a thread: the converter's memory counts too
        while not done.wait(0.01):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    append = log.append
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(n):
        append(pool[i % 1000])
    log.close()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    done.set()
    sampler.join()
    rate = n / elapsed
    raw = raw_write_rate(home / "raw.parquet", pool, n)
    return {
        "log_ingest_events_per_s": round(rate),
        "log_ingest_cpu_us_per_event": round(cpu / n * 1e6, 2),
        "log_ingest_rss_mb": round(max(peak[0], _rss_mb()) - rss0, 1),
        "raw_write_events_per_s": round(raw),
        "log_ingest_vs_raw_write": round(rate / raw, 2),
    }


def raw_write_rate(path: Path, pool: list[UsageEvent], n: int, chunk: int = 100_000) -> float:
    """Events per second of the same events written straight to Parquet with pyarrow."""
    t0 = time.perf_counter()
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for first in range(0, n, chunk):
            rows = [event_row(pool[i % len(pool)]) for i in range(first, min(n, first + chunk))]
            writer.write_table(rows_to_table(rows))
    rate = n / (time.perf_counter() - t0)
    path.unlink()
    return rate


def _bench_table(
    rng: np.random.Generator, start_us: int, span_us: int, n: int, first: int
) -> pa.Table:
    """n synthetic events with realistic cardinalities, sorted by ts."""
    m = rng.integers(0, len(MODELS), n)
    inp = rng.integers(20, 4_000, n)
    cached = np.where(rng.random(n) < 0.3, rng.integers(0, 2_000, n), 0)
    out = rng.integers(1, 1_500, n)
    price_in = np.array(
        [2_500_000, 150_000, 1_100_000, 3_000_000, 800_000, 75_000, 50_000, 270_000]
    )
    cost_in, cost_cached, cost_out = (
        inp * price_in[m],
        cached * price_in[m] // 10,
        out * price_in[m] * 4,
    )
    hit = rng.random(n) < 0.05

    def pick(values: list[str], idx: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(
            pa.array(idx.astype(np.int32)), pa.array(values)
        ).cast(pa.string())

    def const(value: object, typ: pa.DataType) -> pa.Array:
        return pa.array(np.full(n, value)).cast(typ) if value is not None else pa.nulls(n, typ)

    ids = pc.binary_join_element_wise(
        "req_", pc.cast(pa.array(np.arange(first, first + n)), pa.string()), ""
    )
    cols = {
        "request_id": ids,
        "ts": pa.array(
            np.sort(rng.integers(start_us, start_us + span_us, n)), pa.timestamp("us", "UTC")
        ),
        "org": pick([f"org{i}" for i in range(5)], rng.integers(0, 5, n)),
        "project": pick([f"project-{i}" for i in range(20)], rng.integers(0, 20, n)),
        "user": pick([f"user{i}" for i in range(500)], rng.integers(0, 500, n)),
        "task": pick([f"task{i}" for i in range(10)], rng.integers(0, 10, n)),
        "app": const("web", pa.string()),
        "tags": pa.ListArray.from_arrays(
            pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())
        ),
        "provider": pick(PROVIDERS, m),
        "model": pick(MODELS, m),
        "requested_model": pick(MODELS, m),
        "status": pick(["ok", "error"], (rng.random(n) < 0.02).astype(np.int32)),
        "attempt": const(1, pa.int32()),
        "input_tokens": pa.array(inp),
        "cached_input_tokens": pa.array(cached),
        "cache_write_tokens": const(0, pa.int64()),
        "output_tokens": pa.array(out),
        "reasoning_tokens": const(0, pa.int64()),
        "usage_estimated": const(False, pa.bool_()),
        "cost_picousd": pa.array(np.where(hit, 0, cost_in + cost_cached + cost_out)),
        "cost_input_picousd": pa.array(cost_in),
        "cost_cached_input_picousd": pa.array(cost_cached),
        "cost_cache_write_picousd": const(0, pa.int64()),
        "cost_output_picousd": pa.array(cost_out),
        "cost_reasoning_picousd": const(0, pa.int64()),
        "saved_picousd": pa.array(np.where(hit, cost_in + cost_cached + cost_out, 0)),
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


def bench_query(home: Path, rows: int) -> dict[str, float]:
    from core.usage import Reader

    rng = np.random.default_rng(42)
    chunk = 2_000_000
    start = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    span = 90 * 86_400 * 10**6  # a quarter of traffic, time-partitioned across the files
    t0 = time.perf_counter()
    for k, first in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - first)
        part_start = start + span * first // rows
        table = _bench_table(rng, part_start, span * n // rows, n, first)
        write_segment(table, segments_dir(home), f"bench-{k:03d}")
    build_s = time.perf_counter() - t0
    reader = Reader(home)
    assert reader.count() == rows
    reader.spend_by(["model"], "day")  # warm-up: view and Parquet footers
    times, cpu = [], []
    for _ in range(5):
        c0, t0 = time.process_time(), time.perf_counter()
        df = reader.spend_by(["model"], "day")
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    assert int(df["requests"].sum()) == rows
    reader.close()
    query, bare = statistics.median(times), bare_duckdb_ms(home)
    return {
        "query_10m_rows_warm_ms": round(query, 1),
        "query_10m_rows_warm_cpu_ms": round(statistics.median(cpu), 1),
        "duckdb_10m_rows_warm_ms": round(bare, 1),
        "query_10m_vs_duckdb_x": round(query / bare, 2),
        "query_rows": rows,
        "query_build_s": round(build_s, 1),
    }


def bare_duckdb_ms(home: Path) -> float:
    """The Reader's SQL run by bare DuckDB on the same files: median of 5 after a warm-up."""
    import duckdb

    from core.usage import Filters
    from core.usage._query import spend_sql
    from core.usage._reader import _facts_sql

    files = sorted(str(p) for p in segments_dir(home).glob("*.parquet"))
    con = duckdb.connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({files!r})")
    con.execute(_facts_sql([]))
    sql, params = spend_sql(["model"], "day", Filters(), "UTC", "BIGINT")
    con.sql(sql, params=params).df()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        con.sql(sql, params=params).df()
        times.append((time.perf_counter() - t0) * 1e3)
    con.close()
    return statistics.median(times)


def bench_idle(home: Path) -> dict[str, float]:
    from core.usage import Reader

    reader = Reader(home)
    log = UsageLog(home)
    t0 = time.perf_counter()
    log.append(_event(0, clock.now()))
    while not reader.count():
        time.sleep(0.005)
    visible_ms = (time.perf_counter() - t0) * 1e3
    log.close()
    reader.close()
    return {"log_idle_visible_ms": round(visible_ms, 1)}


def run(quick: bool) -> dict[str, float]:
    base = Path(os.environ.get("COSTLINE_HOME", "/tmp")) / "bench-usage"
    out: dict[str, float] = {"usage_loadavg_1m": round(os.getloadavg()[0], 2)}
    out.update(bench_ingest(base / "ingest", 300_000 if quick else 4_000_000))
    out.update(bench_idle(base / "idle"))
    out.update(bench_query(base / "query", 1_000_000 if quick else 10_000_000))
    return out
