"""Prometheus metrics of the gateway (``GET /metrics``).

Counters by status, model, provider and key; requests in flight; cost in USD; tokens; the
gateway's own overhead and the upstream latency as histograms; cache hits; budget
utilisation (read from the live state when scraped); the usage log's health (events held
in memory while the disk is full, dropped, write failures, conversion retries: this
process's) and the events in quarantine, read when scraped; whether this process's alert worker
runs and how often it failed to start (it retries with backoff). With several workers the values of
every process are summed through ``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


OTHER_MODEL = "other"


class Metrics:
    """One set of collectors per process; label children are cached (a dict lookup a call)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ("endpoint", "status", "model", "provider", "key")
        self.requests = Counter("costline_gateway_requests", "Requests", labels, registry=r)
        self.cost = Counter(
            "costline_gateway_cost_usd", "Cost in USD", ("model", "provider", "key"), registry=r
        )
        self.tokens = Counter(
            "costline_gateway_tokens",
            "Tokens",
            ("kind", "model", "provider", "key"),
            registry=r,
        )
        self.cache = Counter("costline_gateway_cache", "Cache lookups", ("result",), registry=r)
        self.in_flight = Gauge(
            "costline_gateway_in_flight",
            "Inference requests being served",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.overhead = Histogram(
            "costline_gateway_overhead_seconds",
            "Gateway time not spent upstream",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream = Histogram(
            "costline_gateway_upstream_seconds",
            "Upstream latency",
            ("provider",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self.budgets: Callable[[], Iterator[tuple[str, float]]] | None = None
        self.known_model: Callable[[str], bool] | None = None  # the catalog's, once started
        self.alert_worker: Callable[[], Any] | None = None  # its WorkerStatus, once started
        self.registry.register(_BudgetCollector(self))
        self.registry.register(_UsageLogCollector())
        self.registry.register(_AlertWorkerCollector(self))

    def _child(self, metric: Any, *values: str) -> Any:
        k = (id(metric), *values)
        got = self._children.get(k)
        if got is None:
            got = self._children[k] = metric.labels(*values)
        return got

    def request(
        self,
        endpoint: str,
        status: int,
        model: str = "",
        provider: str = "",
        key: str = "",
    ) -> None:
        """One refused or failed request. ``model`` is what the client asked for: a name the
        catalog does not know is labelled ``other`` (one series per made-up name would grow
        without bound)."""
        known = self.known_model
        if model and known is not None and not known(model):
            model = OTHER_MODEL
        self._child(self.requests, endpoint, str(status), model, provider, key).inc()

    def call(
        self,
        endpoint: str,
        model: str,
        provider: str,
        key: str,
        cost_usd: float,
        input_tokens: int,
        output_tokens: int,
        cache_hit: bool,
        overhead_s: float | None,
        upstream_s: float | None,
        unpriced: bool = False,
    ) -> None:
        """One answered call (an unpriced model, named by the client, is labelled ``other``)."""
        if unpriced:
            model = OTHER_MODEL
        self._child(self.requests, endpoint, "200", model, provider, key).inc()
        if cost_usd:
            self._child(self.cost, model, provider, key).inc(cost_usd)
        if input_tokens:
            self._child(self.tokens, "input", model, provider, key).inc(input_tokens)
        if output_tokens:
            self._child(self.tokens, "output", model, provider, key).inc(output_tokens)
        self._child(self.cache, "hit" if cache_hit else "miss").inc()
        if overhead_s is not None:
            self._child(self.overhead, endpoint).observe(overhead_s)
        if upstream_s:
            self._child(self.upstream, provider).observe(upstream_s)

    def render(self) -> tuple[bytes, str]:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            registry.register(_BudgetCollector(self))
            registry.register(_UsageLogCollector())
            registry.register(_AlertWorkerCollector(self))
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BudgetCollector:
    """Budget utilisation (spend / limit) of every enabled budget, read when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "costline_budget_utilisation",
            "Budget spend / limit in the current window",
            labels=["budget"],
        )
        source = self.metrics.budgets
        if source is not None:
            for budget_id, value in source():
                g.add_metric([budget_id], value)
        yield g


class _AlertWorkerCollector:
    """This process's alert worker: running or not, and how often it failed to start."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        source = self.metrics.alert_worker
        status = source() if source is not None else None
        if status is None:  # not started, or COSTLINE_GATEWAY_ALERT_WORKER=0
            return
        yield GaugeMetricFamily(
            "costline_alert_worker_running",
            "1 while this process's alert worker runs (0: starting, retrying or stopped)",
            value=1 if status.state == "running" else 0,
        )
        yield GaugeMetricFamily(
            "costline_alert_worker_start_failures",
            "Attempts of this process's alert worker to start that failed",
            value=status.failures,
        )


class _UsageLogCollector:
    """The usage log's health (``core.usage.log_health``) and the quarantine, when scraped."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from core.usage import log_health, quarantine_summary

        for name, value in sorted(log_health().items()):
            yield GaugeMetricFamily(
                f"costline_usage_log_{name}", f"Usage log of this process: {name}", value=value
            )
        q = quarantine_summary()
        yield GaugeMetricFamily(
            "costline_usage_quarantined_events",
            "Usage events in COSTLINE_HOME/quarantine (known rows)",
            value=q.events,
        )
