"""The start of every call: validate the request, apply its task policy, then steps 1
(sampling gate), 2 (cache) and 4 (route, counting the prompt as step 3 does). The result is
the call's state, or the answer when the gate or the cache already has one."""

from __future__ import annotations

from dataclasses import replace

from core.control import RoutingPolicy
from core.errors import BadRequest, CostlineError
from core.names import name_problem
from core.types import ChatRequest, Completion
from core.validate import check_request, loggable

from . import cache, gate
from .context import Context
from .record import record_error
from .route import route
from .state import Call

__all__ = ["apply_policy", "start", "validate"]

ROLES = frozenset({"system", "user", "assistant", "tool"})
EMPTY = "messages: empty; a chat request needs at least one message"


def start(ctx: Context, req: ChatRequest, *, flushed: bool = False) -> Call | Completion:
    """``flushed``: the one call of a LOW sampling batch (the gate already decided it)."""
    try:
        check_request(req)  # a malformed request: BadRequest naming the field, nothing spent
    except BadRequest as exc:
        safe = loggable(req)  # logged without its bad bytes
        if safe is not None:
            record_error(ctx, Call(safe, safe.model or f"task:{safe.task}"), None, exc, 0)
        raise
    ctx.log.check()  # UsageLogUnavailable (disk full) before any provider is paid
    call = Call(req, req.model or f"task:{req.task}")
    try:
        check_names(req)  # the rest of validate() is check_request's, done above
        if not req.messages:
            raise BadRequest(EMPTY, field="messages")
        policy = None
        ctl = ctx.controls
        if ctl is not None:
            snap = call.snap = ctl.snapshot()
            policy = ctl.policy(snap, req.task) if req.task else None
            if policy is not None:
                req = call.req = apply_policy(req, policy)
                call.degrade_to = policy.degrade_to
                call.requested_model = req.model or policy.primary_model
            if flushed:
                call.gate_key = req.task  # its answer is the one later events reuse
                call.gate_scope = ctl.cache.tenant(req)  # of its own tenant
            early = (None if flushed else gate.gate(ctx, call)) or cache.lookup(ctx, call)
            if early is not None:
                gate.report(ctx, call)  # answered without a provider call
                return early
        route(ctx, call, policy)
    except CostlineError as exc:
        gate.report(ctx, call)
        record_error(ctx, call, None, exc, 0)
        raise
    return call


def validate(req: ChatRequest) -> None:
    """Reject malformed requests before any HTTP call, naming what is wrong."""
    check_names(req)
    if not req.messages:
        raise BadRequest(EMPTY, field="messages")
    for i, m in enumerate(req.messages):
        if m.role not in ROLES:
            where = f"messages[{i}].role"
            raise BadRequest(f"{where} {m.role!r} is not one of {sorted(ROLES)}", field=where)
        where = f"messages[{i}].content"
        if not isinstance(m.content, str):
            got = type(m.content).__name__
            raise BadRequest(f"{where} must be a str, got {got}", field=where)
        try:
            if not m.content.isascii():
                m.content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(
                f"{where} is not valid UTF-8 (position {exc.start})", field=where
            ) from None
    if req.max_tokens is not None and req.max_tokens < 1:
        raise BadRequest(f"max_tokens must be >= 1, got {req.max_tokens}", field="max_tokens")
    t = req.temperature
    if t is not None and not (0.0 <= t <= 2.0):
        raise BadRequest(f"temperature must be between 0 and 2, got {t}", field="temperature")


def check_names(req: ChatRequest) -> None:
    """org, project, user, task and app are names people read in the console: no control,
    bidi-override or zero-width characters (see core.names)."""
    for name in ("org", "project", "user", "task", "app"):
        value = getattr(req, name)
        if isinstance(value, str) and (problem := name_problem(value)):
            raise BadRequest(f"{name}: {problem}", field=name)


def apply_policy(req: ChatRequest, policy: RoutingPolicy) -> ChatRequest:
    """A task policy's criticality, max_tokens and prompt caching apply where the request
    sets none."""
    changes: dict[str, object] = {}
    if req.prompt_cache is None and policy.prompt_cache:
        changes["prompt_cache"] = policy.prompt_cache
    if req.criticality == "normal" and policy.criticality != "normal":
        changes["criticality"] = policy.criticality
    if req.max_tokens is None and policy.max_tokens:
        changes["max_tokens"] = policy.max_tokens
    return replace(req, **changes) if changes else req  # type: ignore[arg-type]
