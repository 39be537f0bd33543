"""The management REST API (see docs/api.md): everything the console does, scriptable.

    from core.api import create_app, serve
    serve(host="127.0.0.1", port=8600)        # costline api
    app = create_app()                        # any ASGI server; the gateway mounts it

Starlette routes built from declared operations (``_http.Op``); the same declarations
build the OpenAPI document served at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from core.api._context import Context
from core.api._http import ApiError, Op
from core.api.app import create_app, operations
from core.serving import StartupSignals

__all__ = ["ApiError", "Context", "Op", "create_app", "mounts", "operations", "serve"]


def mounts(context: Context | None = None) -> list[Any]:
    """Routes another Starlette app (the gateway) adds to serve the API at ``/api/v1`` and
    its docs at ``/api/docs``."""
    from starlette.routing import Mount

    return [Mount("/api", app=create_app(root="", context=context))]


def serve(
    host: str = "127.0.0.1", port: int = 8600, line: str = "", signals: StartupSignals | None = None
) -> int:
    """Run the API alone on uvicorn until interrupted; print ``line`` once it listens.
    0 once served, 3 if it could not start; a SIGINT while it starts stops it there (0).
    ``signals``: those the caller caught first (else caught here)."""
    import signal

    from core import serving

    signals = signals or serving.StartupSignals(signal.SIGINT)
    app = create_app()
    if signals.got:
        app.state.costline.close()
        return 0
    return serving.run(app, line, signals, host=host, port=port, log_level="info")
