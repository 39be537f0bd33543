"""The Routing & Sampling page's reads: what sampling saved and provider health from the usage
log, breaker states as this console process's router saw them, and provider problems."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from console.queries import playground
from console.queries.pricing import catalog
from console.queries.usage import cached, reader
from core import reports
from core.control import RoutingPolicy
from core.errors import CostlineError
from core.pricing import Catalog


def provider_warnings(p: RoutingPolicy, cat: Catalog) -> list[str]:
    """Models of ``p`` whose provider is not ready in this console's configuration."""
    s = playground.settings()
    out = []
    for model in (p.primary_model, *p.fallbacks, p.degrade_to):
        if model and cat.has(model):
            problem = playground.provider_problem(s, cat.provider_of(model))
            if problem:
                out.append(f"{model}: {problem}")
    return out


def provider_of(model: str) -> tuple[str, str]:
    """The provider a catalog model is served by and that provider's wire ('anthropic',
    'openai', …) in this console's configuration."""
    cat = catalog()
    provider = cat.provider_of(model) if cat.has(model) else ""
    config = playground.settings().providers.get(provider)
    return provider, config.wire if config is not None else provider


@cached
def sampling_savings(home: str, version: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Per task in [start, end): events, real calls, skipped calls and what skipping saved
    (``core.reports``, as ``GET /api/v1/sampling/stats``)."""
    return reports.sampling_savings(reader(), start, end)


@cached
def provider_health(home: str, version: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Per provider and model in [start, end): attempts, errors, error rate and latency
    p50/p95 (``core.reports``, which the alert worker's checks use too)."""
    return reports.provider_health(reader(), start, end)


def breakers() -> dict[str, tuple[str, int]]:
    """model -> (breaker state, consecutive failures) as this console process's router last
    saw them (core.routing's health(): it never takes a half-open probe)."""
    try:
        health = playground.router().controls.routing.health()  # type: ignore[union-attr]
    except (CostlineError, AttributeError):
        return {}
    return {h.model: (h.breaker, h.consecutive_failures) for h in health}
