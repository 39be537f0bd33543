"""What every call of one Router shares: settings, controls, catalog, usage log, retry
policy, tracer and the provider adapters (made on first use, one per provider)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from core.controls import Controls
from core.errors import CostlineError
from core.otel import Tracer
from core.pricing import Catalog
from core.providers import Provider, create
from core.retry import RetryPolicy
from core.settings import Settings
from core.usage import UsageLog

__all__ = ["Context"]


@dataclass(slots=True)
class Context:
    settings: Settings
    base_catalog: Catalog
    controls: Controls | None
    log: UsageLog
    retry: RetryPolicy
    tracer: Tracer
    allow_unpriced: bool = False
    providers: dict[str, Provider] = field(default_factory=dict)
    client: httpx.Client | None = None
    aclient: httpx.AsyncClient | None = None
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_batched: Callable[[], None] | None = None  # a LOW sampling event joined a batch
    # model name -> (catalog name, provider, id sent upstream, priced?), for one catalog
    # (a new one comes with a control-plane snapshot that edits prices): route.candidate
    names: tuple[Catalog | None, dict[str, tuple[str, str, str, bool]]] = field(
        default_factory=lambda: (None, {})
    )

    @property
    def catalog(self) -> Catalog:
        """The price catalog in force (with the control plane's overrides, when on)."""
        return self.controls.catalog if self.controls is not None else self.base_catalog

    def provider(self, name: str) -> Provider:
        """The adapter of provider ``name``, created from its settings on first use."""
        p = self.providers.get(name)
        if p is None:
            with self.lock:
                p = self.providers.get(name)
                if p is None:
                    config = self.settings.provider(name)
                    p = create(config, client=self.client, aclient=self.aclient)
                    self.providers[name] = p
        return p

    def delay(self, attempt: int, exc: CostlineError) -> float | None:
        """Seconds before retrying the same model, or None to move on (RetryPolicy)."""
        with self.lock:
            return self.retry.delay(attempt, exc, self.rng)

    def close(self) -> None:
        self.log.flush()
        for p in self.providers.values():
            close = getattr(p, "close", None)
            if close is not None:
                close()
        if self.controls is not None:
            self.controls.close()
