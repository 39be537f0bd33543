"""core.tokens' counting backend: bpe-openai counts exactly what tiktoken counts.

Counts come from the ``bpe-openai`` package (a declared, pinned dependency) and token ids from
tiktoken, so the two must agree on every text: compared here on a seeded fuzz corpus of both
encodings (the bench's prompts; random Unicode of every kind - CJK, emoji sequences, combining
marks, titlecase and modifier letters, every whitespace, digits, apostrophe contractions in
both cases, special-token strings as plain text, control characters, any code point; long
runs of one character; long texts) and on hypothesis' random text. Without the package, or
when its ids for the probe text are not tiktoken's, counts fall back to tiktoken.
"""

from __future__ import annotations

import logging
import platform
import random
import socket
import sys
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import tokens
from tests.bench._prompts import corpus
from tests.test_tokens import CORPUS

ENCODINGS = ("cl100k_base", "o200k_base")


def _chars(*spans: tuple[int, int]) -> list[str]:
    return [chr(c) for a, z in spans for c in range(a, z + 1)]


POOLS = (
    _chars((0x41, 0x5A), (0x61, 0x7A)),
    list("0123456789²³¼½ⅠⅫ") + _chars((0x660, 0x669), (0x966, 0x96F), (0xFF10, 0xFF19)),
    list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~’‘“”—–…«»¿¡·•€£¥§©®™°±×÷"),
    list(" \t\n\r\x0b\x0c\u00a0\u1680\u2000\u2003\u2009\u2028\u2029\u202f\u3000\u0085\u200b\ufeff"),
    _chars((0x4E00, 0x4FFF), (0x3040, 0x30FF), (0xAC00, 0xAD00)),
    _chars((0x1F300, 0x1F64F), (0x1F900, 0x1F9FF)) + ["\u200d", "\ufe0f", "\U0001f3fb", "❤"],
    _chars((0xC0, 0x24F), (0x1E00, 0x1EFF), (0x2B0, 0x2FF)) + list("ǅǈǋǲ"),
    _chars((0x300, 0x36F), (0x900, 0x903), (0x93A, 0x94F), (0x64B, 0x65F)),
    _chars((0x391, 0x3C9), (0x400, 0x44F), (0x5D0, 0x5EA), (0x620, 0x64A), (0xE01, 0xE3A)),
    [chr(c) for c in range(32)] + ["\x7f", "\x80", "\x9f"],
)
SPECIALS = [*tokens._SPECIAL["cl100k_base"], "<|im_start|>", "<|endoftext|", "|endoftext|>"]
CONTRACTIONS = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'m", "'ll", "'LL", "'d", "’s"]
WORDS = ["hello", "World", "HELLO", "CamelCase", "snake_case", "I", "Über", "naïve", "straße"]
WORDS += ["İstanbul", "ΣΊΣΥΦΟΣ", "ǅemal", "ﬁle", "3.14159", "1,000,000", "http://a.b/c?d=e"]


def _piece(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        pool = rng.choice(POOLS)
        return "".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
    if r < 0.45:
        return rng.choice(WORDS)
    if r < 0.55:
        return rng.choice(CONTRACTIONS)
    if r < 0.63:
        return rng.choice(POOLS[3]) * rng.randint(1, 12)  # whitespace runs
    if r < 0.68:
        return rng.choice(SPECIALS)
    if r < 0.75:  # any code point but a surrogate
        return chr(rng.randrange(0xD800)) + chr(rng.randrange(0xE000, 0x110000))
    if r < 0.80:
        return str(rng.randrange(10 ** rng.randint(1, 15)))
    if r < 0.88:
        return rng.choice(POOLS[2]) * rng.randint(1, 6) + rng.choice(["\n", "\r\n", "/", ""])
    return " " + rng.choice(rng.choice(POOLS))


def fuzz_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = [m.content for r in corpus(n // 10, seed=seed, model="x") for m in r.messages]
    for _ in range(n):
        if rng.random() < 0.02:  # a long run of one thing
            unit = rng.choice(["A", " ", "\n", "0", "!", "中", "😀", "\t", " a", "'s", ".\n"])
            texts.append(unit * rng.randint(1, 3000))
            continue
        text = "".join(_piece(rng) for _ in range(rng.choice([1, 1, 2, 3, 5, 8, 13, 30, 80])))
        if rng.random() < 0.1:
            text = unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKC", "NFKD"]), text)
        texts.append(text)
    texts += ["".join(_piece(rng) for _ in range(rng.randint(300, 1500))) for _ in range(8)]
    return [*texts, *CORPUS, *SPECIALS, "".join(SPECIALS), tokens.PROBE]


# (sys.platform, platform.machine()) where pyproject.toml installs bpe-openai (it has wheels)
WHEELS = {("linux", "x86_64"), ("linux", "aarch64"), ("darwin", "arm64"), ("win32", "AMD64")}


def _bpe(name: str) -> Callable[[str], int]:
    if (sys.platform, platform.machine()) not in WHEELS:
        pytest.skip("no bpe-openai wheel for this platform: counts come from tiktoken")
    count = tokens._bpe_counter(name)
    assert count is not None, "bpe-openai is a dependency: installed and passing its probe"
    return count


@pytest.mark.parametrize("name", ENCODINGS)
def test_the_counter_is_bpe_openais(name: str) -> None:
    _bpe(name)  # installed and passing its probe
    count = tokens.counter(name)
    assert getattr(count, "__qualname__", "") == "PyTokenizer.count", count
    assert count is tokens.counter(name)  # one per process


@pytest.mark.parametrize("name", ENCODINGS)
def test_probe_digest_is_tiktokens(name: str) -> None:
    ids = tokens.get_encoding(name).encode_ordinary(tokens.PROBE)
    assert tokens._probe_digest(ids) == tokens.PROBE_IDS_SHA256[name]
    assert len(set(ids)) > 100  # the probe touches many ranks


@pytest.mark.parametrize("name", ENCODINGS)
def test_counts_match_tiktoken_on_a_fuzz_corpus(name: str) -> None:
    count, encode = _bpe(name), tokens.get_encoding(name).encode_ordinary
    texts = fuzz_corpus(6000, seed=ENCODINGS.index(name) + 1)
    assert sum(map(len, texts)) > 1_000_000
    wrong = [t for t in texts if count(t) != len(encode(t))]
    assert not wrong, [t[:80] for t in wrong[:5]]


@pytest.mark.parametrize("name", ENCODINGS)
def test_counts_match_tiktoken_for_every_code_point(name: str) -> None:
    """Each code point (but surrogates) between a letter, punctuation, a contraction, a digit
    and a newline: the pre-tokenizer's Unicode classes are the backend's own tables."""
    count, encode = _bpe(name), tokens.get_encoding(name).encode_ordinary
    wrong = []
    for start in range(0, 0x110000, 4096):
        cps = [chr(c) for c in range(start, start + 4096) if not 0xD800 <= c <= 0xDFFF]
        text = "".join(f"{c}:A{c}'s 1{c}\n" for c in cps)
        if count(text) != len(encode(text)):
            wrong.append(hex(start))
    assert not wrong


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_counts_match_tiktoken_on_random_text(text: str) -> None:
    for name in ENCODINGS:
        assert _bpe(name)(text) == len(tokens.get_encoding(name).encode_ordinary(text))


def test_loading_the_backend_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access while loading the counting backend")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert _bpe("o200k_base")("hello world") == 2


class _Tokenizer:
    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def encode(self, text: str) -> list[int]:
        return self.ids

    def count(self, text: str) -> int:
        return 1


class _Module:
    def __init__(self, ids: list[int] | None) -> None:
        self.ids = ids

    def tokenizer_for_encoding(self, name: str) -> _Tokenizer:
        if self.ids is None:
            raise RuntimeError("broken build")
        return _Tokenizer(self.ids)


@pytest.mark.parametrize(
    "module",
    [None, _Module(None), _Module([1, 2, 3])],
    ids=["not installed", "broken", "other tables"],
)
def test_counts_fall_back_to_tiktoken(
    module: _Module | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tokens, "_bpe_openai", lambda: module)
    with caplog.at_level(logging.WARNING, logger="core.tokens"):
        for name in ENCODINGS:
            assert tokens._bpe_counter(name) is None
            count = tokens._load_counter(name)
            for text in CORPUS:
                assert count(text) == len(tokens.get_encoding(name).encode_ordinary(text))
    assert bool(caplog.records) is (module is not None)  # a package that is there but unfit


def test_a_backend_with_tiktokens_ids_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = tokens.get_encoding("o200k_base").encode_ordinary(tokens.PROBE)
    monkeypatch.setattr(tokens, "_bpe_openai", lambda: _Module(ids))
    count = tokens._bpe_counter("o200k_base")
    assert count is not None and count("anything") == 1  # the fake's own count
