"""The docs' environment variables and the code's agree, both ways.

Every variable core/ or console/ reads is named in README.md or docs/*.md, and every
``COSTLINE_*`` variable the docs name is read by the code (or, for the test-only ones, by
tests/). A gateway variable read as ``ENV + "NAME"`` / ``_float(env, "NAME", ...)`` counts as
``COSTLINE_GATEWAY_NAME``; the README's table may shorten a row's later names to ``_NAME``.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = r"(?:COSTLINE_[A-Z0-9_]*[A-Z0-9]|REDIS_URL|PROMETHEUS_MULTIPROC_DIR|AWS_[A-Z0-9_]+)"


def _sources(*dirs: str) -> dict[Path, str]:
    return {p: p.read_text() for d in dirs for p in sorted((REPO / d).rglob("*.py"))}


def read_by_code() -> set[str]:
    names: set[str] = set()
    for path, text in _sources("core", "console").items():
        names.update(re.findall(rf"[\"']({NAME})[\"']", text))
        if path.name == "_config.py" and path.parent.name == "gateway":
            for short in re.findall(r"ENV \+ \"([A-Z_]+)\"|_float\(env, \"([A-Z_]+)\"", text):
                names.add("COSTLINE_GATEWAY_" + "".join(short))
    names.discard("COSTLINE_GATEWAY_")  # the prefix itself
    return names


def docs_text() -> str:
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted(REPO.glob("docs/*.md"))])


def documented(name: str, text: str) -> bool:
    if re.search(rf"\b{name}\b", text):
        return True
    # a table row "`COSTLINE_GATEWAY_MAX_BODY_MB`, `_DRAIN_S`" names COSTLINE_GATEWAY_DRAIN_S
    for prefix in ("COSTLINE_GATEWAY", "COSTLINE_EVENTS", "COSTLINE_DRYRUN"):
        if name.startswith(prefix + "_"):
            short = name[len(prefix) :]
            for row in text.splitlines():
                if f"`{prefix}_" in row and f"`{short}" in row:
                    return True
    return False


def test_every_variable_the_code_reads_is_documented() -> None:
    text = docs_text()
    missing = sorted(n for n in read_by_code() if not documented(n, text))
    assert not missing, f"read by core/ or console/ but named in no doc: {missing}"


def test_every_documented_costline_variable_is_read() -> None:
    code = "\n".join(_sources("core", "console", "tests").values())
    gateway = read_by_code()
    named = set(re.findall(rf"\b({NAME})\b", docs_text()))
    unread = sorted(
        n
        for n in named
        if n.startswith("COSTLINE_") and n not in gateway and not re.search(rf"\b{n}\b", code)
    )
    assert not unread, f"documented but read nowhere: {unread}"
