"""What every call of one Router shares: settings, controls, catalog, usage log, retry
policy, tracer and the provider adapters (made on first use, one per provider)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from core.controls import Controls
from core.errors import CostlineError, UsageLogUnavailable
from core.otel import Tracer
from core.pricing import Catalog
from core.providers import Provider, create
from core.retry import RetryPolicy
from core.settings import Settings
from core.usage import UsageLog

__all__ = ["ClosedLog", "Context"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Context:
    settings: Settings
    base_catalog: Catalog
    controls: Controls | None
    log: UsageLog
    retry: RetryPolicy
    tracer: Tracer
    allow_unpriced: bool = False
    owns_log: bool = False  # the Router made the log: its close closes it (threads and all)
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
        if self.owns_log:
            self.log.close()  # sealed, converted, its threads ended
        else:
            self.log.flush()
        for p in self.providers.values():
            close = getattr(p, "close", None)
            if close is not None:
                close()
        if self.controls is not None:
            self.controls.close()


class ClosedLog(UsageLog):
    """The usage log a closed Router's calls meet: ``check`` (made by every call before
    anything is admitted or paid) refuses them, so a call after ``close`` is an error of the
    tree, not a closed database's. A call that was in flight at ``close`` is still appended
    when ``log`` takes it."""

    def __init__(self, log: UsageLog) -> None:  # nothing of its own to open
        self.log = log

    def check(self) -> None:
        raise UsageLogUnavailable("this Router is closed: it takes no more calls (make a new one)")

    def append_row(self, row: tuple[Any, ...]) -> None:
        try:
            self.log.append_row(row)
        except ValueError:  # closed too: the event cannot be written any more
            log.error("a call that ended after its Router was closed was not logged")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
