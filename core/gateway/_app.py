"""The gateway's ASGI app: the inference routes as plain ASGI handlers, everything else a
Starlette app (health, metrics, models, extra mounts such as the management API).

    app = build_app(GatewayConfig(), mounts=[Mount("/api/v1", app=api_app)])
    uvicorn.run(app)

One ``Router`` per process (made at startup, closed at shutdown: the usage log is flushed),
calling its public async API. See docs/gateway.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from core import clock
from core.control import ControlSnapshot, RateLimit, VirtualKey
from core.errors import BudgetExceeded, CostlineError
from core.keys import KeyIndex, load_pepper
from core.providers import registered
from core.router import Router
from core.types import ChatRequest, Message

from . import _limits
from ._asgi import JSON, HeaderList, Receive, Scope, Send, request_ids, send_bytes
from ._config import GatewayConfig
from ._errors import HTTPError, forbidden, from_costline, unauthorized
from ._metrics import Metrics
from ._request import Headers, secret_of

Handler = Callable[["Gateway", Scope, Receive, Send], Awaitable[None]]
RouterFactory = Callable[[GatewayConfig], Router]


class Gateway:
    """State shared by every request of one process; ``__call__`` is the ASGI entry."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        router: Router | RouterFactory | None = None,
        mounts: Sequence[BaseRoute] = (),
        on_close: Callable[[], None] | None = None,
    ) -> None:
        from . import _chat, _routes

        self.config = config
        self._on_close = on_close
        self._router_arg = router
        self.router: Router | None = None
        self.metrics = Metrics()
        self.pepper = load_pepper()
        self._keys: tuple[ControlSnapshot | None, KeyIndex] = (None, KeyIndex((), self.pepper))
        self._found: dict[str, VirtualKey] = {}  # secret -> key of the current snapshot
        self._limits: dict[tuple[int, str], list[RateLimit]] = {}
        self._worker: tuple[Any, Any] | None = None  # (thread, stop event)
        self.worker_status: Any = None  # core.worker.WorkerStatus once started
        self._upstream: Any = None  # the upstream client start() made, closed at shutdown
        self._serving: set[asyncio.Task[Any]] = set()  # inference handlers running now
        self.hot: dict[str, Handler] = {
            "/v1/chat/completions": _chat.chat_completions,
            "/chat/completions": _chat.chat_completions,
            "/v1/messages": _chat.messages,
        }
        self.app = Starlette(
            routes=[*_routes.routes(self), *mounts],
            lifespan=self._lifespan,
            exception_handlers={404: _routes.not_served, 405: _routes.not_served},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.hot.get(scope["path"])
            if handler is not None:
                await handler(self, scope, receive, send)
                return
        await self.app(scope, receive, send)

    # ---- lifecycle ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        self.start()
        try:
            yield
        finally:
            # handlers uvicorn cancelled when the drain ran out: let each end its stream and
            # the Router log its partial call before the usage log is closed
            running = [t for t in self._serving if not t.done()]
            if running:
                await asyncio.wait(running, timeout=5.0)
            upstream, self._upstream = self._upstream, None
            self.close()
            if upstream is not None:  # its pooled connections, closed on this event loop
                await upstream.aclose()

    def start(self) -> Router:
        if self.router is None:
            got = self._router_arg
            if isinstance(got, Router):
                self.router = got
            elif got is not None:
                self.router = got(self.config)
            else:  # the default: the gateway made the upstream client, so it closes it
                from ._transport import upstream_client

                self._upstream = upstream_client(self.config.transport)
                self.router = default_router(self.config, aclient=self._upstream)
            self.metrics.budgets = self._budget_utilisation
            self.metrics.known_model = self._known_model
            self.metrics.alert_worker = lambda: self.worker_status
            warm()
            if self.config.alert_worker and self._worker is None:
                self._worker, self.worker_status = start_worker()
        return self.router

    def close(self) -> None:
        """Flush the usage log and close the router (every answered call is on disk)."""
        if self._worker is not None:
            thread, stop = self._worker
            stop.set()
            thread.join(10)
            self._worker = None
        if self.router is not None:
            self.router.close()
            self.router = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def live_state(self) -> Any:
        """The live state this process's Router admits with (None before startup, after
        shutdown, or for a Router without controls)."""
        r = self.router
        return r.controls.state if r is not None and r.controls is not None else None

    def begin(self) -> asyncio.Task[Any] | None:
        """Note the running inference handler (the shutdown waits for it); ``end`` it."""
        me = asyncio.current_task()
        if me is not None:
            self._serving.add(me)
        return me

    def end(self, me: asyncio.Task[Any] | None) -> None:
        if me is not None:
            self._serving.discard(me)

    # ---- keys ---------------------------------------------------------------------------
    def snapshot(self) -> ControlSnapshot | None:
        r = self.router
        return r.controls.snapshot() if r is not None and r.controls is not None else None

    def key_for(self, h: Headers) -> VirtualKey:
        """The request's virtual key: 401 when missing, unknown, revoked or expired."""
        secret = secret_of(h)
        snap = self.snapshot()
        held = self._keys
        if held[0] is not snap:  # a new snapshot (a key changed): hash again from scratch
            held = self._keys = (snap, KeyIndex(snap.keys if snap else (), self.pepper))
            self._found.clear()
        key = self._found.get(secret)
        if key is None:
            key = held[1].find(secret)
            if key is not None:
                if len(self._found) > 10_000:
                    self._found.clear()
                self._found[secret] = key
        if key is None:
            raise unauthorized("invalid API key: not a Costline virtual key of this gateway")
        if key.revoked_at is not None:
            raise unauthorized(f"API key {key.name!r} ({key.prefix}…) was revoked")
        if key.expires_at is not None and key.expires_at <= clock.now():
            raise unauthorized(f"API key {key.name!r} ({key.prefix}…) has expired")
        return key

    def check_models(self, key: VirtualKey, model: str | None, task: str | None) -> None:
        """403 when the key may not use the model (or a model the task's policy names)."""
        if not key.models:
            return
        wanted = [model] if model else []
        if not model and task:
            snap = self.snapshot()
            router = self.router
            policy = None
            if snap is not None and router is not None and router.controls is not None:
                policy = router.controls.policy(snap, task)
            if policy is not None:
                wanted = [policy.primary_model, *policy.fallbacks]
        refused = [m for m in wanted if not key.allows(m)]
        if refused:
            raise forbidden(
                f"key {key.name!r} may not use model {refused[0]!r} "
                f"(allowed: {', '.join(key.models)})"
            )

    def unsent_headers(
        self, req: ChatRequest, provider: str | None, ignored: tuple[str, ...] = ()
    ) -> HeaderList:
        """``x-costline-unsent-params``: the request's fields the answering provider was not
        sent, its API having no equivalent (Anthropic's ``top_k`` for OpenAI, OpenAI's
        ``seed`` for Anthropic, ...: the adapter's ``unsent``), and those the gateway does
        not read (``ignored``); none for a plain request."""
        names = set(ignored)
        router = self.router
        plain = not req.extra and all(m.extra is None for m in req.messages)
        plain = plain and req.prompt_cache is None  # the caller's (a policy's is not in req)
        if router is not None and provider and not plain:
            config = router.settings.providers.get(provider)
            adapter = registered().get(config.wire) if config is not None else None
            if adapter is not None and config is not None:
                names.update(adapter.unsent(config, req))
        if not names:
            return []
        return [(b"x-costline-unsent-params", ", ".join(sorted(names)).encode())]

    def key_limits(self, key: VirtualKey) -> list[RateLimit]:
        """The key's enabled rate limits (scope key), per control-plane snapshot."""
        snap = self.snapshot()
        k = (id(snap), key.name)
        got = self._limits.get(k)
        if got is None:
            got = _limits.key_limits(snap.rate_limits if snap is not None else (), key)
            if len(self._limits) > 4096:
                self._limits.clear()
            self._limits[k] = got
        return got

    def limit_headers(self, key: VirtualKey, limits: list[RateLimit] | None = None) -> HeaderList:
        """x-ratelimit-limit/remaining/reset-requests|tokens of the key's limits, now."""
        limits = self.key_limits(key) if limits is None else limits
        if not limits:
            return []
        router = self.router
        state = router.controls.state if router is not None and router.controls else None
        return _limits.headers(state, limits, key)

    def resets_at(self, exc: BudgetExceeded) -> datetime | None:
        snap = self.snapshot()
        budget = next((b for b in snap.budgets if b.id == exc.budget), None) if snap else None
        return None if budget is None else budget.window_bounds(clock.now())[1]

    def error_for(self, exc: CostlineError) -> HTTPError:
        resets = self.resets_at(exc) if isinstance(exc, BudgetExceeded) else None
        return from_costline(exc, resets)

    def _known_model(self, name: str) -> bool:
        r = self.router
        return r is not None and r.catalog.has(name)

    def _budget_utilisation(self) -> Any:
        r = self.router
        if r is None or r.controls is None:
            return
        snap = r.controls.snapshot()
        for s in r.controls.guard.status(r.controls.active_budgets(snap)):
            yield s.budget.id, float(s.utilisation)

    async def send_error(
        self,
        send: Send,
        err: HTTPError,
        request_id: str,
        *,
        anthropic: bool = False,
        extra: HeaderList = (),  # type: ignore[assignment]
    ) -> None:
        body = err.anthropic_body() if anthropic else err.openai_body()
        headers = [JSON, *request_ids(request_id), *err.headers()]
        headers += extra
        await send_bytes(send, err.status_for(anthropic), _dumps(body), headers)


def _dumps(obj: Any) -> bytes:
    import orjson

    return orjson.dumps(obj)


def default_router(config: GatewayConfig, *, aclient: Any = None) -> Router:
    """The Router a gateway process uses: controls on, live state from REDIS_URL (prefix
    COSTLINE_REDIS_PREFIX), upstream calls over the measured-faster async transport
    (``aclient``, else a new one the caller must close)."""
    import os

    from core.controls import Controls
    from core.pricing import load_catalog
    from core.state import make_state

    from ._transport import upstream_client

    catalog = load_catalog()
    state = make_state(prefix=os.environ.get("COSTLINE_REDIS_PREFIX") or None)
    controls = Controls(catalog, state=state, poll_s=config.poll_s)
    return Router(
        catalog=catalog,
        controls=controls,
        aclient=aclient if aclient is not None else upstream_client(config.transport),
        allow_unpriced=config.allow_unpriced,
    )


def build_app(
    config: GatewayConfig | None = None,
    *,
    router: Router | RouterFactory | None = None,
    mounts: Sequence[BaseRoute] | None = None,
) -> Gateway:
    """The gateway ASGI app. ``mounts``: extra Starlette routes or ``Mount``s served beside
    the inference routes; None (the default) mounts the management API (``core.api``) at
    /api/v1 with its docs at /api/docs, ``[]`` serves none."""
    closer = None
    made: list[Gateway] = []
    if mounts is None:  # the API reads and resets the live state this gateway admits with
        mounts, closer = api_mounts(lambda: made[0].live_state() if made else None)
    gateway = Gateway(
        config or GatewayConfig.from_env(), router=router, mounts=mounts, on_close=closer
    )
    made.append(gateway)
    return gateway


def api_mounts(
    gateway_state: Callable[[], Any] | None = None,
) -> tuple[list[BaseRoute], Callable[[], None] | None]:
    """The management API's routes and what closes its context ([] when not installed).
    ``gateway_state``: the serving gateway's live state (``Gateway.live_state``), so
    ``GET/DELETE /limits`` see and reset the buckets its calls are admitted against."""
    try:
        from core.api import Context, mounts
    except ImportError:  # its extra is not installed: the gateway serves inference only
        return [], None
    ctx = Context(gateway_state=gateway_state)
    return list(mounts(ctx)), ctx.close


def start_worker() -> tuple[tuple[Any, Any] | None, Any]:
    """The alert worker on a daemon thread of this process (docs/alerts.md) and its status.
    Every gateway process starts one; they compete for the control-plane lease
    ``alert-worker`` and only its holder scans and delivers, so exactly one process does at
    a time. One that cannot start (the control plane is down) retries with backoff on its
    thread, and the gateway serves meanwhile."""
    import logging

    try:
        from core.worker import WorkerStatus, start_background
    except ImportError:  # pragma: no cover - core.worker needs only core's dependencies
        return None, None
    status = WorkerStatus()
    try:
        return start_background(status=status), status
    except Exception as exc:  # no thread at all: the gateway serves without alerts
        logging.getLogger("costline.gateway").exception("the alert worker did not start")
        status.state, status.last_error = "stopped", f"{type(exc).__name__}: {exc}"
        return None, status


def warm() -> None:
    """Load the tokenizers and the JSON codecs now, not on the first request."""
    from core import tokens

    for model in ("gpt-4o-mini", "gpt-4", "claude-3-5-haiku"):
        tokens.count_messages(model, [Message("user", "warm up")])


__all__ = ["Gateway", "build_app", "default_router"]
