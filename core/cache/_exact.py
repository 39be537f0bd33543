"""ResponseCache: step 2 of a call, an exact cache over the normalised request.

When a request is cached (``key(req)`` is not None): ``req.cache`` is true, the key sees all
its answer depends on (no wire field in ``extra`` but ``user``, no message ``extra`` such as
an image or tool calls: ``keyable``), the request is not ``personal``, its task is not
personalised (``RoutingPolicy.personalised``) and its TTL is above 0. TTL precedence, first
match wins:

    | source                                     | example                          |
    |--------------------------------------------|----------------------------------|
    | CacheSetting(enabled=False) for the task   | never cached, whatever else says |
    | req.ttl                                    | also a freshness bound on reads  |
    | RoutingPolicy.cache_ttl_s of the task      |                                  |
    | CacheSetting.ttl_s of the task             |                                  |
    | seed table DEFAULT_TTLS                    | chat 5 min ... translation 24 h  |
    | default_ttl_s                              | 24 h                             |

Tenants: entries are scoped by the control-plane setting ``cache_scope`` (``ResponseCache.tenant``):

    | cache_scope     | who shares an answer                                                |
    |-----------------|---------------------------------------------------------------------|
    | org (default)   | the virtual keys bound to one org; a key bound to no org: only itself |
    | key             | one virtual key                                                     |
    | global          | everyone (the behaviour before scoping; one company, one tenant)    |

A call without a virtual key (the library) is scoped by its ``org`` ('org') or shares the
global namespace. The tenant is in the exact key and in the semantic index's scope, so no
backend (memory, Redis, semantic) serves one tenant another's answer.

Expiry is checked against ``clock`` (stored in the entry; by default ``core.clock``, so a test
that pins or moves the clock ages entries with it), and the state also drops the entry after
the TTL. A value that cannot be decoded is a miss, logged once as a warning, and deleted.
Counters (``State.incr``): ``cache.hit.<task>``, ``cache.miss.<task>``, ``cache.bypass.<task>``,
``cache.write.<task>``, ``cache.semantic_hit.<task>``, ``cache.corrupt.<task>``; requests
without a task count under ``-``. With a state that has ``cache_get_counted`` /
``cache_set_counted`` (all bundled ones) the count rides along with the read or write: one
round trip each with Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from core import clock as clock_
from core.cache._codec import CachedAnswer, decode, encode
from core.cache._key import cache_key, digest, keyable
from core.control import DEFAULT_CACHE_TTLS, CacheSetting, RoutingPolicy
from core.state import State
from core.types import ChatRequest, Completion

if TYPE_CHECKING:
    from core.cache._semantic import SemanticCache
    from core.control import ControlSnapshot

log = logging.getLogger(__name__)

# nself-chat seed table (plus 'summarize', the verb form teams use for the same task).
DEFAULT_TTLS: Mapping[str, float] = {**DEFAULT_CACHE_TTLS, "summarize": 1_800}
SCOPES = ("org", "key", "global")
KINDS = ("hit", "miss", "bypass", "write", "semantic_hit", "corrupt")
WARN_EVERY_S = 60.0  # state errors: at most one warning a minute


class Unset:
    """Marks an argument not given (None is a meaningful key: 'not cacheable')."""


UNSET = Unset()


class ResponseCache:
    """Thread-safe (all state lives in ``State``; the semantic index has its own lock)."""

    def __init__(
        self,
        state: State,
        *,
        settings: Mapping[str, CacheSetting] | None = None,
        policies: Mapping[str, RoutingPolicy] | None = None,
        default_ttl_s: float = 86_400,
        clock: Callable[[], float] = clock_.timestamp,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.state = state
        self.settings: Mapping[str, CacheSetting] = dict(settings or {})
        self.policies: Mapping[str, RoutingPolicy] = dict(policies or {})
        self.default_ttl_s = default_ttl_s
        self.clock = clock
        self.semantic = semantic
        self.scope = "org"  # the control plane's cache_scope (apply)
        self._key_orgs: Mapping[str, str | None] = {}  # virtual key name -> its bound org
        self._warned_at = -WARN_EVERY_S

    def configure(
        self,
        *,
        settings: Mapping[str, CacheSetting] | None = None,
        policies: Mapping[str, RoutingPolicy] | None = None,
    ) -> None:
        """Replace the per-task settings and/or policies (None keeps the current ones)."""
        if settings is not None:
            self.settings = dict(settings)
        if policies is not None:
            self.policies = dict(policies)

    def apply(self, snapshot: ControlSnapshot) -> None:
        """Take cache settings and policies from a control-plane snapshot."""
        self.configure(
            settings={c.task: c for c in snapshot.cache_settings},
            policies={p.task: p for p in snapshot.policies},
        )
        scope = snapshot.settings.get("cache_scope", "org")
        self.scope = scope if scope in SCOPES else "org"
        self._key_orgs = {k.name: k.org for k in snapshot.keys}

    def tenant(self, req: ChatRequest) -> str:
        """Who may share this request's cached answer ("" = everyone), by ``self.scope``.
        A virtual key's tenant is its bound org (never an org its request claims: a key bound
        to no org may name any), or the key itself."""
        if self.scope == "global":
            return ""
        name = req.key
        if name is None:
            return "org:" + req.org if self.scope == "org" and req.org else ""
        if self.scope == "org":
            org = self._key_orgs.get(name)
            if org:
                return "org:" + org
        return "key:" + name

    # ---- what is cached, for how long ---------------------------------------------------
    def ttl_for(self, req: ChatRequest) -> float:
        """Seconds to keep this request's answer; 0: do not cache it."""
        task = req.task or ""
        setting = self.settings.get(task)
        if setting is not None and not setting.enabled:
            return 0.0
        if req.ttl is not None:
            return max(0.0, float(req.ttl))
        policy = self.policies.get(task)
        if policy is not None and policy.cache_ttl_s is not None:
            return float(policy.cache_ttl_s)
        if setting is not None:
            return float(setting.ttl_s)
        return float(DEFAULT_TTLS.get(task, self.default_ttl_s))

    def personalised(self, req: ChatRequest) -> bool:
        if req.personal:
            return True
        task = req.task or ""
        policy = self.policies.get(task)
        setting = self.settings.get(task)
        return bool(
            (policy is not None and policy.personalised) or getattr(setting, "personalised", False)
        )

    def key(self, req: ChatRequest) -> str | None:
        """The state key, or None when this request must not be cached or served a cached
        answer (cache=False, wire fields the key cannot see, personal, personalised task,
        TTL 0)."""
        if not req.cache or not keyable(req) or self.personalised(req) or self.ttl_for(req) <= 0:
            return None
        return cache_key(req, self.tenant(req))

    @staticmethod
    def digest(req: ChatRequest) -> str:
        """Hash of the normalised request, also for personal ones (e.g. a log's prompt hash)."""
        return digest(req)

    # ---- read and write ----------------------------------------------------------------
    def get(self, req: ChatRequest, *, key: str | None | Unset = UNSET) -> CachedAnswer | None:
        """The cached answer for ``req``, or None. ``key``: ``self.key(req)`` when the caller
        already has it (the router computes it once per call, for get and put)."""
        label = req.task or "-"
        k = self.key(req) if isinstance(key, Unset) else key
        if k is None:
            self._count("bypass", label)
            return None
        counted = getattr(self.state, "cache_get_counted", None)
        if self.semantic is None and counted is not None:
            return self._read_counted(counted, k, req, label)
        hit = self._read(k, req, label)
        if hit is None and self.semantic is not None:
            threshold = self._semantic_threshold(req)
            found = (
                None if threshold is None else self.semantic.find(req, threshold, self.tenant(req))
            )
            if found is not None:
                hit = self._read(found[0], req, label)
                if hit is None:
                    self.semantic.discard(found[0])
                else:
                    hit = _with(hit, similarity=found[1])
                    self._count("semantic_hit", label)
                    return hit
        self._count("hit" if hit is not None else "miss", label)
        return hit

    def put(self, req: ChatRequest, done: Completion, *, key: str | None | Unset = UNSET) -> bool:
        """Store ``done`` for ``req``; False when not cacheable (or already a cached answer).
        ``key``: as for ``get``."""
        k = self.key(req) if isinstance(key, Unset) else key
        if k is None or done.cache_hit or not done.ai_called:
            return False
        ttl = self.ttl_for(req)
        now = self.clock()
        label = req.task or "-"
        counted = getattr(self.state, "cache_set_counted", None)
        try:
            value = encode(done, now, now + ttl)
            if counted is not None:  # value and counter in one round trip
                counted(k, value, ttl, f"cache.write.{label}")
            else:
                self.state.cache_set(k, value, ttl)
        except Exception as exc:  # a cache must never fail the call
            self._warn("cache write failed: %s", exc)
            return False
        if counted is None:
            self._count("write", label)
        if self.semantic is not None and self._semantic_threshold(req) is not None:
            self.semantic.add(req, k, self.tenant(req))
        return True

    def invalidate(self, req: ChatRequest) -> None:
        k = self.key(req)
        if k is not None:
            self.state.cache_delete(k)

    def _read_counted(
        self, counted: Callable[[str, str, str], bytes | None], k: str, req: ChatRequest, label: str
    ) -> CachedAnswer | None:
        """Exact lookup whose hit/miss count rides along with the read (one round trip); the
        rare value found but not served (corrupt, expired, too old) is re-counted a miss."""
        try:
            raw = counted(k, f"cache.hit.{label}", f"cache.miss.{label}")
        except Exception as exc:
            self._warn("cache read failed: %s", exc)
            self._count("miss", label)
            return None
        if raw is None:
            return None
        hit = self._decode(raw, k, req, label)
        if hit is None:
            self._count("hit", label, -1)
            self._count("miss", label)
        return hit

    def _read(self, k: str, req: ChatRequest, label: str) -> CachedAnswer | None:
        try:
            raw = self.state.cache_get(k)
        except Exception as exc:
            self._warn("cache read failed: %s", exc)
            return None
        if raw is None:
            return None
        return self._decode(raw, k, req, label)

    def _decode(self, raw: bytes, k: str, req: ChatRequest, label: str) -> CachedAnswer | None:
        now = self.clock()
        try:
            hit = decode(raw, now)
        except ValueError as exc:
            log.warning("corrupt cached value for task %s (%s): treated as a miss", label, exc)
            self._count("corrupt", label)
            self._delete(k)
            return None
        if hit is None:  # another format version
            return None
        if now >= hit.expires:
            self._delete(k)
            return None
        if req.ttl is not None and hit.age_s > req.ttl:
            return None  # older than this request accepts
        return hit

    def _semantic_threshold(self, req: ChatRequest) -> float | None:
        """The task's CacheSetting.semantic_threshold (None there: exact only); tasks without
        a setting use the SemanticCache's own threshold."""
        if self.semantic is None:
            return None
        setting = self.settings.get(req.task or "")
        return self.semantic.threshold if setting is None else setting.semantic_threshold

    # ---- counters ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """{'hits', 'misses', 'hit_rate', ..., 'by_task': {task: {...}}} from the counters
        (shared across processes with Redis)."""
        by_task: dict[str, dict[str, Any]] = {}
        for name, n in self.state.counters("cache.").items():
            _, kind, task = name.split(".", 2)
            if kind in KINDS:
                by_task.setdefault(task, dict.fromkeys(KINDS, 0))[kind] = n
        total = dict.fromkeys(KINDS, 0)
        for row in by_task.values():
            for kind in KINDS:
                total[kind] += row[kind]
            row["hit_rate"] = _rate(row)
        return {
            "hits": total["hit"] + total["semantic_hit"],
            "misses": total["miss"],
            "hit_rate": _rate(total),
            "bypassed": total["bypass"],
            "writes": total["write"],
            "semantic_hits": total["semantic_hit"],
            "corrupt": total["corrupt"],
            "by_task": by_task,
        }

    def _count(self, kind: str, label: str, n: int = 1) -> None:
        try:
            self.state.incr(f"cache.{kind}.{label}", n)
        except Exception as exc:
            self._warn("cache counter failed: %s", exc)

    def _delete(self, k: str) -> None:
        try:
            self.state.cache_delete(k)
        except Exception as exc:
            self._warn("cache delete failed: %s", exc)

    def _warn(self, msg: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(msg, exc)


def _rate(row: Mapping[str, Any]) -> float:
    hits = row["hit"] + row["semantic_hit"]
    looked = hits + row["miss"]
    return hits / looked if looked else 0.0


def _with(hit: CachedAnswer, **changes: Any) -> CachedAnswer:
    return replace(hit, **changes)
