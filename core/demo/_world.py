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
    Project(
        "support-bot", "acme", {"chat": 0.55, "classify": 0.2, "summarize": 0.15, "search": 0.1}
    ),
    Project("docs-search", "acme", {"search": 0.6, "summarize": 0.25, "extract": 0.15}),
    Project("code-review", "acme", {"agent": 0.45, "chat": 0.35, "extract": 0.2}),
    Project(
        "sales-copilot",
        "globex",
        {"chat": 0.45, "summarize": 0.25, "extract": 0.2, "translate": 0.1},
    ),
    Project("localization", "globex", {"translate": 0.8, "classify": 0.2}),
    Project("analytics", "globex", {"extract": 0.4, "classify": 0.3, "summarize": 0.3}),
    Project("tps-reports", "initech", {"summarize": 0.4, "extract": 0.3, "classify": 0.3}),
    Project("ops-agent", "initech", {"agent": 0.7, "search": 0.2, "chat": 0.1}),
)

_NAMES = {
    "acme": (
        "alice",
        "bob",
        "carol",
        "dan",
        "erin",
        "frank",
        "grace",
        "heidi",
        "ivan",
        "judy",
        "mallory",
        "niaj",
        "olivia",
        "peggy",
        "quentin",
        "rupert",
        "sybil",
    ),
    "globex": (
        "trent",
        "uma",
        "victor",
        "wendy",
        "xavier",
        "yara",
        "zoe",
        "arjun",
        "bea",
        "chen",
        "elena",
        "farah",
        "goran",
    ),
    "initech": (
        "dmitri",
        "hana",
        "ines",
        "jonas",
        "kenji",
        "lena",
        "marco",
        "nadia",
        "omar",
        "priya",
    ),
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
    Task(
        "chat",
        {"gpt-4o-mini": 0.55, "gpt-4o": 0.2, "claude-3-5-haiku": 0.15, "gemini-2.5-flash": 0.1},
        1200,
        0.8,
        260,
        0.7,
        "normal",
        0.06,
        0.45,
        0.7,
        0,
    ),
    Task(
        "summarize",
        {"claude-3-5-haiku": 0.4, "gemini-2.5-flash": 0.35, "gpt-4.1-mini": 0.25},
        4500,
        0.7,
        350,
        0.5,
        "normal",
        0.05,
        0.2,
        0.3,
        0,
    ),
    Task(
        "search",
        {"gemini-2.5-flash": 0.6, "gpt-4.1-mini": 0.25, "llama-3.3-70b-versatile": 0.15},
        2500,
        0.6,
        220,
        0.5,
        "high",
        0.12,
        0.3,
        0.1,
        0,
    ),
    Task(
        "translate",
        {"deepseek-chat": 0.5, "mistral-small-latest": 0.3, "gpt-4o-mini": 0.2},
        900,
        0.7,
        900,
        0.7,
        "low",
        0.10,
        0.1,
        0.2,
        0,
    ),
    Task(
        "classify",
        {"llama-3.3-70b-versatile": 0.45, "gpt-4o-mini": 0.35, "mistral-small-latest": 0.2},
        450,
        0.5,
        8,
        0.4,
        "low",
        0.04,
        0.1,
        0,
        0.30,
    ),
    Task(
        "extract",
        {"gpt-4.1-mini": 0.5, "gpt-4o": 0.3, "claude-3-5-haiku": 0.2},
        3000,
        0.6,
        420,
        0.6,
        "high",
        0.02,
        0.35,
        0,
        0,
    ),
    Task(
        "agent",
        {"claude-sonnet-4": 0.55, "gpt-4o": 0.25, "o4-mini": 0.2},
        9000,
        0.9,
        800,
        0.6,
        "high",
        0,
        0.6,
        0.5,
        0.12,
    ),
)
TASK_NAMES = tuple(t.name for t in TASKS)
MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1-mini",
    "o4-mini",
    "claude-sonnet-4",
    "claude-3-5-haiku",
    "gemini-2.5-flash",
    "llama-3.3-70b-versatile",
    "deepseek-chat",
    "mistral-small-latest",
)
REASONING_MODELS = frozenset({"o4-mini"})
LATENCY = {  # model -> (ms before the first token, ms per output token)
    "gpt-4o": (350, 12),
    "gpt-4o-mini": (250, 7),
    "gpt-4.1-mini": (280, 8),
    "o4-mini": (1500, 9),
    "claude-sonnet-4": (600, 18),
    "claude-3-5-haiku": (350, 9),
    "gemini-2.5-flash": (300, 5),
    "llama-3.3-70b-versatile": (120, 2.5),
    "deepseek-chat": (700, 20),
    "mistral-small-latest": (250, 8),
}
ESTIMATING_PROVIDERS = frozenset({"groq", "deepseek", "mistral"})  # streams without usage

# Calls per day at the start of the period (weekday) and growth to its end (x 1.7).
BASE_PER_DAY = 2600
GROWTH = 0.7
WEEKDAY = (1.0, 1.05, 1.05, 1.0, 0.92, 0.42, 0.36)  # Monday first
HOURS = (  # UTC hour profile: Europe's working day, then America's
    0.15,
    0.1,
    0.1,
    0.1,
    0.15,
    0.3,
    0.6,
    1.0,
    1.4,
    1.6,
    1.6,
    1.5,
    1.4,
    1.6,
    1.8,
    1.9,
    1.8,
    1.5,
    1.1,
    0.9,
    0.7,
    0.5,
    0.35,
    0.2,
)
DEGRADE_TO = "gpt-4o-mini"
BUDGET_ORG = "globex"
BUDGET_NAME = f"Demo: {BUDGET_ORG} monthly"
# As the budget guard does: past 100% of the limit non-critical calls degrade; past the cap
# (soft_multiplier x limit) every call is blocked.
SOFT_MULTIPLIER = 1.25
ERRORS = (  # error type, share, HTTP-ish message, latency ms (low, high)
    (
        "RateLimited",
        0.55,
        "429 Too Many Requests: rate limit reached for {model} "
        "(tokens per minute); retry after {retry}s",
        (120, 450),
    ),
    ("ProviderServerError", 0.25, "500 Internal Server Error from {provider}", (800, 3000)),
    ("ProviderTimeout", 0.20, "{provider}: read timeout after 30.0s", (30000, 30050)),
)
