"""The Playground's data: one Router per console process, provider keys from the environment
and st.secrets, the model list, estimates before sending, budget headroom, and the history
of a user's runs.

Secrets (``.streamlit/secrets.toml``, never committed) take the environment's names at the top
level (``OPENAI_API_KEY = "sk-…"``, ``GROQ_BASE_URL = "…"``) and/or one table per provider::

    [providers.llamacpp]
    wire = "openai"
    base_url = "http://127.0.0.1:8080/v1"
    api_key = "…"

Keys are only ever shown masked (core.settings.mask) and never logged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from console import auth, data
from core.budgets import BudgetStatus, matches
from core.control import Actor, control_url
from core.errors import CostlineError, UnpricedModel
from core.pricing import PriceRow, max_cost, price
from core.router import Router
from core.settings import ENV_KEY_NAMES, ProviderConfig, Settings, mask, provider_from_env
from core.tokens import count_messages
from core.types import ChatRequest, Completion, Message, StreamChunk, Usage, pico_to_usd
from core.usage import Filters

LOCAL_MODEL = "local/smollm2-135m-instruct"
DEFAULT_MODEL = "dryrun-small"
MAX_MODELS = 4
TYPICAL_OUTPUT = 256  # assumed output tokens when the log has no ok calls of the model
KEYLESS_WIRES = ("dryrun", "local")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")

# ---- settings and the Router ---------------------------------------------------------------


def secrets() -> Mapping[str, Any]:
    """st.secrets as a plain mapping ({} when there is no secrets file)."""
    try:
        return {k: st.secrets[k] for k in st.secrets}
    except (FileNotFoundError, StreamlitAPIException):
        return {}


def _env_names(sec: Mapping[str, Any]) -> dict[str, str]:
    return {
        k.upper(): str(v)
        for k, v in sec.items()
        if isinstance(v, str) and k.upper().endswith(("_API_KEY", "_BASE_URL"))
    }


def settings() -> Settings:
    """Settings.from_env with the secrets' keys and provider tables layered on top."""
    sec = secrets()
    env = {**os.environ, **_env_names(sec)}
    s = Settings.from_env(env)
    tables = sec.get("providers")
    for name, table in tables.items() if isinstance(tables, Mapping) else ():
        if not isinstance(table, Mapping):
            continue
        base = s.providers.get(name) or provider_from_env(name, env)
        s = s.with_provider(
            ProviderConfig(
                name=name,
                wire=str(table.get("wire", base.wire)),  # type: ignore[arg-type]
                base_url=str(table.get("base_url", base.base_url)).rstrip("/"),
                api_key=str(table["api_key"]) if table.get("api_key") else base.api_key,
            )
        )
    return s


def _fingerprint(s: Settings) -> str:
    """A digest of the provider configs (keys included): a new key builds a new Router."""
    parts = sorted((c.name, c.wire, c.base_url, c.api_key or "") for c in s.providers.values())
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _close(router: Router) -> None:
    router.close()


@st.cache_resource(show_spinner=False, max_entries=4, on_release=_close)
def _router(home: str, control: str, fingerprint: str, _settings: Settings) -> Router:
    return Router(_settings)  # keyed on home, control-plane URL and providers; not on _settings


def router() -> Router:
    """The console's Router (one per process, per COSTLINE_HOME and provider configuration):
    controls on, so budgets, cache, policies and price overrides apply as in any app."""
    s = settings()
    return _router(str(s.home), control_url(), _fingerprint(s), s)


def provider_problem(s: Settings, provider: str) -> str:
    """Why calls to ``provider`` cannot work as configured ("" when they can)."""
    config = s.providers.get(provider)
    if config is None:
        return f"provider {provider!r} is not configured"
    if config.wire == "local" and importlib.util.find_spec("llama_cpp") is None:
        return "the local model needs llama-cpp-python (pip install 'costline[local]')"
    if config.wire in KEYLESS_WIRES or config.api_key:
        return ""
    if urlparse(config.base_url).hostname in LOCAL_HOSTS:
        return ""  # a self-hosted server (llama.cpp, vLLM, Ollama) needs no key
    env = ENV_KEY_NAMES.get(provider, provider.upper())
    return f"no API key for {provider} (set {env}_API_KEY or add it to secrets.toml)"


def providers_frame(s: Settings) -> pd.DataFrame:
    sec, table = _env_names(secrets()), secrets().get("providers") or {}
    rows = []
    for name, c in sorted(s.providers.items()):
        env = ENV_KEY_NAMES.get(name, name.upper()) + "_API_KEY"
        where = "secrets" if env in sec or name in table else "environment" if c.api_key else ""
        rows.append(
            {
                "provider": name,
                "wire": c.wire,
                "base url": c.base_url,
                "API key": mask(c.api_key),
                "key from": where,
                "status": provider_problem(s, name) or "ready",
            }
        )
    return pd.DataFrame(rows)


# ---- models and estimates ------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A model as the Router will call it: requested name, catalog name, provider, rates."""

    name: str
    model: str
    provider: str
    problem: str = ""  # why the provider cannot be called ("" when it can)


def model_names(r: Router) -> list[str]:
    """Catalog models (local ones as 'local/<name>'), priced overrides included."""
    cat = r.catalog
    return sorted({f"local/{m}" if cat.provider_of(m) == "local" else m for m in cat.models()})


def resolve(r: Router, name: str) -> Target:
    """Like the Router: an explicit 'provider/' prefix names the provider unless the whole
    name is a catalog model. Unknown names raise UnpricedModel with what to do."""
    name = name.strip()
    cat = r.catalog
    if not name or not cat.has(name):
        raise UnpricedModel(
            f"unknown model {name!r}: it is not in the price catalog (an admin"
            " can price it with an override on the Pricing page)",
            model=name,
        )
    head, sep, _ = name.partition("/")
    exact = cat.canonical(name).lower() == name.lower()
    provider = head if sep and head in r.settings.providers and not exact else cat.provider_of(name)
    return Target(name, cat.canonical(name), provider, provider_problem(r.settings, provider))


@dataclass(frozen=True)
class Estimate:
    """Before sending, in picodollars: the Router's reservation (``max_cost``: the prompt at
    the input rate plus max_tokens at the output rate) and the cost at a typical output."""

    target: Target
    prompt_tokens: int
    tokens_estimated: bool
    max_tokens: int
    max_cost: int
    typical_output: int
    typical_cost: int
    typical_from_log: bool


def estimate(
    r: Router,
    target: Target,
    messages: Sequence[Message],
    max_tokens: int,
    typical: Mapping[str, int],
) -> Estimate:
    count = count_messages(target.model, list(messages))
    row: PriceRow = r.catalog.lookup(target.model, prompt_tokens=count.tokens)
    seen = typical.get(target.model)
    out = min(seen if seen is not None else TYPICAL_OUTPUT, max_tokens)
    typical_cost = price(Usage(input_tokens=count.tokens, output_tokens=out), row).total
    return Estimate(
        target,
        count.tokens,
        count.estimated,
        max_tokens,
        max_cost(row, count.tokens, max_tokens),
        out,
        typical_cost,
        seen is not None,
    )


TYPICAL_SQL = (
    "SELECT model, CAST(median(output_tokens) AS BIGINT) AS typical, count(*) AS calls"
    " FROM events WHERE status = 'ok' AND NOT cache_hit AND ai_called AND ts >= ?"
    " GROUP BY model HAVING count(*) >= 3"
)


@data.cached
def typical_outputs(home: str, version: str, since: datetime) -> dict[str, int]:
    """Median output tokens per model over recent ok calls (needs 3+ calls)."""
    df = data.reader().sql(TYPICAL_SQL, [since])
    return {str(m): int(t) for m, t in zip(df["model"], df["typical"], strict=True)}


def typical_since() -> datetime:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=30)


def headroom(r: Router, req: ChatRequest, target: Target) -> list[BudgetStatus]:
    """Every enabled budget this call would be charged to, in its current window (the live
    counters this console's Router sees: shared across routers when REDIS_URL is set)."""
    ctl = r.controls
    if ctl is None:
        return []
    snap = ctl.snapshot()
    hits = [
        b
        for b in snap.active_budgets()
        if matches(b, req, target.model, target.provider, ctl.guard.canonical)
    ]
    return ctl.guard.status(hits) if hits else []


def fmt_usd(pico: int | None) -> str:
    """Exact dollars, at least cents: $0.000012345, $1.50."""
    if pico is None:
        return "–"
    d = pico_to_usd(int(pico))
    if d == d.quantize(Decimal("0.01")):
        return f"${d:,.2f}"
    return f"${d.normalize():,f}"


# ---- running -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """One model's outcome, as the page shows it (money in picodollars)."""

    requested: str
    request_id: str
    model: str = ""
    provider: str = ""
    text: str = ""
    error: str = ""
    cost: int = 0
    unpriced: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cache_hit: bool = False
    route_reason: str = ""


def result_of(req: ChatRequest, outcome: Completion | Exception) -> RunResult:
    if not isinstance(outcome, Completion):
        return RunResult(str(req.model), req.request_id, error=str(outcome))
    u = outcome.usage
    return RunResult(
        str(req.model),
        outcome.request_id,
        outcome.model,
        outcome.provider,
        outcome.text,
        cost=outcome.cost.total,
        unpriced=outcome.cost.unpriced,
        input_tokens=u.prompt_tokens,
        output_tokens=u.completion_tokens,
        tokens_estimated=u.estimated,
        latency_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        cache_hit=outcome.cache_hit,
        route_reason=outcome.route_reason,
    )


def run_many(
    r: Router, reqs: Sequence[ChatRequest], actor: Actor
) -> list[Completion | CostlineError]:
    """Send the requests side by side, as ``actor`` (an engineer or admin, checked here
    against the users table: hiding the page is not the check)."""
    auth.plane().authorize(actor, "playground")
    return r.batch(reqs, concurrency=len(reqs))


def stream_text(
    r: Router, req: ChatRequest, sink: dict[str, Completion], actor: Actor
) -> Iterator[str]:
    """The answer's text for st.write_stream; the final Completion lands in sink['done'].
    ``actor`` is checked as in ``run_many`` before anything is sent."""
    auth.plane().authorize(actor, "playground")
    chunk: StreamChunk
    for chunk in r.stream(req):
        if chunk.completion is not None:
            sink["done"] = chunk.completion
        if chunk.text:
            yield chunk.text


# ---- history -------------------------------------------------------------------------------

HISTORY_COLUMNS = [
    "ts",
    "request_id",
    "model",
    "requested_model",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_picousd",
    "latency_ms",
    "cache_hit",
    "error_message",
]
_history_lock = threading.Lock()


@dataclass
class Inputs:
    """What the form held; stored per run so a run can be loaded back into the form."""

    system: str = ""
    turns: list[tuple[str, str]] = field(default_factory=list)  # prior (role, content)
    prompt: str = ""
    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    temperature: float = 0.7
    max_tokens: int = 256
    org: str = ""
    project: str = ""
    task: str = ""
    cache: bool = True

    def messages(self) -> list[Message]:
        msgs = [Message("system", self.system)] if self.system.strip() else []
        msgs += [Message(role, text) for role, text in self.turns]  # type: ignore[arg-type]
        return [*msgs, Message("user", self.prompt)]

    def problems(self) -> list[str]:
        out = []
        if not self.prompt.strip():
            out.append("The prompt is empty: write a user message.")
        out += [
            f"Prior turn {i + 1} ({role}) is empty."
            for i, (role, text) in enumerate(self.turns)
            if not text.strip()
        ]
        if self.max_tokens < 1:
            out.append(f"Max tokens must be at least 1 (got {self.max_tokens}).")
        if not 0.0 <= self.temperature <= 2.0:
            out.append(f"Temperature must be between 0 and 2 (got {self.temperature}).")
        if not self.models:
            out.append("Pick at least one model.")
        elif len(self.models) > MAX_MODELS:
            out.append(f"At most {MAX_MODELS} models at once (got {len(self.models)}).")
        return out

    def request(self, model: str, user: str) -> ChatRequest:
        return ChatRequest(
            messages=self.messages(),
            model=model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            org=self.org.strip() or None,
            project=self.project.strip() or None,
            user=user,
            task=self.task.strip() or None,
            cache=self.cache,
            source="playground",
        )


def _runs_file() -> Path:
    return Path(data.home()) / "playground" / "runs.jsonl"


def remember(user: str, request_ids: Sequence[str], inputs: Inputs) -> None:
    """Keep a run's inputs (prompts stay in the console's home, not in the shared usage log)."""
    path = _runs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(
        json.dumps({"request_id": rid, "user": user, "inputs": asdict(inputs)}) + "\n"
        for rid in request_ids
    )
    with _history_lock, path.open("a", encoding="utf-8") as f:
        f.write(lines)


def remembered(user: str) -> dict[str, Inputs]:
    path = _runs_file()
    if not path.exists():
        return {}
    out: dict[str, Inputs] = {}
    with _history_lock:
        text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        try:
            rec = json.loads(line)
            if rec.get("user") == user:
                raw = dict(rec["inputs"])
                raw["turns"] = [tuple(t) for t in raw.get("turns", [])]
                out[str(rec["request_id"])] = Inputs(**raw)
        except (ValueError, TypeError, KeyError):
            continue  # a torn or foreign line: skip it
    return out


@data.cached
def history(home: str, version: str, user: str, limit: int = 25) -> pd.DataFrame:
    """This user's playground calls, newest first (from the usage log)."""
    return data.reader().events(
        Filters(source="playground", user=user), HISTORY_COLUMNS, limit=limit
    )
