"""ControlPlane: read and write everything people edit in the console (see ``_base.py``
for what every write does)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.errors import ConfigError

from . import _rows as rows
from . import _schema as s
from . import _validate as v
from . import auth
from ._engine import read_tx
from ._inbox import AlertInbox
from ._keys import KeyStore
from ._models import (
    DEFAULT_SETTINGS,
    Actor,
    AuditEntry,
    Budget,
    CacheSetting,
    ModelScore,
    PriceOverride,
    RateLimit,
    RoutingPolicy,
    SamplingStrategy,
    User,
)
from ._redact import is_redacted, redact_url
from ._snapshot import ControlSnapshot, deep_freeze
from ._tokens import TokenStore

_MISSING: Any = object()


class ControlPlane(KeyStore, AlertInbox, TokenStore):
    """The control-plane store. ``model_exists`` (e.g. ``catalog.has``) guards model names.

    ``ControlPlane(url=None, *, model_exists=None, auto_migrate=True, now=None)``: the URL
    comes from the argument, else ``COSTLINE_CONTROL_URL``, else SQLite in $COSTLINE_HOME.
    """

    def budgets(self) -> list[Budget]:
        return self._all(rows.BUDGET)

    def budget(self, budget_id: str) -> Budget | None:
        return self._get(rows.BUDGET, {"id": budget_id})

    def policies(self) -> list[RoutingPolicy]:
        return self._all(rows.POLICY)

    def sampling(self) -> list[SamplingStrategy]:
        return self._all(rows.SAMPLING)

    def cache_settings(self) -> list[CacheSetting]:
        return self._all(rows.CACHE)

    def rate_limits(self) -> list[RateLimit]:
        return self._all(rows.RATE_LIMIT)

    def price_overrides(self) -> list[PriceOverride]:
        return self._all(rows.PRICE)

    def model_scores(self) -> list[ModelScore]:
        return self._all(rows.SCORE)

    def users(self) -> list[User]:
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(s.users).order_by(s.users.c.username)).mappings()
            return [rows.user_from_row(r) for r in result]

    def audit(
        self,
        limit: int = 100,
        offset: int = 0,
        entity: str | None = None,
        entity_id: str | None = None,
        *,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEntry]:
        """Newest first; ``since``/``until``: the time range [since, until)."""
        a = s.audit_log
        stmt = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        for column, value in (("entity", entity), ("entity_id", entity_id), ("actor", actor)):
            if value is not None:
                stmt = stmt.where(a.c[column] == value)
        if since is not None:
            stmt = stmt.where(a.c.ts >= since)
        if until is not None:
            stmt = stmt.where(a.c.ts < until)
        with self.engine.connect() as conn:
            return [rows.audit_from_row(r) for r in conn.execute(stmt.offset(offset)).mappings()]

    def last_resets(self, budget_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of these budgets was last reset (its newest ``budget.reset`` audit entry,
        however many other entries follow it); budgets never reset are left out."""
        if not budget_ids:
            return {}
        a = s.audit_log
        newest = (
            sa.select(sa.func.max(a.c.id))
            .where(a.c.entity == "budget", a.c.entity_id.in_(list(budget_ids)))
            .where(a.c.action == "budget.reset")
            .group_by(a.c.entity_id)
        )
        stmt = sa.select(a.c.entity_id, a.c.ts).where(a.c.id.in_(newest))
        with self.engine.connect() as conn:
            return {str(i): ts for i, ts in conn.execute(stmt)}

    def audit_facets(self) -> tuple[list[str], list[str]]:
        """The actors and the entity kinds the audit log names (for its filters)."""
        a = s.audit_log
        with self.engine.connect() as conn:
            actors = conn.execute(sa.select(a.c.actor).distinct().order_by(a.c.actor)).scalars()
            kinds = conn.execute(sa.select(a.c.entity).distinct().order_by(a.c.entity)).scalars()
            return [str(x) for x in actors], [str(x) for x in kinds]

    def audit_page(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        entity: str | None = None,
        entity_id: str | None = None,
        actor: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first, paged by id (``before_id``: the last id of the previous page)."""
        a = s.audit_log
        stmt = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        for column, value in (("entity", entity), ("entity_id", entity_id), ("actor", actor)):
            if value is not None:
                stmt = stmt.where(a.c[column] == value)
        if before_id is not None:
            stmt = stmt.where(a.c.id < before_id)
        with self.engine.connect() as conn:
            return [rows.audit_from_row(r) for r in conn.execute(stmt).mappings()]

    def settings(self, conn: Connection | None = None) -> dict[str, Any]:
        """Stored settings only (defaults are in ``DEFAULT_SETTINGS``)."""
        if conn is None:
            with self.engine.connect() as c:
                return self.settings(c)
        result = conn.execute(sa.select(s.settings.c.key, s.settings.c.value_json))
        return {k: json.loads(val) for k, val in result}

    def get_setting(self, key: str, default: Any = _MISSING) -> Any:
        """The stored value, else ``default``, else the built-in default (or None)."""
        with self.engine.connect() as conn:
            text = conn.scalar(sa.select(s.settings.c.value_json).where(s.settings.c.key == key))
        if text is not None:
            return json.loads(text)
        return DEFAULT_SETTINGS.get(key) if default is _MISSING else default

    def snapshot(self) -> ControlSnapshot:
        """Everything a router reads, at one version, in one transaction."""
        with read_tx(self.engine) as conn:
            version = conn.scalar(sa.select(s.meta.c.version).where(s.meta.c.id == 1)) or 0
            return ControlSnapshot(
                version=int(version),
                budgets=tuple(self._all(rows.BUDGET, conn)),
                policies=tuple(self._all(rows.POLICY, conn)),
                sampling=tuple(self._all(rows.SAMPLING, conn)),
                cache_settings=tuple(self._all(rows.CACHE, conn)),
                rate_limits=tuple(self._all(rows.RATE_LIMIT, conn)),
                price_overrides=tuple(self._all(rows.PRICE, conn)),
                model_scores=tuple(self._all(rows.SCORE, conn)),
                settings=deep_freeze(self.settings(conn)),
                keys=tuple(self.virtual_keys(conn)),
            )

    # ---- writes, one pair per entity ---------------------------------------------------------

    def upsert_budget(self, budget: Budget, actor: Actor) -> Budget:
        """Create or replace; an empty time zone takes the 'timezone' setting. The stored
        ``reset_generation`` is kept (only ``reset_budget`` changes it), and so is the stored
        ``webhook_url`` when its redacted form (what viewers read) is sent back."""
        budget = v.validate_budget(budget, model_exists=self.model_exists)

        def prepare(conn: Connection, before: Budget | None, b: Budget) -> Budget:
            tz = b.timezone or self._setting(conn, "timezone")
            generation = before.reset_generation if before is not None else 0
            url = _kept_webhook(b.webhook_url, None if before is None else before.webhook_url)
            return replace(b, timezone=tz, reset_generation=generation, webhook_url=url)

        return self._upsert(rows.BUDGET, budget, actor, prepare)

    def delete_budget(self, budget_id: str, actor: Actor) -> bool:
        return self._delete(rows.BUDGET, {"id": budget_id}, actor)

    def reset_budget(self, budget_id: str, actor: Actor) -> Budget:
        """Start a fresh window now: bump ``reset_generation`` so the window key changes."""
        with self._tx(actor, "budget") as conn:
            before = self._get(rows.BUDGET, {"id": budget_id}, conn)
            self._precondition(before)
            if before is None:
                raise ConfigError(f"id: no budget {budget_id!r}", field="id")
            after = replace(before, reset_generation=before.reset_generation + 1)
            conn.execute(
                s.budgets.update()
                .where(s.budgets.c.id == budget_id)
                .values(reset_generation=after.reset_generation)
            )
            self._audit(conn, actor, "budget.reset", "budget", budget_id, before, after)
        return after

    def upsert_policy(self, policy: RoutingPolicy, actor: Actor) -> RoutingPolicy:
        policy = v.validate_policy(policy, model_exists=self.model_exists)
        return self._upsert(rows.POLICY, policy, actor)

    def delete_policy(self, task: str, actor: Actor) -> bool:
        return self._delete(rows.POLICY, {"task": task}, actor)

    def upsert_sampling(self, strategy: SamplingStrategy, actor: Actor) -> SamplingStrategy:
        return self._upsert(rows.SAMPLING, v.validate_sampling(strategy), actor)

    def delete_sampling(self, key: str, actor: Actor) -> bool:
        return self._delete(rows.SAMPLING, {"key": key}, actor)

    def upsert_cache_setting(self, setting: CacheSetting, actor: Actor) -> CacheSetting:
        return self._upsert(rows.CACHE, v.validate_cache_setting(setting), actor)

    def delete_cache_setting(self, task: str, actor: Actor) -> bool:
        return self._delete(rows.CACHE, {"task": task}, actor)

    def upsert_rate_limit(self, limit: RateLimit, actor: Actor) -> RateLimit:
        return self._upsert(rows.RATE_LIMIT, v.validate_rate_limit(limit), actor)

    def delete_rate_limit(self, limit_id: str, actor: Actor) -> bool:
        return self._delete(rows.RATE_LIMIT, {"id": limit_id}, actor)

    def upsert_price_override(
        self, override: PriceOverride, actor: Actor, *, new_model: bool = False
    ) -> PriceOverride:
        """``new_model=True`` allows pricing a model the catalog does not know."""
        override = v.validate_price_override(
            override, model_exists=self.model_exists, new_model=new_model
        )
        return self._upsert(rows.PRICE, override, actor)

    def delete_price_override(
        self, provider: str, model: str, effective_from: date, actor: Actor
    ) -> bool:
        key = {"provider": provider, "model": model, "effective_from": effective_from}
        return self._delete(rows.PRICE, key, actor)

    def upsert_model_score(self, score: ModelScore, actor: Actor) -> ModelScore:
        score = v.validate_model_score(score, model_exists=self.model_exists)
        return self._upsert(rows.SCORE, score, actor)

    def delete_model_score(self, model: str, actor: Actor) -> bool:
        return self._delete(rows.SCORE, {"model": model}, actor)

    def set_setting(self, key: str, value: Any, actor: Actor) -> Any:
        value = v.validate_setting(key, value)
        text = rows.dumps(value)
        with self._tx(actor, "setting") as conn:
            old = conn.scalar(sa.select(s.settings.c.value_json).where(s.settings.c.key == key))
            self._precondition(None if old is None else {"key": key, "value": json.loads(old)})
            if old == text:
                return value
            if old is None:
                conn.execute(s.settings.insert().values(key=key, value_json=text))
            else:
                conn.execute(
                    s.settings.update().where(s.settings.c.key == key).values(value_json=text)
                )
            before = None if old is None else {"value": json.loads(old)}
            self._audit(conn, actor, "setting.set", "setting", key, before, {"value": value})
        return value

    def delete_setting(self, key: str, actor: Actor) -> bool:
        with self._tx(actor, "setting") as conn:
            old = conn.scalar(sa.select(s.settings.c.value_json).where(s.settings.c.key == key))
            self._precondition(None if old is None else {"key": key, "value": json.loads(old)})
            if old is None:
                return False
            conn.execute(s.settings.delete().where(s.settings.c.key == key))
            self._audit(
                conn, actor, "setting.delete", "setting", key, {"value": json.loads(old)}, None
            )
        return True

    def record_action(
        self, actor: Actor, entity: str, action: str, entity_id: str, details: Any
    ) -> None:
        """Audit an action on live state that has no row here (e.g. resetting rate-limit
        buckets), after checking the actor may change ``entity``."""
        with self._tx(actor, entity) as conn:
            self._audit(conn, actor, action, entity, entity_id, None, details, bump=False)

    # ---- users (admin only; see auth.py) ------------------------------------------------------

    def create_user(self, username: str, password: str, role: str, actor: Actor) -> User:
        return auth.create_user(self, username, password, role, actor)

    def set_password(self, username: str, password: str, actor: Actor) -> None:
        auth.set_password(self, username, password, actor)

    def set_role(self, username: str, role: str, actor: Actor) -> User:
        return auth.set_role(self, username, role, actor)

    def disable_user(self, username: str, actor: Actor, disabled: bool = True) -> User:
        return auth.disable_user(self, username, actor, disabled)

    def authenticate(self, username: str, password: str, client: str | None = None) -> Actor:
        return auth.authenticate(self, username, password, client)

    def unlock_user(self, username: str, actor: Actor) -> User:
        return auth.unlock_user(self, username, actor)

    def must_change_password(self, username: str) -> bool:
        return auth.must_change_password(self, username)

    def change_own_password(
        self, username: str, current: str, new: str, client: str | None = None
    ) -> None:
        auth.change_own_password(self, username, current, new, client)


def _kept_webhook(given: str | None, stored: str | None) -> str | None:
    """A budget's webhook URL to store: ``given``, or ``stored`` when ``given`` is its
    redacted form (a copy read by a viewer, sent back). Any other redacted form is refused:
    stored, it would be a URL that posts nowhere."""
    if given is None or not is_redacted(given):
        return given
    if stored is not None and redact_url(stored) == given:
        return stored
    raise ConfigError(
        f"webhook_url: {given!r} is a redacted URL (as viewers read it), not this budget's:"
        " send the full URL, or null to remove it",
        field="webhook_url",
    )
