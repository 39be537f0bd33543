"""Provider adapters: one class per wire protocol, found through a small registry.

    register("openai", OpenAIProvider)        # built-ins register exactly like a plugin would
    provider = create(settings.provider("groq"), client=shared_httpx_client)
    provider.complete(request, "llama-3.1-8b-instant") -> ProviderResult

``model`` arguments are the provider's own model id (the router strips "provider/").
"""

from __future__ import annotations

import httpx

from core.errors import ConfigError
from core.providers._http import HTTPProvider, StreamState
from core.providers.anthropic import AnthropicProvider
from core.providers.base import (
    EmbedInputs,
    EmbedResult,
    Provider,
    ProviderResult,
    StreamItem,
    TextDelta,
    ToolDelta,
    rich_message,
    text_only,
)
from core.providers.dryrun import DryRunProvider
from core.providers.local import LocalProvider
from core.providers.openai_compat import OpenAIProvider
from core.settings import ProviderConfig

__all__ = [
    "AnthropicProvider",
    "DryRunProvider",
    "EmbedInputs",
    "EmbedResult",
    "HTTPProvider",
    "LocalProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderResult",
    "StreamItem",
    "StreamState",
    "TextDelta",
    "ToolDelta",
    "create",
    "register",
    "registered",
    "rich_message",
    "text_only",
]

_REGISTRY: dict[str, type[Provider]] = {}


def register(wire: str, cls: type[Provider]) -> None:
    """Make ``cls`` the adapter for ``wire``; a later registration replaces an earlier one."""
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{cls!r} is not a Provider subclass")
    _REGISTRY[wire] = cls


def registered() -> dict[str, type[Provider]]:
    """A copy of the registry: wire name -> adapter class."""
    return dict(_REGISTRY)


def create(
    config: ProviderConfig,
    *,
    client: httpx.Client | None = None,
    aclient: httpx.AsyncClient | None = None,
) -> Provider:
    """The adapter for ``config.wire``, built with the (optional) shared httpx clients."""
    cls = _REGISTRY.get(config.wire)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(
            f"provider {config.name!r}: unknown wire {config.wire!r} (known: {known})",
            field="wire",
            provider=config.name,
        )
    return cls.from_config(config, client=client, aclient=aclient)


for _cls in (OpenAIProvider, AnthropicProvider, DryRunProvider, LocalProvider):
    register(_cls.wire, _cls)
