"""Prompt tokens of the images in a chat request, as the providers bill them.

Images travel as OpenAI-style ``image_url`` content parts in a message's ``extra["content"]``
(``Message.content`` holds the text alone, which ``core.tokens`` counts). Each image costs:

    OpenAI, tile models   ``detail: low``: the base tokens; high (and auto, counted as high):
      (gpt-4o, 4.1, 4.5,  base + per-tile x 512px tiles, after fitting in 2048x2048 and
       o1, o3, gpt-5, ...) scaling the short side down to 768. gpt-4o/4.1/4.5 85 + 170 per
                          tile; gpt-4o-mini 2833 + 5667; o1/o3 75 + 150; gpt-5 70 + 140
    OpenAI, patch models  32px patches (at most 1536) x a multiplier: gpt-4.1-mini and
                          gpt-5-mini 1.62, gpt-4.1-nano and gpt-5-nano 2.46, o4-mini 1.72
    Anthropic (claude-*)  width x height / 750 after fitting the long edge in 1568px, at most
                          1600 (Anthropic scales larger images down to about that)
    any other model       the gpt-4o rule (an estimate, like its text count)

The size is read from a ``data:`` URL's image header (PNG, JPEG, GIF, WebP). An image whose
size is unknown (an https URL, an unreadable header) counts as the provider's documented
maximum - 1445 tokens for gpt-4o at high detail, 1600 for Claude - so a budget reservation
is never short; such a count, like an ``auto`` detail one, is flagged as an estimate.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from core.types import Message

__all__ = ["Image", "image_tokens", "images_of", "rule_of"]

MAX_TILES = 8  # 2048x768 after OpenAI's scaling: 4 x 2 tiles of 512px
MAX_PATCHES = 1536
CLAUDE_MAX = 1600  # Anthropic: images over ~1.15 megapixels are scaled down to ~1600 tokens
CLAUDE_EDGE = 1568
# (bare-name prefix, rule), first match wins: ("tile", base, per tile) or ("patch", x100, 0)
_RULES: tuple[tuple[str, tuple[str, int, int]], ...] = (
    ("gpt-4.1-mini", ("patch", 162, 0)),
    ("gpt-4.1-nano", ("patch", 246, 0)),
    ("gpt-5-mini", ("patch", 162, 0)),
    ("gpt-5-nano", ("patch", 246, 0)),
    ("o4-mini", ("patch", 172, 0)),
    ("codex-mini", ("patch", 172, 0)),
    ("gpt-4o-mini", ("tile", 2833, 5667)),
    ("gpt-5", ("tile", 70, 140)),
    ("o1", ("tile", 75, 150)),
    ("o3", ("tile", 75, 150)),
    ("claude", ("claude", 0, 0)),
)
_DEFAULT = ("tile", 85, 170)  # gpt-4o, gpt-4.1, gpt-4.5, gpt-4-turbo; other models: estimate


@dataclass(frozen=True, slots=True)
class Image:
    """One image part: its size in pixels (0 x 0: unknown) and OpenAI's ``detail``."""

    width: int
    height: int
    detail: str = "auto"


def rule_of(model: str) -> tuple[str, int, int]:
    """The billing rule of ``model``'s images (see the module docstring)."""
    bare = model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")
    for prefix, rule in _RULES:
        if bare.startswith(prefix):
            return rule
    return _DEFAULT


def images_of(messages: Sequence[Message]) -> tuple[Image, ...]:
    """The image parts of ``messages`` (those of a message's ``extra["content"]``)."""
    for m in messages:  # the usual prompt, no message with an extra: nothing built
        if m.extra:
            break
    else:
        return ()
    found: list[Image] = []
    for m in messages:
        extra = m.extra
        if not extra:
            continue
        parts = extra.get("content")
        if not isinstance(parts, list):
            continue
        for p in parts:
            if isinstance(p, dict) and p.get("type") == "image_url":
                found.append(_image(p.get("image_url")))
    return tuple(found)


def _image(spec: object) -> Image:
    url = spec.get("url") if isinstance(spec, dict) else spec
    detail = spec.get("detail") if isinstance(spec, dict) else None
    detail = detail if detail in ("low", "high") else "auto"
    w, h = _size(url) if isinstance(url, str) and url.startswith("data:") else (0, 0)
    return Image(w, h, detail)


def image_tokens(model: str, images: Sequence[Image]) -> tuple[int, bool]:
    """(tokens of ``images`` for ``model``, exact?): not exact when a size is unknown (its
    maximum counted) or a tile model's detail is auto (counted as high). A model counted
    with an estimated tokenizer is flagged by its text count already."""
    kind, a, b = rule_of(model)
    total, exact = 0, True
    for im in images:
        known = im.width > 0 and im.height > 0
        exact = exact and known
        if kind == "claude":
            total += _claude(im.width, im.height) if known else CLAUDE_MAX
        elif kind == "patch":
            patches = _patches(im.width, im.height) if known else MAX_PATCHES
            total += math.ceil(patches * a / 100)
        elif im.detail == "low":
            total += a
        else:
            exact = exact and im.detail == "high"
            total += a + b * (_tiles(im.width, im.height) if known else MAX_TILES)
    return total, exact


def _tiles(w: int, h: int) -> int:
    """512px tiles of a high-detail image after OpenAI's scaling."""
    fw, fh = float(w), float(h)
    if max(fw, fh) > 2048:
        s = 2048 / max(fw, fh)
        fw, fh = fw * s, fh * s
    if min(fw, fh) > 768:
        s = 768 / min(fw, fh)
        fw, fh = fw * s, fh * s
    return math.ceil(round(fw, 6) / 512) * math.ceil(round(fh, 6) / 512)


def _patches(w: int, h: int) -> int:
    return min(math.ceil(w / 32) * math.ceil(h / 32), MAX_PATCHES)


def _claude(w: int, h: int) -> int:
    long = max(w, h)
    if long > CLAUDE_EDGE:
        s = CLAUDE_EDGE / long
        w, h = max(1, round(w * s)), max(1, round(h * s))
    return min(math.ceil(w * h / 750), CLAUDE_MAX)


def _size(url: str) -> tuple[int, int]:
    """(width, height) of a ``data:...;base64,`` image, or (0, 0) when it does not read."""
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        return 0, 0
    try:
        top = base64.b64decode(data[:44])  # 33 bytes: the PNG, GIF and WebP headers
        raw = base64.b64decode(data) if top[:2] == b"\xff\xd8" else top  # JPEG: its SOF
    except (binascii.Error, ValueError):
        return 0, 0
    return _header_size(raw)


def _header_size(raw: bytes) -> tuple[int, int]:
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24:
        w, h = struct.unpack(">II", raw[16:24])
        return w, h
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        w, h = struct.unpack("<HH", raw[6:10])
        return w, h
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP" and len(raw) >= 30:
        kind = raw[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", raw[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(raw[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(raw[24:27], "little") + 1, int.from_bytes(
                raw[27:30], "little"
            ) + 1
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    return 0, 0


def _jpeg_size(raw: bytes) -> tuple[int, int]:
    i = 2
    while i + 9 <= len(raw):
        if raw[i] != 0xFF:
            return 0, 0
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", raw[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", raw[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return 0, 0
