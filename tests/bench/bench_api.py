"""REST API benchmarks, over real HTTP to a uvicorn server on loopback.

- api_spend_10m_ms: ``GET /api/v1/spend?group_by=day,model`` over 10M events (1M with
  --quick) covering a quarter, median of 5 after one warm-up. Target <= 700 ms.
  ``api_spend_10m_cpu_ms``: CPU time of this process (server threads and DuckDB included).
- api_usage_page_ms: one 100-row page of ``GET /api/v1/usage`` at cursors taken at 0 %,
  25 %, 50 %, 75 % and 99 % of the log (the worst page's median of 3). Target <= 50 ms.
- The events are those of bench_usage (numpy/pyarrow, 2M-row segments sorted by time).
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.usage import Reader, segments_dir, write_segment
from tests.bench.bench_usage import _bench_table

START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_US = 90 * 86_400 * 10**6
PARAMS = {"start": "2024-12-01", "end": "2025-05-01"}


def build(home: Path, rows: int) -> None:
    rng = np.random.default_rng(42)
    start = int(START.timestamp() * 1e6)
    chunk = 2_000_000
    for k, first in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - first)
        table = _bench_table(rng, start + SPAN_US * first // rows, SPAN_US * n // rows, n, first)
        write_segment(table, segments_dir(home), f"bench-{k:03d}")


def _timed(fn: object, runs: int) -> tuple[float, float]:
    times, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(times), statistics.median(cpu)


def run(quick: bool) -> dict[str, float]:
    from core.api._paging import encode_cursor
    from tests.servers.api import ApiServer

    rows = 1_000_000 if quick else 10_000_000
    home = Path(os.environ.get("COSTLINE_HOME", "/tmp")) / "bench-api"
    build(home, rows)
    with Reader(home) as reader:
        marks = []
        for share in (0.0, 0.25, 0.5, 0.75, 0.99):
            df = reader.sql(
                "SELECT epoch_us(ts) AS us, request_id FROM events"
                " ORDER BY ts DESC, request_id DESC LIMIT 1 OFFSET ?",
                [int(rows * share)],
            )
            marks.append(encode_cursor(int(df["us"].iat[0]), str(df["request_id"].iat[0])))
    with ApiServer(home) as api:
        client = api.client(api.user("bench", "viewer"))

        def spend() -> None:
            r = client.get("/spend", params={**PARAMS, "group_by": "day,model"})
            assert r.status_code == 200 and r.json()["totals"]["requests"] == rows, r.text

        spend()  # warm-up: views and Parquet footers
        spend_ms, spend_cpu = _timed(spend, 5)
        page_ms, page_cpu = 0.0, 0.0
        for cursor in [None, *marks]:
            params = {**PARAMS, "limit": "100", **({"cursor": cursor} if cursor else {})}

            def page(p: dict[str, str] = params) -> None:
                r = client.get("/usage", params=p)
                assert r.status_code == 200 and len(r.json()["data"]) == 100, r.text

            page()
            ms, cpu = _timed(page, 3)
            if ms > page_ms:
                page_ms, page_cpu = ms, cpu
    return {
        "api_spend_10m_ms": round(spend_ms, 1),
        "api_spend_10m_cpu_ms": round(spend_cpu, 1),
        "api_usage_page_ms": round(page_ms, 1),
        "api_usage_page_cpu_ms": round(page_cpu, 1),
    }
