"""docs/api.md's Resources table lists every operation the API serves, and serves every one
it lists (method and path, as ``core.api.app.operations()`` declares them)."""

from __future__ import annotations

import re
from pathlib import Path

from core.api.app import operations

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
METHODS = "GET|POST|PUT|PATCH|DELETE"


def documented() -> set[tuple[str, str]]:
    text = DOC.read_text().split("## Resources", 1)[1].split("\n## ", 1)[0]
    out: set[tuple[str, str]] = set()
    for methods, path in re.findall(rf"`((?:{METHODS})(?:/(?:{METHODS}))*) (/[^`\[\s]*)", text):
        out.update((m, path) for m in methods.split("/"))
    return out


def test_api_md_lists_exactly_the_served_operations() -> None:
    served = {(op.method, op.path) for op in operations()}
    docs = documented()
    assert sorted(served - docs) == [], "served but not in docs/api.md"
    assert sorted(docs - served) == [], "in docs/api.md but not served"
