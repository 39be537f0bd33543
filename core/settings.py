"""Settings: where state lives and how to reach each provider.

Precedence, highest first:

    | source                         | example                                        |
    |--------------------------------|------------------------------------------------|
    | arguments to Settings(...)     | Settings(home=Path("/tmp/x"))                  |
    | environment variables          | COSTLINE_HOME, OPENAI_API_KEY, GROQ_BASE_URL   |
    | built-in defaults              | home ./.costline, provider base URLs below     |

Per provider NAME the environment gives ``{NAME}_API_KEY`` and ``{NAME}_BASE_URL``
(upper case, e.g. ``OPENAI_BASE_URL``), and ``{NAME}_ORGANIZATION`` (OpenAI's
``OpenAI-Organization`` header; ``OPENAI_ORG_ID``, the OpenAI SDK's name, works too), and
``{NAME}_TIMEOUT_S``, the upstream timeout per attempt (else ``COSTLINE_UPSTREAM_TIMEOUT_S``,
else 60 s; a request's own ``timeout`` wins over both). Keys are never logged;
``ProviderConfig.__repr__`` masks them.

``COSTLINE_TIMEZONE`` is not a router setting: it is the control plane's default 'timezone'
setting (``core.control``), read where budget windows and day boundaries are computed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from core.errors import ConfigError

Wire = Literal["openai", "anthropic", "dryrun", "local"]
DEFAULT_TIMEOUT_S = 60.0  # upstream timeout per attempt

DEFAULT_BASE_URLS: dict[str, tuple[Wire, str]] = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "https://api.anthropic.com"),
    "google": ("openai", "https://generativelanguage.googleapis.com/v1beta/openai"),
    "groq": ("openai", "https://api.groq.com/openai/v1"),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "mistral": ("openai", "https://api.mistral.ai/v1"),
    "xai": ("openai", "https://api.x.ai/v1"),
    "cohere": ("openai", "https://api.cohere.ai/compatibility/v1"),
    "ollama": ("openai", "http://127.0.0.1:11434/v1"),
    "vllm": ("openai", "http://127.0.0.1:8000/v1"),
    "tgi": ("openai", "http://127.0.0.1:8080/v1"),
    "llamacpp": ("openai", "http://127.0.0.1:8080/v1"),
    "dryrun": ("dryrun", ""),
    "local": ("local", ""),
}
ENV_KEY_NAMES = {"google": "GEMINI"}  # GEMINI_API_KEY is what Google documents


def comma_list(text: str | None) -> tuple[str, ...]:
    """A comma-separated setting as its items: spaces around each stripped, blanks dropped
    (``"alpha, beta,"`` -> ``("alpha", "beta")``). Every comma-list setting goes through here."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def env_flag(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """An on/off setting: 1/true/yes/on or 0/false/no/off in any case (unset or empty:
    ``default``); anything else is a ConfigError naming the variable, never silently off."""
    env = os.environ if env is None else env
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise ConfigError(
        f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {env[name]!r}", field=name
    )


def costline_home(env: Mapping[str, str] | None = None) -> Path:
    """All runtime state lives under this one directory."""
    env = os.environ if env is None else env
    return Path(env.get("COSTLINE_HOME") or ".costline").resolve()


def mask(secret: str | None) -> str:
    if not secret:
        return ""
    return secret[:3] + "…" + secret[-4:] if len(secret) > 10 else "…"


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    wire: Wire
    base_url: str = ""
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0  # DEFAULT_TIMEOUT_S; {NAME}_TIMEOUT_S, COSTLINE_UPSTREAM_TIMEOUT_S
    organization: str | None = None  # OpenAI-Organization header (OpenAI wire)

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(name={self.name!r}, wire={self.wire!r}, base_url={self.base_url!r},"
            f" api_key={mask(self.api_key)!r})"
        )


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=costline_home)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    log_bodies_projects: frozenset[str] = frozenset()  # projects whose prompts are stored
    otel: bool = False
    reconcile_interval_s: float = 30.0  # budget counters vs the usage log; 0: only at start
    log_flush_s: float = 2.0  # how long an event may wait in the journal before it is sealed

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        providers = {name: provider_from_env(name, env) for name in DEFAULT_BASE_URLS}
        s = cls(
            home=costline_home(env),
            providers=providers,
            log_bodies_projects=frozenset(comma_list(env.get("COSTLINE_LOG_BODIES_PROJECTS"))),
            otel=env_flag("COSTLINE_OTEL", False, env),
            reconcile_interval_s=_seconds(env, "COSTLINE_RECONCILE_S", 30.0),
            log_flush_s=_seconds(env, "COSTLINE_LOG_FLUSH_S", 2.0),
        )
        return replace(s, **overrides)  # type: ignore[arg-type]

    def provider(self, name: str) -> ProviderConfig:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(f"provider {name!r} is not configured") from None

    def with_provider(self, config: ProviderConfig) -> Settings:
        return replace(self, providers={**self.providers, config.name: config})

    @property
    def events_dir(self) -> Path:
        return self.home / "events"


def check_environment() -> None:
    """Read the environment settings a server (gateway, ``costline api``) reads when it
    starts or on its first call: a bad value is a ConfigError naming its variable now."""
    from core.control import check_control_url, env_timezone
    from core.state import check_state_url

    Settings.from_env()
    env_timezone()
    check_state_url(os.environ.get("REDIS_URL", ""))
    check_control_url()


def _seconds(env: Mapping[str, str], name: str, default: float, *, above_0: bool = False) -> float:
    """Finite seconds >= 0 (``above_0``: > 0) from ``env[name]`` (unset or empty: ``default``)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}", field=name) from None
    if not (value > 0 if above_0 else value >= 0) or value == float("inf"):
        bound = "> 0" if above_0 else ">= 0"
        raise ConfigError(f"{name} must be {bound} seconds, got {raw!r}", field=name)
    return value


def provider_from_env(name: str, env: Mapping[str, str]) -> ProviderConfig:
    wire, url = DEFAULT_BASE_URLS.get(name, ("openai", ""))
    prefix = ENV_KEY_NAMES.get(name, name.upper())
    org = env.get(f"{name.upper()}_ORGANIZATION") or env.get(f"{name.upper()}_ORG_ID")
    timeout = _timeout(env, "COSTLINE_UPSTREAM_TIMEOUT_S", DEFAULT_TIMEOUT_S)
    return ProviderConfig(
        name=name,
        wire=wire,
        base_url=env.get(f"{name.upper()}_BASE_URL", url).rstrip("/"),
        api_key=env.get(f"{prefix}_API_KEY") or None,
        timeout_s=_timeout(env, f"{name.upper()}_TIMEOUT_S", timeout),
        organization=org or None,
    )


def _timeout(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds > 0 from ``env[name]`` (unset or empty: ``default``)."""
    return _seconds(env, name, default, above_0=True)
