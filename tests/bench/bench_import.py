"""Import, demo and export speed.

import_rows_per_s   import_csv of a 1M-row usage CSV (100k with --quick): parse, check,
                    price every row from the catalog, write the segment
demo_generate_s     generate_demo() of 90 days (~260k events), not written
demo_load_s         load_demo() of 90 days: generate, seed the control plane, write
export_rows_per_s   export() of those demo events as CSV
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "claude-sonnet-4",
    "claude-3-5-haiku",
    "gemini-2.5-flash",
    "deepseek-chat",
    "mistral-small-latest",
    "llama-3.3-70b-versatile",
    "my-finetune",
]


def usage_csv(path: Path, rows: int, seed: int = 1) -> None:
    """A LiteLLM-style spend log: timestamps over 100 days, totals including cached tokens."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2026-08-01T00:00:00", "us").astype(np.int64)
    ts = pa.array(
        np.sort(start + rng.integers(0, 100 * 86_400_000_000, rows)), pa.timestamp("us", tz="UTC")
    )
    prompt = rng.integers(10, 50_000, rows)
    table = pa.table(
        {
            "startTime": pc.strftime(ts, "%Y-%m-%dT%H:%M:%SZ"),
            "model": pa.array(np.array(MODELS)[rng.integers(0, len(MODELS), rows)]),
            "prompt_tokens": prompt,
            "completion_tokens": rng.integers(1, 4_000, rows),
            "cached_tokens": (prompt * rng.random(rows) * 0.5).astype(np.int64),
            "team_id": pa.array(np.array(["acme", "globex", "initech"])[rng.integers(0, 3, rows)]),
            "end_user": pa.array(np.char.add("user", rng.integers(0, 500, rows).astype(str))),
            "project": pa.array(np.array(["web", "batch", "agent"])[rng.integers(0, 3, rows)]),
        }
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def run(quick: bool) -> dict[str, float]:
    from core.demo import generate_demo, load_demo
    from core.export import export
    from core.importer import import_csv, read_preview

    rows = 100_000 if quick else 1_000_000
    out: dict[str, float] = {}
    base = Path(os.environ.get("COSTLINE_HOME") or tempfile.mkdtemp())
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        path = Path(tmp) / "usage.csv"
        usage_csv(path, rows)
        mapping = read_preview(path).mapping
        t0 = time.perf_counter()
        result = import_csv(path, mapping, home=Path(tmp) / "import-home")
        seconds = time.perf_counter() - t0
        assert result.imported == rows, result.message
        out["import_rows_per_s"] = round(rows / seconds)

        t0 = time.perf_counter()
        generate_demo(90, 7)
        out["demo_generate_s"] = round(time.perf_counter() - t0, 3)

        home = Path(tmp) / "demo-home"
        t0 = time.perf_counter()
        summary = load_demo(home, 90, 7)
        out["demo_load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        data = export(home, None, "csv")
        out["export_rows_per_s"] = round(summary.events / (time.perf_counter() - t0))
        assert data.count(b"\n") == summary.events + 1
    return out
