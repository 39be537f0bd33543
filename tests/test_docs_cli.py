"""Every `costline` command the README and docs/*.md name exists, with the flags they give it
(a command or flag documented but not there is the first thing an operator types)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
# `costline SUB [SUBSUB] ...` in a code span, or a shell line, up to its end or a comment
USE = re.compile(r"(?:^|[`\s/])costline ([a-z][a-z-]*)([^`\n#]*)")


def _docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(p: argparse.ArgumentParser) -> set[str]:
    """The options of ``p`` and of its own subcommands."""
    out = {o for a in p._actions for o in a.option_strings}
    for child in _subparsers(p).values():
        out |= _flags(child)
    return out


def uses() -> list[tuple[str, str, str]]:
    found = []
    for path in _docs():
        for line in path.read_text().splitlines():
            for m in USE.finditer(line):
                found.append((path.name, m.group(1), m.group(2)))
    return found


def test_every_documented_command_and_flag_exists() -> None:
    commands = _subparsers(build_parser())
    wrong = []
    for name, sub, rest in uses():
        if sub not in commands:
            wrong.append(f"{name}: costline {sub} (no such command)")
            continue
        known = _flags(commands[sub])
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
            if flag not in known and flag != "--help":
                wrong.append(f"{name}: costline {sub} {flag} (no such flag)")
    assert len(uses()) > 40
    assert wrong == [], wrong
