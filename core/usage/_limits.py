"""Bounds on one event's size: a huge prompt, response or metadata is cut, and the event
says so (``truncated`` in ``price_flags``), so one event never makes a journal unreadable.

Only events whose JSON is over ``MAX_EVENT_BYTES`` take this path: the hot path pays a length
check. Text fields are cut to ``MAX_FIELD_CHARS`` characters, then to a quarter of that until
the event fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.usage._schema import COLUMNS

MAX_FIELD_CHARS = 1 << 20  # ~1 MB of text per field
MAX_EVENT_BYTES = 4 << 20  # a larger event's fields are cut further
FLAG_TRUNCATED = "truncated"
_FLAGS = COLUMNS.index("price_flags")
_NOTE = " [truncated by costline: {n} characters]"


def _cut_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + _NOTE.format(n=len(text))


def _cut(value: Any, limit: int) -> tuple[Any, bool]:
    if isinstance(value, str):
        out = _cut_text(value, limit)
        return out, out is not value
    if isinstance(value, list | tuple):
        items = [_cut(v, limit) for v in value[:limit]]
        return [v for v, _ in items], len(value) > limit or any(c for _, c in items)
    if isinstance(value, dict):
        out_d: dict[Any, Any] = {}
        budget, cut = limit, False
        for k, v in value.items():
            v2, c = _cut(v, limit)
            size = len(str(k)) + (len(v2) if isinstance(v2, str) else 16)
            if size > budget:
                cut = True
                break
            out_d[_cut_text(str(k), limit)] = v2
            budget -= size
            cut = cut or c
        return out_d, cut
    return value, False


def shrink(row: Sequence[Any], dumps: Callable[[Any], bytes]) -> tuple[bytes, bool]:
    """The payload of ``row`` (schema order) with its long fields cut so it fits in
    ``MAX_EVENT_BYTES``; the bool says whether anything was cut."""
    limit = MAX_FIELD_CHARS
    while True:
        out, cut = [], False
        for i, value in enumerate(row):
            if i == _FLAGS:
                out.append(value)
                continue
            v, c = _cut(value, limit)
            out.append(v)
            cut = cut or c
        if cut:
            flags = list(out[_FLAGS] or ())
            if FLAG_TRUNCATED not in flags:
                flags.append(FLAG_TRUNCATED)
            out[_FLAGS] = flags
        payload = dumps(out)
        if len(payload) <= MAX_EVENT_BYTES or limit <= 256:
            return payload, cut
        limit //= 4
