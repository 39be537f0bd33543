"""make bench: each module runs in its own interpreter and the figures come back as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_of_one_module_prints_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--only", "sampling", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert json.loads(done.stdout) == figures
    assert 0 < figures["sampling_saved_pct_periodic"] < 100
    assert "# bench_sampling:" in done.stderr


def test_a_failing_module_is_reported_and_fails_the_run(tmp_path: Path) -> None:
    # the probe lives in a temp dir: a killed run leaves nothing in the source tree
    (tmp_path / "bench_zz_harness_probe.py").write_text(
        "def run(quick):\n    raise ValueError('probe failure')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--path", str(tmp_path), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert not (ROOT / "tests" / "bench" / "bench_zz_harness_probe.py").exists()
    assert done.returncode == 1
    assert "probe failure" in done.stderr
    assert "bench_zz_harness_probe_error" in json.loads(done.stdout)


def test_the_gateway_bench_measures_the_shipped_log_flush_interval() -> None:
    """The test gateways (tests/gateway_support.py) seal the usage journal every 0.2 s so
    events() sees a call at once; the bench starts its gateway with the same helper, so it
    measured ten times the shipped sealing work a request (CPU per request 0.6-1.1 ms higher
    at load 11-13). It must run the gateway at the default interval."""
    from core.settings import Settings
    from tests.bench import bench_gateway

    env = bench_gateway.gateway_env(4000)
    assert float(env["COSTLINE_LOG_FLUSH_S"]) == Settings().log_flush_s
