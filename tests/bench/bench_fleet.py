"""Fleet benchmarks (issue 17), against a real SeaweedFS on loopback.

- bucket_upload_events_per_s: one host's Shipper uploading sealed segments (50k events each,
  as the gateway seals them) from its outbox to the bucket, confirmed; events per second.
- bucket_query_10m_ms: spend by day x model over 10M events in the bucket (5 segments of 2M,
  as compaction leaves them), a Reader on another host with its segment cache warm; median
  of 5, including the bucket listing each query makes.
- overview_render_s_1b_rollups: the Overview (AppTest, first render, caches cleared) over a
  synthetic 1-billion-event 90-day history held only as hourly rollups (raw events pruned);
  median of 3.

Each ``*_cpu_s`` is this process's CPU time over the same span (SeaweedFS's own is not in it).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np

from core.usage import segments_dir, write_segment
from core.usage._rollups import MEASURES, ROLLUP_DIMS, pruned_dir
from tests.bench.bench_console import MODELS, PROVIDERS, SPAN_US, _table, render
from tests.servers.seaweed import SeaweedS3

SEGMENT_ROWS = 50_000


def _env(s3: SeaweedS3, bucket: str) -> None:
    os.environ.update(s3.env(f"{bucket}/usage"))
    os.environ["COSTLINE_EVENTS_COMPACT_S"] = "0"


def bench_upload(s3: SeaweedS3, home: Path, events: int) -> dict[str, float]:
    from core.usage._bucket import BucketConfig, Shipper

    rng = np.random.default_rng(5)
    end_us = int(datetime.now(UTC).timestamp() * 1e6)
    for k in range(events // SEGMENT_ROWS):
        table = _table(rng, SEGMENT_ROWS, k * SEGMENT_ROWS, end_us - 3_600_000_000, 3_600_000_000)
        write_segment(table, segments_dir(home), f"host_1_1_abcd_{k:06d}")
    cfg = BucketConfig.from_env()
    assert cfg is not None
    shipper = Shipper(home, cfg)
    w0, c0 = time.perf_counter(), time.process_time()
    shipped = shipper.ship_once()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    assert shipped == events // SEGMENT_ROWS, shipped
    return {
        "bucket_upload_events_per_s": round(events / wall),
        "bucket_upload_cpu_s": round(cpu, 2),
        "bucket_upload_wall_s": round(wall, 2),
        "bucket_upload_events": events,
    }


def bench_query(s3: SeaweedS3, writer: Path, reader_home: Path, events: int) -> dict[str, float]:
    from core.usage import Reader
    from core.usage._bucket import BucketConfig, upload

    cfg = BucketConfig.from_env()
    assert cfg is not None
    rng = np.random.default_rng(7)
    end_us = int(datetime.now(UTC).timestamp() * 1e6)
    chunk = 2_000_000
    tmp = writer / "q"
    for k, first in enumerate(range(0, events, chunk)):
        n = min(chunk, events - first)
        part = end_us - SPAN_US + SPAN_US * first // events
        path = write_segment(_table(rng, n, first, part, SPAN_US * n // events), tmp, f"q{k:03d}")
        upload(cfg, path, path.name)
        path.unlink()
    with Reader(reader_home) as reader:
        w0 = time.perf_counter()
        assert int(reader.spend_by(["model"], "day")["requests"].sum()) == events  # fills cache
        cold = time.perf_counter() - w0
        walls, cpus, lists = [], [], []
        for _ in range(5):
            w0, c0 = time.perf_counter(), time.process_time()
            reader._mirror.sync(force=True)  # type: ignore[union-attr]  # a fresh listing
            lists.append(time.perf_counter() - w0)
            df = reader.spend_by(["model"], "day")
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            assert int(df["requests"].sum()) == events
    return {
        "bucket_query_10m_ms": round(statistics.median(walls) * 1000, 1),
        "bucket_query_cpu_ms": round(statistics.median(cpus) * 1000, 1),
        "bucket_query_list_ms": round(statistics.median(lists) * 1000, 1),
        "bucket_query_cold_s": round(cold, 2),
        "bucket_query_events": events,
    }


def build_rollups(home: Path, events: int, combos: int = 200) -> int:
    """A pruned-rollup history of ``events`` events over the last 90 days: every hour,
    ``combos`` dimension combinations. Returns the rollup rows written."""
    hours = SPAN_US // 3_600_000_000
    rows = hours * combos
    per_row = events // rows
    end_h = int(datetime.now(UTC).timestamp()) // 3600 * 3600
    start_h = end_h - (hours - 1) * 3600
    models = "[" + ", ".join(f"'{m}'" for m in MODELS) + "]"
    providers = "[" + ", ".join(f"'{p}'" for p in PROVIDERS) + "]"
    dims = {
        "org": "'org' || (c % 5)",
        "project": "'project-' || (c % 20)",
        "user": "'user' || (c % 50)",
        "key": "'key' || (c % 10)",
        "model": f"{models}[(c % 8) + 1]",
        "provider": f"{providers}[(c % 8) + 1]",
        "task": "'task' || (c % 10)",
        "status": "CASE WHEN c % 50 = 0 THEN 'error' ELSE 'ok' END",
        "source": "'bench'",
    }
    values = {m: "0" for m in MEASURES}
    values.update(
        requests=str(per_row),
        input_tokens=f"{per_row} * 900",
        output_tokens=f"{per_row} * 300",
        cost_picousd=f"{per_row} * (1000000 + (c % 8) * 250000)",
        cost_input_picousd=f"{per_row} * 700000",
        latency_ms_sum=f"{per_row} * 420.0",
    )
    cols = ["to_timestamp(h) AS hour"]
    cols += [f'{dims[d]} AS "{d}"' for d in ROLLUP_DIMS]
    cols += [
        f"CAST({values[m]} AS {'DOUBLE' if m == 'latency_ms_sum' else 'BIGINT'}) AS {m}"
        for m in MEASURES
    ]
    cols += ["to_timestamp(h) AS min_ts", "to_timestamp(h + 3599) AS max_ts"]
    out = pruned_dir(home)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    sql = (
        f"SELECT {', '.join(cols)} FROM range({start_h}, {end_h + 1}, 3600) t(h),"
        f" range({combos}) s(c) ORDER BY hour"
    )
    con.execute(f"COPY ({sql}) TO '{out / 'bench-1b.parquet'}' (FORMAT parquet)")
    con.close()
    return rows


def run(quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        try:
            with SeaweedS3(root / "weed") as s3:
                bucket = f"bench-{uuid.uuid4().hex[:8]}"
                s3.create_bucket(bucket)
                _env(s3, bucket)
                upload_events = 200_000 if quick else 2_000_000
                out.update(bench_upload(s3, root / "upload-host", upload_events))
                bucket2 = f"bench-{uuid.uuid4().hex[:8]}"
                s3.create_bucket(bucket2)
                _env(s3, bucket2)
                query_events = 1_000_000 if quick else 10_000_000
                out.update(bench_query(s3, root / "writer", root / "reader-host", query_events))
            for k in [k for k in os.environ if k not in saved]:
                del os.environ[k]
            home = root / "rollups"
            os.environ["COSTLINE_HOME"] = str(home)
            events = 10**8 if quick else 10**9
            out["overview_rollup_rows_1b"] = build_rollups(home, events)
            shown = render(home)[2]  # imports and first-use costs
            assert shown.strip("$0.,") != "", f"the Overview showed no spend: {shown}"
            print(f"# overview over 1B rollup events shows {shown}", file=sys.stderr)
            runs = sorted(render(home)[0] for _ in range(3))
            out["overview_render_s_1b_rollups"] = round(runs[1], 3)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return out
