"""OpenTelemetry: one span per call, GenAI semantic conventions plus costline.* attributes.

Enabled by ``Settings(otel=True)`` (env COSTLINE_OTEL=1) when the optional extra
``costline[otel]`` is installed. Spans use the global tracer provider, so the application's
exporter configuration applies. When disabled, ``record`` is a no-op costing one branch.
"""

from __future__ import annotations

import logging
from typing import Any

from core.errors import CostlineError
from core.types import ChatRequest, Completion

log = logging.getLogger(__name__)


class Tracer:
    def __init__(self, enabled: bool, tracer_provider: Any = None) -> None:
        self._tracer: Any = None
        if not enabled:
            return
        try:
            from opentelemetry import trace
        except ImportError:
            log.warning(
                "COSTLINE_OTEL is on but opentelemetry is not installed: "
                "pip install 'costline[otel]'"
            )
            return
        self._tracer = trace.get_tracer("costline", tracer_provider=tracer_provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def record(
        self, start_ns: int, req: ChatRequest, done: Completion, exc: CostlineError | None
    ) -> None:
        if self._tracer is None:
            return
        span = self._tracer.start_span(f"chat {done.model}", start_time=start_ns)
        u = done.usage
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": done.provider,
            "gen_ai.system": done.provider,
            "gen_ai.request.model": req.model or done.requested_model or "",
            "gen_ai.response.model": done.model,
            "gen_ai.usage.input_tokens": u.prompt_tokens,
            "gen_ai.usage.output_tokens": u.completion_tokens,
            "costline.request_id": done.request_id,
            "costline.cost_usd": float(done.cost.usd),
            "costline.cache_hit": done.cache_hit,
            "costline.usage_estimated": u.estimated,
            "costline.org": req.org or "",
            "costline.project": req.project or "",
            "costline.user": req.user or "",
            "costline.task": req.task or "",
            "costline.route_reason": done.route_reason,
        }
        if req.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = req.max_tokens
        if req.temperature is not None:
            attrs["gen_ai.request.temperature"] = req.temperature
        if done.finish_reason:
            attrs["gen_ai.response.finish_reasons"] = [done.finish_reason]
        if exc is not None:
            attrs["error.type"] = exc.error_type
        span.set_attributes(attrs)
        if exc is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, exc.message))
        span.end()
