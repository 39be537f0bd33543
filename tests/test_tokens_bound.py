"""core.tokens.count_upper_bound: never below the exact count, for every tokenizer path.

The router decides with this bound whether a prompt needs counting at all (its context window
and price tier), so a bound below the real count would let an oversized prompt through or
price it at the wrong tier. Checked against ``count_messages`` on random text of every Unicode
category, on byte-heavy worst cases and on the bench's realistic prompts.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import tokens
from core.types import Message
from tests.bench._prompts import corpus
from tests.test_tokens import CORPUS

# One model per tokenizer path: o200k (exact), cl100k (exact), cl100k as the estimate of
# a non-OpenAI model, and the name forms _resolve strips (provider prefix, ft:).
MODELS = (
    "gpt-4o-mini",
    "gpt-4",
    "claude-3-5-sonnet",
    "llama-3.1-8b",
    "dryrun-small",
    "openai/gpt-4o",
    "ft:gpt-4o-mini:acme::x1",
)
ROLES = ("system", "user", "assistant", "tool")


def check(messages: list[Message]) -> None:
    for model in MODELS:
        tokens._last = ("", (), 0)  # no reuse of an earlier exact count: the bound itself
        bound = tokens.count_upper_bound(model, messages)
        exact = tokens.count_messages(model, messages).tokens
        assert bound >= exact, (model, messages)
        # the same Message objects just counted: the bound is that exact count
        assert tokens.count_upper_bound(model, messages) == exact


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
message = st.builds(
    Message,
    st.sampled_from(ROLES),
    text,
    st.one_of(
        st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(message, min_size=1, max_size=5))
def test_bound_is_never_below_the_exact_count_on_random_messages(messages: list[Message]) -> None:
    check(messages)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CORPUS), min_size=1, max_size=30), st.integers(0, 2**32))
def test_bound_holds_on_mixed_realistic_text(parts: list[str], seed: int) -> None:
    rng = random.Random(seed)
    joined = "".join(p + rng.choice(("", " ", "\n", "\t", "  ")) for p in parts)
    check([Message("system", parts[0]), Message("user", joined)])


@pytest.mark.parametrize(
    "unit",
    [
        "\x00",  # control bytes: no merges
        "\x00\x01\x7f",
        "😀",  # 4-byte characters that split into several tokens
        "👨‍👩‍👧‍👦",
        "\U000e0041",  # a tag character
        "\u0301",  # a lone combining mark
        "日",
        "€",
        "ɣ",
        "a\u200b",
        "0",  # digits group by 3
        " \n",
    ],
)
@pytest.mark.parametrize("repeat", [1, 2, 7, 300])
def test_bound_holds_on_byte_heavy_text(unit: str, repeat: int) -> None:
    check([Message("user", unit * repeat)])
    rng = random.Random(repeat)
    check([Message("user", "".join(rng.choice((unit, " ", "x", unit + unit)) for _ in range(200)))])


def test_bound_holds_on_the_bench_prompts() -> None:
    for req in corpus(400, seed=5, model="dryrun-small"):
        check(list(req.messages))


def test_bound_of_an_empty_and_of_a_named_message() -> None:
    check([])
    check([Message("user", "")])
    check([Message("user", "hi", name="ann"), Message("tool", "{}", name="lookup_order")])
