"""`make bench`: run every tests/bench/bench_*.py module's run() and print one JSON object.

Each module exposes ``run(quick: bool) -> dict[str, float | int | str]``. ``--only NAME`` runs
the modules whose name contains NAME; ``--quick`` shrinks the data sizes (for smoke tests).
Benchmarks run in a temporary COSTLINE_HOME so nothing of the user's is touched.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import tempfile
import time
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="make bench")
    ap.add_argument("--only", default="", help="run modules whose name contains this")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", default="", help="also write the JSON to this file")
    args = ap.parse_args(argv)
    here = Path(__file__).parent
    results: dict[str, object] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="costline-bench-") as tmp:
        os.environ["COSTLINE_HOME"] = tmp
        for mod in sorted(m.name for m in pkgutil.iter_modules([str(here)])):
            if not mod.startswith("bench_") or args.only not in mod:
                continue
            t0 = time.perf_counter()
            try:
                module = importlib.import_module(f"tests.bench.{mod}")
                results.update(module.run(args.quick))
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
