"""Gateway settings. Precedence, highest first:

    | source                        | example                                     |
    |-------------------------------|---------------------------------------------|
    | arguments (``costline gateway --port``) | --host 0.0.0.0 --port 4000 --workers 2 |
    | environment variables         | COSTLINE_GATEWAY_MAX_BODY_MB=20             |
    | built-in defaults             | 127.0.0.1:4000, 1 worker, 10 MB, 30 s drain |

Other variables: ``COSTLINE_GATEWAY_DRAIN_S`` (how long SIGTERM lets streams finish),
``COSTLINE_GATEWAY_ALLOW_UNPRICED=1`` (log unknown models as unpriced instead of a 404),
``COSTLINE_GATEWAY_TRANSPORT`` (aiohttp | httpx), ``COSTLINE_GATEWAY_ALERT_WORKER=0`` (do not
run the alert worker inside the gateway), ``COSTLINE_GATEWAY_METRICS_TOKEN`` (a bearer token
Prometheus sends to ``/metrics``; an admin's API token works too),
``COSTLINE_GATEWAY_METRICS_PUBLIC=1`` (serve ``/metrics`` without a token),
``COSTLINE_REDIS_PREFIX`` (live-state key prefix), ``COSTLINE_KEY_PEPPER`` (see core/keys.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from core.errors import ConfigError
from core.settings import env_flag

ENV = "COSTLINE_GATEWAY_"


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(ENV + name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{ENV}{name}: not a number: {raw!r}", field=name.lower()) from None
    if value <= 0:
        raise ConfigError(f"{ENV}{name}: must be > 0, got {raw!r}", field=name.lower())
    return value


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    max_body_bytes: int = 10 * 1024 * 1024
    drain_s: float = 30.0
    allow_unpriced: bool = False
    transport: str = "auto"
    poll_s: float = 1.0  # control-plane version poll: revocations apply within ~1 s
    alert_worker: bool = True  # each process runs core.worker; the lease picks one to scan
    metrics_token: str = ""  # a bearer token for /metrics (besides an admin's API token)
    metrics_public: bool = False  # /metrics without any token (a scrape-only network)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: object) -> GatewayConfig:
        env = os.environ if env is None else env
        transport = env.get(ENV + "TRANSPORT", "auto")
        if transport not in ("auto", "aiohttp", "httpx"):
            raise ConfigError(
                f"{ENV}TRANSPORT: {transport!r} is not aiohttp, httpx or auto",
                field=ENV + "TRANSPORT",
            )
        config = cls(
            max_body_bytes=int(_float(env, "MAX_BODY_MB", 10.0) * 1024 * 1024),
            drain_s=_float(env, "DRAIN_S", 30.0),
            allow_unpriced=env_flag(ENV + "ALLOW_UNPRICED", False, env),
            transport=transport,
            alert_worker=env_flag(ENV + "ALERT_WORKER", True, env),
            metrics_token=env.get(ENV + "METRICS_TOKEN", "").strip(),
            metrics_public=env_flag(ENV + "METRICS_PUBLIC", False, env),
        )
        config = replace(config, **{k: v for k, v in given.items() if v is not None})  # type: ignore[arg-type]
        if config.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {config.workers}", field="workers")
        return config

    def to_env(self) -> dict[str, str]:
        """What worker processes read back with ``from_env``."""
        return {
            ENV + "MAX_BODY_MB": repr(self.max_body_bytes / 1024 / 1024),
            ENV + "DRAIN_S": repr(self.drain_s),
            ENV + "ALLOW_UNPRICED": "1" if self.allow_unpriced else "0",
            ENV + "TRANSPORT": self.transport,
            ENV + "ALERT_WORKER": "1" if self.alert_worker else "0",
            ENV + "METRICS_TOKEN": self.metrics_token,
            ENV + "METRICS_PUBLIC": "1" if self.metrics_public else "0",
        }
