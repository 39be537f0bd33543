"""The Playground's reads: one Router per console process, provider keys from the environment
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
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from console import auth
from console.inputs.playground import Inputs
from console.queries import budgets as budget_queries
from console.queries.budgets import Utilisation
from console.queries.usage import cached, home, reader, version
from core import clock
from core.budgets import matches
from core.control import control_url
from core.errors import UnpricedModel
from core.pricing import PriceRow, max_cost, price
from core.router import Router
from core.settings import ENV_KEY_NAMES, ProviderConfig, Settings, mask, provider_from_env
from core.tokens import count_messages
from core.types import ChatRequest, Message, Usage
from core.usage import Filters

LOCAL_MODEL = "local/smollm2-135m-instruct"


TYPICAL_OUTPUT = 256  # assumed output tokens when the log has no ok calls of the model


KEYLESS_WIRES = ("dryrun", "local")


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def secrets() -> Mapping[str, Any]:
    """st.secrets as a plain mapping ({} when there is no secrets file)."""
    try:
        return {k: st.secrets[k] for k in st.secrets}
    except (FileNotFoundError, StreamlitAPIException):
        return {}


def env_names(sec: Mapping[str, Any]) -> dict[str, str]:
    return {
        k.upper(): str(v)
        for k, v in sec.items()
        if isinstance(v, str) and k.upper().endswith(("_API_KEY", "_BASE_URL"))
    }


def settings() -> Settings:
    """Settings.from_env with the secrets' keys and provider tables layered on top."""
    sec = secrets()
    env = {**os.environ, **env_names(sec)}
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
    if config.wire in KEYLESS_WIRES:
        return ""
    if not config.api_key and urlparse(config.base_url).hostname not in LOCAL_HOSTS:
        env = ENV_KEY_NAMES.get(provider, provider.upper())
        return f"no API key for {provider} (set {env}_API_KEY or add it to secrets.toml)"
    # keyed, or a self-hosted server (llama.cpp, vLLM, Ollama) that needs no key
    if not reachable(config.base_url):
        return f"{provider}'s server {config.base_url} is not answering"
    return ""


@st.cache_data(ttl=20, show_spinner=False)
def reachable(base_url: str) -> bool:
    """Whether something accepts a TCP connection at the URL's host and port (a quick probe,
    remembered for 20 s, so a provider that is down is flagged before sending)."""
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=0.5):
            return True
    except OSError:
        return False


def providers(s: Settings) -> pd.DataFrame:
    """The configured providers: wire, base URL, the key masked, where it came from, status."""
    sec, table = env_names(secrets()), secrets().get("providers") or {}
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


@dataclass(frozen=True)
class Target:
    """A model as the Router will call it: requested name, catalog name, provider, rates."""

    name: str
    model: str
    provider: str
    problem: str = ""  # why the provider cannot be called ("" when it can)


def model_names(r: Router) -> list[str]:
    """Catalog models (local ones as 'local/<name>'), priced overrides included, usable ones
    first: dryrun, then local, then providers with a key and a server that answers; models
    that cannot be called (no key, unreachable) after them, each group by name."""
    cat = r.catalog
    names = {f"local/{m}" if cat.provider_of(m) == "local" else m for m in cat.models()}

    def group(name: str) -> tuple[int, str]:
        provider = cat.provider_of(name)
        if provider_problem(r.settings, provider):
            return 3, name
        return {"dryrun": 0, "local": 1}.get(provider, 2), name

    return sorted(names, key=group)


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


@cached
def typical_outputs(home: str, version: str, since: datetime) -> dict[str, int]:
    """Median output tokens per model over recent ok calls (needs 3+ calls)."""
    df = reader().sql(TYPICAL_SQL, [since])
    return {str(m): int(t) for m, t in zip(df["model"], df["typical"], strict=True)}


def typical_since() -> datetime:
    day = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=30)


def headroom(r: Router, req: ChatRequest, target: Target) -> list[Utilisation]:
    """Every enabled budget this call would be charged to, in its current window, from the
    usage log (every router's calls, as on the Budgets page), not this process's counters."""
    ctl = r.controls
    if ctl is None:
        return []
    snap = ctl.snapshot()
    hits = tuple(
        b
        for b in snap.active_budgets()
        if matches(b, req, target.model, target.provider, ctl.guard.canonical)
    )
    if not hits:
        return []
    return budget_queries.utilisation(
        home(), version(), auth.plane().version(), hits, budget_queries.utilisation_now()
    )


HISTORY_COLUMNS = [
    "ts",
    "request_id",
    "model",
    "requested_model",
    "status",
    "input_tokens",
    "output_tokens",
    "cost_picousd",
    "unpriced",
    "latency_ms",
    "cache_hit",
    "error_message",
]


RUNS_LOCK = threading.Lock()  # the runs file: remembered here, appended by commands


def runs_file() -> Path:
    return Path(home()) / "playground" / "runs.jsonl"


def remembered(user: str) -> dict[str, Inputs]:
    path = runs_file()
    if not path.exists():
        return {}
    out: dict[str, Inputs] = {}
    with RUNS_LOCK:
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


@cached
def history(home: str, version: str, user: str, limit: int = 25) -> pd.DataFrame:
    """This user's playground calls, newest first (from the usage log)."""
    return reader().events(Filters(source="playground", user=user), HISTORY_COLUMNS, limit=limit)
