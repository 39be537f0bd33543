"""A corpus of distinct, realistic chat prompts of mixed length for the router benches.

Seeded, so a run is repeatable; every prompt carries its own ticket number, so no two are
equal (no token-count memo or cache can answer one from another). Lengths are mixed the way
application traffic is: most prompts a few sentences, some a page, a few a long document;
one in five is a follow-up turn of a conversation.
"""

from __future__ import annotations

import random

from core.types import ChatRequest, Message

SYSTEMS = (
    "You are a terse assistant for a finance team. Answer in one paragraph.",
    "You classify support tickets into billing, outage, account or other. Reply with the label.",
    "You are a careful analyst. Cite the numbers you use and say when data is missing.",
    "Summarise the user's text for an executive audience in at most five bullet points.",
    "You extract JSON with the fields customer, amount_usd and due_date from invoices.",
    "You are a coding assistant. Prefer short, idiomatic Python with type hints.",
    "Translate the user's message into plain English, keeping every figure unchanged.",
    "Vous êtes un assistant qui répond en français, brièvement et poliment.",
)
SUBJECTS = (
    "our cloud bill",
    "the March invoice",
    "token spend on the summariser",
    "the EU region",
    "customer Globex",
    "the nightly batch job",
    "the embeddings index",
    "latency on checkout",
    "the marketing agent",
    "prompt caching",
    "the Q3 forecast",
    "user ann@acme.example",
)
VERBS = (
    "rose",
    "fell",
    "stayed flat",
    "doubled",
    "spiked overnight",
    "drifted up",
    "was misreported",
    "crossed its budget",
    "recovered",
)
TAILS = (
    "after the model switch",
    "because retries were not capped",
    "since the cache TTL changed",
    "compared with last week",
    "in the two busiest hours",
    "once the new agent shipped",
    "for requests over 8k tokens",
    "while the provider returned 429s",
    "without any code change",
)
EXTRA = (
    "Please explain what could cause this and what we should check first.",
    "The numbers below come from the usage export; some rows may be duplicated.",
    "Keep in mind that cached input is priced at a tenth of the normal rate.",
    "写一段简短的总结，并列出三个可能的原因。",
    "Ignore rows where the status is 'skipped' or 'blocked'.",
    "def total(rows): return sum(r['cost_usd'] for r in rows if r['status'] == 'ok')",
)


def _sentence(rng: random.Random) -> str:
    pct = rng.randint(1, 400)
    return (
        f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} by {pct}% "
        f"{rng.choice(TAILS)}. {rng.choice(EXTRA) if rng.random() < 0.3 else ''}"
    ).strip()


def _text(rng: random.Random, ticket: int) -> str:
    r = rng.random()
    n = rng.randint(1, 3) if r < 0.6 else rng.randint(5, 25) if r < 0.9 else rng.randint(60, 250)
    body = " ".join(_sentence(rng) for _ in range(n))
    return f"Ticket {ticket}: {body}"


def corpus(n: int, seed: int, **fields: object) -> list[ChatRequest]:
    """``n`` distinct requests; ``fields`` (model, task, org, ...) go on every request."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ticket = seed * 1_000_000 + i
        messages = [Message("system", rng.choice(SYSTEMS))]
        if rng.random() < 0.2:  # a follow-up turn
            messages.append(Message("user", _text(rng, ticket)))
            messages.append(Message("assistant", " ".join(_sentence(rng) for _ in range(2))))
        messages.append(Message("user", _text(rng, ticket)))
        out.append(ChatRequest(messages=messages, max_tokens=rng.choice((64, 256, 1024)), **fields))  # type: ignore[arg-type]
    return out


def quantile(sorted_us: list[float], q: float) -> float:
    return round(sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * q))], 1)
