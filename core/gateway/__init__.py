"""The gateway: an OpenAI- and Anthropic-compatible HTTP service in front of the Router.

    costline gateway --port 4000              # or, in Python:
    app = build_app(GatewayConfig(), mounts=[Mount("/api/v1", app=other_app)])

Endpoints: POST /v1/chat/completions, /v1/messages, /v1/messages/count_tokens,
/v1/embeddings; GET /v1/models, /health/live, /health/ready, /metrics. Every inference call
needs a virtual key (``costline keys create``); /metrics needs COSTLINE_GATEWAY_METRICS_TOKEN or
an admin's API token. Needs ``costline[gateway]``; names load lazily.
See docs/gateway.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Gateway": "core.gateway._app",
    "GatewayConfig": "core.gateway._config",
    "build_app": "core.gateway._app",
    "check_workers": "core.gateway._serve",
    "default_router": "core.gateway._app",
    "serve": "core.gateway._serve",
    "upstream_client": "core.gateway._transport",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core.gateway' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
