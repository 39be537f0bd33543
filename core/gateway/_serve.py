"""``costline gateway``: uvicorn (uvloop + httptools) with one or N worker processes.

Several workers must enforce one budget and one rate limit together, so they need shared live
counters: with ``REDIS_URL`` every worker's Router uses Redis; without it, or with
``memory://``, ``--workers > 1`` is refused (the embedded SQLite counters share budgets only:
per-worker rate limits would let N workers pass N times a limit, and ``memory://`` counters
would let N workers spend N times a budget). SIGTERM drains: the
listening socket closes, in-flight requests finish (streams for up to
``COSTLINE_GATEWAY_DRAIN_S``), then each worker closes its Router, flushing the usage log.
SIGTERM or SIGINT while it starts stops it before it serves (``StartupSignals``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from typing import Any

from core.errors import ConfigError
from core.serving import StartupSignals, announce_when_listening, run

from ._config import GatewayConfig

log = logging.getLogger("costline.gateway")


def check_workers(config: GatewayConfig, env: dict[str, str] | None = None) -> None:
    env = dict(os.environ) if env is None else env
    url = env.get("REDIS_URL", "")
    if config.workers > 1 and (not url or url.startswith("memory://")):
        got = " (REDIS_URL memory:// keeps each worker's own)" if url else ""
        raise ConfigError(
            f"--workers {config.workers} needs shared live counters{got}: set REDIS_URL to a "
            "Redis (e.g. redis://127.0.0.1:6379/0) so every worker enforces the same budgets "
            "and rate limits, or run one worker",
            field="workers",
        )


def check_settings() -> None:
    """Read every environment setting a worker reads at startup, so a bad value is one line
    naming its variable before the server starts, not a traceback from inside uvicorn."""
    from core.settings import check_environment

    check_environment()


def create_app() -> object:
    """The app factory uvicorn calls in each worker process."""
    from ._app import build_app

    return build_app(GatewayConfig.from_env())


def serve(config: GatewayConfig, signals: StartupSignals | None = None) -> int:
    """Serve until SIGTERM or SIGINT (0 once drained; 0 as well when one comes while it
    starts: it stops there). ``signals``: caught already by the caller, else caught here."""
    # uvicorn re-raises the signal it drained for: these handlers also make that exit 0
    signals = signals or StartupSignals(signal.SIGINT, signal.SIGTERM)
    import importlib.util

    try:
        check_workers(config)
        check_settings()
    except ConfigError as exc:
        print(f"costline gateway: {exc}", file=sys.stderr)
        return 2
    missing = [
        m for m in ("uvicorn", "starlette", "prometheus_client") if not importlib.util.find_spec(m)
    ]
    if missing:
        print(
            f"costline gateway needs {', '.join(missing)}: pip install 'costline[gateway]'",
            file=sys.stderr,
        )
        return 2
    import uvicorn

    os.environ.update(config.to_env())
    if config.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="costline-metrics-")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    host = f"[{config.host}]" if ":" in config.host else config.host  # IPv6, bracketed
    line = (
        f"Costline gateway on http://{host}:{config.port}/v1 "
        f"({config.workers} worker{'s' if config.workers > 1 else ''}, {loop}, {http})"
    )
    kwargs: dict[str, Any] = dict(
        host=config.host,
        port=config.port,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=int(config.drain_s),
        timeout_keep_alive=30,
    )
    # the line is printed once the socket accepts connections: a script waits for it
    if config.workers > 1:
        if signals.got:
            return 0
        announce_when_listening(config.host, config.port, line)
        with signals.handed_over():  # to uvicorn's supervisor, which stops its workers
            uvicorn.run(
                "core.gateway._serve:create_app", factory=True, workers=config.workers, **kwargs
            )
        return 0
    from ._app import build_app

    if signals.got:
        return 0
    gateway = build_app(config)
    if signals.got:
        gateway.close()
        return 0
    return run(gateway, line, signals, **kwargs)
