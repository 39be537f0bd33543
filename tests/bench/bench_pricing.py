"""Token counting and pricing speed: the router does both on every request.

cost_calc_us         median per call of catalog.lookup + price() over mixed models/usages
catalog_lookup_us    median per lookup (names, aliases, provider/model forms, tiers, days)
tokens_mb_per_s      count_text throughput on ~1 MB of mixed English and code (o200k)
tokens_cl100k_mb_per_s  the same with cl100k (the estimate used for non-OpenAI models)
count_messages_us    one 3-message chat request (~400 tokens), memo of short texts cleared
count_messages_memo_us  the same request counted again (served from that memo)
encoding_load_s      cold load of o200k_base from the bundled, hash-checked file
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import date

from core import tokens
from core.pricing import load_catalog, price
from core.types import Message, Usage

MODELS = [
    "gpt-4o",
    "openai/gpt-5-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5-20251001",
    "gemini-2.5-pro",
    "o4-mini",
    "groq/llama-3.3-70b-versatile",
    "deepseek-chat",
    "mistral-small-latest",
    "dryrun-large",
]

ENGLISH = (
    "The quarterly report shows that cloud spending grew faster than revenue, mostly because "
    "teams moved batch workloads to larger language models without checking the bill. "
    "Finance asked engineering to route routine summaries to cheaper models and to cache "
    "repeated prompts; the pilot cut costs by {n} percent in {m} weeks. "
)
CODE = (
    "def route(request: ChatRequest, budget: Budget) -> str:\n"
    "    candidates = [m for m in policy.models if window(m) >= request.tokens + {n}]\n"
    "    if budget.remaining_usd < Decimal('{m}.00'):\n"
    "        return min(candidates, key=lambda m: catalog.lookup(m).input)\n"
    "    return candidates[0]  # quality first\n\n"
)


def _corpus(size: int) -> str:
    rng = random.Random(7)
    parts: list[str] = []
    total = 0
    while total < size:
        piece = rng.choice((ENGLISH, CODE)).format(n=rng.randint(1, 999), m=rng.randint(1, 52))
        parts.append(piece)
        total += len(piece)
    return "".join(parts)


def _median_us(fn: object, calls: int, reps: int) -> float:
    assert callable(fn)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def run(quick: bool) -> dict[str, float]:
    catalog = load_catalog()
    rng = random.Random(1)
    n = 2_000 if quick else 20_000
    work = []
    for i in range(n):
        prompt = rng.choice((800, 5_000, 60_000, 250_000))
        cached = rng.randint(0, prompt // 2)
        usage = Usage(prompt - cached, cached, 0, rng.randint(50, 2_000), rng.randint(0, 1_000))
        work.append((MODELS[i % len(MODELS)], usage, i % 7 == 0))
    days = [None, date(2025, 3, 1), date(2025, 10, 1)]

    def costs() -> None:
        for model, usage, batch in work:
            price(usage, catalog.lookup(model, None, usage.prompt_tokens), batch=batch)

    def lookups() -> None:
        for i, (model, usage, _) in enumerate(work):
            catalog.lookup(model, days[i % 3], usage.prompt_tokens)

    reps = 5 if quick else 15
    out = {
        "cost_calc_us": _median_us(costs, n, reps),
        "catalog_lookup_us": _median_us(lookups, n, reps),
    }

    text = _corpus(100_000 if quick else 1_000_000)
    mb = len(text.encode("utf-8")) / 1e6
    for key, model in (("tokens_mb_per_s", "gpt-4o"), ("tokens_cl100k_mb_per_s", "gpt-4")):
        tokens.count_text(model, "warm up")
        secs = []
        for _ in range(3):
            t0 = time.perf_counter()
            tokens.count_text(model, text)
            secs.append(time.perf_counter() - t0)
        out[key] = mb / statistics.median(secs)

    msgs = [
        Message("system", ENGLISH.format(n=5, m=3)),
        Message("user", CODE.format(n=1, m=2) * 3),
        Message("assistant", ENGLISH.format(n=7, m=9) * 2),
    ]
    calls = 200 if quick else 2_000

    def count() -> None:  # cold: the short-text memo emptied before every count
        for _ in range(calls):
            tokens._memo.clear()
            tokens.count_messages("gpt-4o", msgs)

    def count_again() -> None:  # the same prompt counted again (router, then provider)
        for _ in range(calls):
            tokens.count_messages("gpt-4o", msgs)

    out["count_messages_us"] = _median_us(count, calls, reps)
    out["count_messages_memo_us"] = _median_us(count_again, calls, reps)
    t0 = time.perf_counter()
    tokens.load_encoding("o200k_base")
    out["encoding_load_s"] = time.perf_counter() - t0
    return {k: round(v, 3) for k, v in out.items()}
