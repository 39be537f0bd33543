"""The `costline` command."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "console" / "app.py"


def cmd_console(args: argparse.Namespace) -> int:
    """Start the Streamlit console; Streamlit's own STREAMLIT_* environment settings win."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP)]
    return subprocess.call(cmd, env=os.environ.copy())


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="costline", description="LLM cost router and spend console")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("console", help="start the Streamlit console")
    p.set_defaults(func=cmd_console)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
