"""The demo's fictional company: orgs, projects, users, tasks and the models each task uses.

Everything here is plain data; ``_generate.py`` turns it into events.
"""

from __future__ import annotations

from dataclasses import dataclass

ORGS: dict[str, float] = {"acme": 0.48, "globex": 0.32, "initech": 0.20}  # share of traffic


@dataclass(frozen=True)
class Project:
    name: str
    org: str
    tasks: dict[str, float]  # task -> share of the project's calls


PROJECTS: tuple[Project, ...] = (
    Project("support-bot", "acme", {"chat": .55, "classify": .2, "summarize": .15, "search": .1}),
    Project("docs-search", "acme", {"search": .6, "summarize": .25, "extract": .15}),
    Project("code-review", "acme", {"agent": .45, "chat": .35, "extract": .2}),
    Project("sales-copilot", "globex", {"chat": .45, "summarize": .25, "extract": .2,
                                        "translate": .1}),
    Project("localization", "globex", {"translate": .8, "classify": .2}),
    Project("analytics", "globex", {"extract": .4, "classify": .3, "summarize": .3}),
    Project("tps-reports", "initech", {"summarize": .4, "extract": .3, "classify": .3}),
    Project("ops-agent", "initech", {"agent": .7, "search": .2, "chat": .1}),
)

_NAMES = {
    "acme": ("alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi", "ivan",
             "judy", "mallory", "niaj", "olivia", "peggy", "quentin", "rupert", "sybil"),
    "globex": ("trent", "uma", "victor", "wendy", "xavier", "yara", "zoe", "arjun", "bea",
               "chen", "elena", "farah", "goran"),
    "initech": ("dmitri", "hana", "ines", "jonas", "kenji", "lena", "marco", "nadia", "omar",
                "priya"),
}
DOMAINS = {"acme": "acme.com", "globex": "globex.com", "initech": "initech.com"}
USERS: tuple[tuple[str, str], ...] = tuple(  # (user, org)
    (f"{name}@{DOMAINS[org]}", org) for org, names in _NAMES.items() for name in names
)
INCIDENT_USER = "dmitri@initech.com"  # runs the agent that loops
INCIDENT_MODEL = "claude-sonnet-4"
INCIDENT_PROJECT = "ops-agent"


@dataclass(frozen=True)
class Task:
    name: str
    models: dict[str, float]  # model -> share; the first is the routing policy's primary
    prompt: int  # median prompt tokens
    prompt_sigma: float
    output: int  # median output tokens
    output_sigma: float
    criticality: str
    cache_hit: float  # share served from the response cache
    prompt_cache: float  # share of calls reading a cached prompt prefix
    stream: float  # share of streamed calls
    skipped: float  # share skipped by a sampling strategy


TASKS: tuple[Task, ...] = (
    Task("chat", {"gpt-4o-mini": .55, "gpt-4o": .2, "claude-3-5-haiku": .15,
                  "gemini-2.5-flash": .1}, 1200, .8, 260, .7, "normal", .06, .45, .7, 0),
    Task("summarize", {"claude-3-5-haiku": .4, "gemini-2.5-flash": .35, "gpt-4.1-mini": .25},
         4500, .7, 350, .5, "normal", .05, .2, .3, 0),
    Task("search", {"gemini-2.5-flash": .6, "gpt-4.1-mini": .25, "llama-3.3-70b-versatile": .15},
         2500, .6, 220, .5, "high", .12, .3, .1, 0),
    Task("translate", {"deepseek-chat": .5, "mistral-small-latest": .3, "gpt-4o-mini": .2},
         900, .7, 900, .7, "low", .10, .1, .2, 0),
    Task("classify", {"llama-3.3-70b-versatile": .45, "gpt-4o-mini": .35,
                      "mistral-small-latest": .2}, 450, .5, 8, .4, "low", .04, .1, 0, .30),
    Task("extract", {"gpt-4.1-mini": .5, "gpt-4o": .3, "claude-3-5-haiku": .2},
         3000, .6, 420, .6, "high", .02, .35, 0, 0),
    Task("agent", {"claude-sonnet-4": .55, "gpt-4o": .25, "o4-mini": .2},
         9000, .9, 800, .6, "high", 0, .6, .5, .12),
)
TASK_NAMES = tuple(t.name for t in TASKS)
MODELS: tuple[str, ...] = (
    "gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "o4-mini", "claude-sonnet-4", "claude-3-5-haiku",
    "gemini-2.5-flash", "llama-3.3-70b-versatile", "deepseek-chat", "mistral-small-latest",
)
REASONING_MODELS = frozenset({"o4-mini"})
LATENCY = {  # model -> (ms before the first token, ms per output token)
    "gpt-4o": (350, 12), "gpt-4o-mini": (250, 7), "gpt-4.1-mini": (280, 8),
    "o4-mini": (1500, 9), "claude-sonnet-4": (600, 18), "claude-3-5-haiku": (350, 9),
    "gemini-2.5-flash": (300, 5), "llama-3.3-70b-versatile": (120, 2.5),
    "deepseek-chat": (700, 20), "mistral-small-latest": (250, 8),
}
ESTIMATING_PROVIDERS = frozenset({"groq", "deepseek", "mistral"})  # streams without usage

# Calls per day at the start of the period (weekday) and growth to its end (x 1.7).
BASE_PER_DAY = 2600
GROWTH = 0.7
WEEKDAY = (1.0, 1.05, 1.05, 1.0, 0.92, 0.42, 0.36)  # Monday first
HOURS = (  # UTC hour profile: Europe's working day, then America's
    .15, .1, .1, .1, .15, .3, .6, 1.0, 1.4, 1.6, 1.6, 1.5, 1.4, 1.6, 1.8, 1.9, 1.8, 1.5,
    1.1, .9, .7, .5, .35, .2,
)
DEGRADE_TO = "gpt-4o-mini"
BUDGET_ORG = "globex"
BUDGET_NAME = f"Demo: {BUDGET_ORG} monthly"
# As the budget guard does: past 100% of the limit non-critical calls degrade; past the cap
# (soft_multiplier x limit) every call is blocked.
SOFT_MULTIPLIER = 1.25
ERRORS = (  # error type, share, HTTP-ish message, latency ms (low, high)
    ("RateLimited", .55, "429 Too Many Requests: rate limit reached for {model} "
                         "(tokens per minute); retry after {retry}s", (120, 450)),
    ("ProviderServerError", .25, "500 Internal Server Error from {provider}", (800, 3000)),
    ("ProviderTimeout", .20, "{provider}: read timeout after 30.0s", (30000, 30050)),
)
