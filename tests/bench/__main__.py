"""`make bench`: run every tests/bench/bench_*.py module's run() and print one JSON object.

Each module exposes ``run(quick: bool) -> dict[str, float | int | str]``. ``--only NAME`` runs
the modules whose name contains NAME; ``--quick`` shrinks the data sizes (for smoke tests).
Benchmarks run in a temporary COSTLINE_HOME so nothing of the user's is touched. Each module
runs in a fresh Python process (``--in-process`` to run them all in this one), so no figure
depends on the memory, threads or caches an earlier module left behind.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path


def run_module(mod: str, quick: bool, path: str = "") -> dict[str, object]:
    """One module's figures, measured in this process (``path``: a directory of modules
    other than tests/bench, e.g. a test's temporary one)."""
    if path:
        sys.path.insert(0, path)
    module = importlib.import_module(mod if path else f"tests.bench.{mod}")
    return dict(module.run(quick))


def run_isolated(mod: str, quick: bool, path: str = "") -> dict[str, object]:
    """One module's figures, measured in a fresh interpreter (stderr passes through)."""
    cmd = [sys.executable, "-m", "tests.bench", "--module", mod] + (["--quick"] if quick else [])
    cmd += ["--path", path] if path else []
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mod} exited with {done.returncode}")
    lines = done.stdout.strip().splitlines()  # the figures are the child's last line
    return dict(json.loads(lines[-1])) if lines else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make bench")
    ap.add_argument("--only", default="", help="run modules whose name contains this")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", default="", help="also write the JSON to this file")
    ap.add_argument("--in-process", action="store_true", help="run every module in this process")
    ap.add_argument("--path", default="", help="run the bench_*.py modules of this directory")
    ap.add_argument("--module", default="", help=argparse.SUPPRESS)  # one module, JSON out
    args = ap.parse_args(argv)
    if args.module:  # the child of run_isolated: COSTLINE_HOME is the parent's temp dir
        print(json.dumps(run_module(args.module, args.quick, args.path)))
        return 0
    here = Path(args.path) if args.path else Path(__file__).parent
    results: dict[str, object] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="costline-bench-") as tmp:
        os.environ["COSTLINE_HOME"] = tmp
        for mod in sorted(m.name for m in pkgutil.iter_modules([str(here)])):
            if not mod.startswith("bench_") or args.only not in mod:
                continue
            t0 = time.perf_counter()
            try:
                run = run_module if args.in_process else run_isolated
                results.update(run(mod, args.quick, args.path))
            except Exception:
                failed = True
                traceback.print_exc()
                results[f"{mod}_error"] = traceback.format_exc(limit=1).strip().splitlines()[-1]
            print(f"# {mod}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
