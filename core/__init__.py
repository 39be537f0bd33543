"""Costline: an LLM cost router. ``from core import Router, ChatRequest, Message``.

Names are loaded lazily, so importing one submodule (``core.tokens``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChatRequest": "core.types",
    "Completion": "core.types",
    "Controls": "core.controls",
    "Cost": "core.types",
    "EmbedRequest": "core.call",
    "Embeddings": "core.call",
    "Message": "core.types",
    "ProviderConfig": "core.settings",
    "Reader": "core.usage",
    "RetryPolicy": "core.retry",
    "Router": "core.router",
    "Settings": "core.settings",
    "StreamChunk": "core.types",
    "Usage": "core.types",
    "UsageLog": "core.usage",
    "load_catalog": "core.pricing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
