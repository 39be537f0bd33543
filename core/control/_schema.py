"""The current schema, used to build queries (``_migrations.py`` creates it, frozen in time).

Money is integer picodollars (BIGINT); prices are integer picodollars per token (a price
override's rate that is not whole also as exact decimal text, ``*_exact``). Times are
UTC: ``timestamp with time zone`` on PostgreSQL, ISO text on SQLite (see ``UTCDateTime``).
A test checks that this file and the migrated database agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on every engine (SQLite would drop the offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # rowid alias on SQLite
metadata = sa.MetaData()


def col(name: str, type_: Any, nullable: bool = False, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=nullable, **kw)


migrations = sa.Table(
    "_migrations",
    metadata,
    col("name", sa.Text, primary_key=True),
    col("applied_at", UTCDateTime),
)
meta = sa.Table(
    "meta",
    metadata,
    col("id", sa.Integer, primary_key=True, autoincrement=False),
    col("version", sa.BigInteger),
)
budgets = sa.Table(
    "budgets",
    metadata,
    col("id", sa.Text, primary_key=True),
    col("name", sa.Text),
    col("scope", sa.Text),
    col("scope_value", sa.Text, True),
    col("period", sa.Text),
    col("limit_picousd", sa.BigInteger, True),
    col("limit_tokens", sa.BigInteger, True),
    col("soft_multiplier", sa.Double),
    col("thresholds_json", sa.Text),
    col("action", sa.Text),
    col("degrade_to", sa.Text, True),
    col("timezone", sa.Text),
    col("webhook_url", sa.Text, True),
    col("enabled", sa.Boolean),
    col("reset_generation", sa.Integer),
)
routing_policies = sa.Table(
    "routing_policies",
    metadata,
    col("task", sa.Text, primary_key=True),
    col("primary_model", sa.Text),
    col("fallbacks_json", sa.Text),
    col("degrade_to", sa.Text, True),
    col("criticality", sa.Text),
    col("strategy", sa.Text),
    col("weight_cost", sa.Double),
    col("weight_latency", sa.Double),
    col("weight_quality", sa.Double),
    col("cache_ttl_s", sa.Integer, True),
    col("personalised", sa.Boolean),
    col("max_tokens", sa.Integer, True),
    col("prompt_cache", sa.Text, True),
)
sampling_strategies = sa.Table(
    "sampling_strategies",
    metadata,
    col("key", sa.Text, primary_key=True),
    col("strategy", sa.Text),
    col("params_json", sa.Text),
    col("min_interval_s", sa.Double),
    col("batch_size", sa.Integer),
    col("batch_timeout_s", sa.Double),
    col("enabled", sa.Boolean),
)
cache_settings = sa.Table(
    "cache_settings",
    metadata,
    col("task", sa.Text, primary_key=True),
    col("ttl_s", sa.Integer),
    col("enabled", sa.Boolean),
    col("semantic_threshold", sa.Double, True),
)
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    col("id", sa.Text, primary_key=True),
    col("scope", sa.Text),
    col("scope_value", sa.Text, True),
    col("metric", sa.Text),
    col("limit_value", sa.BigInteger),
    col("window_s", sa.Integer),
    col("algorithm", sa.Text),
    col("burst", sa.BigInteger, True),
    col("enabled", sa.Boolean),
)
price_overrides = sa.Table(
    "price_overrides",
    metadata,
    col("provider", sa.Text, primary_key=True),
    col("model", sa.Text, primary_key=True),
    col("effective_from", sa.Date, primary_key=True),
    col("input_picousd_per_token", sa.BigInteger),
    col("cached_input_picousd_per_token", sa.BigInteger, True),
    col("cache_write_picousd_per_token", sa.BigInteger, True),
    col("output_picousd_per_token", sa.BigInteger),
    col("reasoning_picousd_per_token", sa.BigInteger, True),
    col("note", sa.Text),
    # m010: the exact rate (decimal pUSD per token) when it is not whole; NULL: the int is
    col("input_picousd_per_token_exact", sa.Text, True),
    col("cached_input_picousd_per_token_exact", sa.Text, True),
    col("cache_write_picousd_per_token_exact", sa.Text, True),
    col("output_picousd_per_token_exact", sa.Text, True),
    col("reasoning_picousd_per_token_exact", sa.Text, True),
)
model_scores = sa.Table(
    "model_scores",
    metadata,
    col("model", sa.Text, primary_key=True),
    col("quality", sa.Double),
    col("note", sa.Text),
)
users = sa.Table(
    "users",
    metadata,
    col("username", sa.Text, primary_key=True),
    col("password_hash", sa.Text),
    col("role", sa.Text),
    col("failed_attempts", sa.Integer),
    col("locked_until", UTCDateTime, True),
    col("created_at", UTCDateTime),
    col("disabled", sa.Boolean),
    col("must_change_password", sa.Boolean, server_default=sa.false()),  # m008
)
audit_log = sa.Table(
    "audit_log",
    metadata,
    col("id", BigId, primary_key=True, autoincrement=True),
    col("ts", UTCDateTime),
    col("actor", sa.Text),
    col("action", sa.Text),
    col("entity", sa.Text),
    col("entity_id", sa.Text),
    col("before_json", sa.Text, True),
    col("after_json", sa.Text, True),
)
alerts = sa.Table(
    "alerts",
    metadata,
    col("id", BigId, primary_key=True, autoincrement=True),
    col("ts", UTCDateTime),
    col("kind", sa.Text),
    col("budget_id", sa.Text),
    col("window_key", sa.Text),
    col("threshold_pct", sa.Integer),
    col("spent_picousd", sa.BigInteger, True),
    col("limit_picousd", sa.BigInteger, True),
    col("spent_tokens", sa.BigInteger, True),
    col("limit_tokens", sa.BigInteger, True),
    col("message", sa.Text),
    col("delivered", sa.Boolean),
    col("delivery_error", sa.Text, True),
    col("acked_by", sa.Text, True),  # m002
    col("acked_at", UTCDateTime, True),  # m002
    col("severity", sa.Text, True),  # m006: info | warning | critical
    col("link", sa.Text, True),  # m006: the console page that explains it
    col("notify_state", sa.Text, True),  # m006: pending | sending | sent | failed | skipped
    col("notify_attempts", sa.Integer, True),
    col("notify_next_at", UTCDateTime, True),
    col("notify_error", sa.Text, True),
    col("notified_at", UTCDateTime, True),
    col("notify_json", sa.Text, True),  # m006: outcome per channel
)
alert_mutes = sa.Table(  # m006: a muted series is recorded but not notified until `until`
    "alert_mutes",
    metadata,
    col("kind", sa.Text, primary_key=True),
    col("subject", sa.Text, primary_key=True),
    col("until", UTCDateTime),
    col("created_by", sa.Text),
    col("created_at", UTCDateTime),
)
leases = sa.Table(  # m006: one holder at a time (the alert worker)
    "leases",
    metadata,
    col("name", sa.Text, primary_key=True),
    col("holder", sa.Text),
    col("expires_at", UTCDateTime),
)
api_tokens = sa.Table(  # m005: HMAC-SHA256 of each token (peppered); never the token
    "api_tokens",
    metadata,
    col("id", sa.Text, primary_key=True),
    col("username", sa.Text),
    col("name", sa.Text),
    col("token_hash", sa.Text),
    col("prefix", sa.Text),
    col("created_at", UTCDateTime),
    col("created_by", sa.Text),
    col("expires_at", UTCDateTime, True),
    col("last_used_at", UTCDateTime, True),
    col("revoked_at", UTCDateTime, True),
    col("revoked_by", sa.Text, True),
)
settings = sa.Table(
    "settings",
    metadata,
    col("key", sa.Text, primary_key=True),
    col("value_json", sa.Text),
)
data_loads = sa.Table(  # m003: CSV imports and the demo data set
    "data_loads",
    metadata,
    col("id", sa.Text, primary_key=True),  # "import:<sha256 of the file>" or "demo"
    col("kind", sa.Text),  # import | demo
    col("name", sa.Text),
    col("rows", sa.BigInteger),
    col("cost_picousd", sa.BigInteger, True),
    col("actor", sa.Text),
    col("created_at", UTCDateTime),
    col("details_json", sa.Text),
    sa.Index("ix_data_loads_kind", "kind"),
)
virtual_keys = sa.Table(  # m007: the gateway's virtual keys (a keyed hash, never the secret)
    "virtual_keys",
    metadata,
    col("name", sa.Text, primary_key=True),
    col("prefix", sa.Text),  # the secret's first characters, shown to tell keys apart
    col("key_hash", sa.Text),  # HMAC-SHA256 of the secret with the server's pepper (hex)
    col("org", sa.Text, True),
    col("project", sa.Text, True),
    col("user", sa.Text, True),
    col("models_json", sa.Text),  # [] = every model
    col("created_at", UTCDateTime),
    col("created_by", sa.Text),
    col("expires_at", UTCDateTime, True),
    col("revoked_at", UTCDateTime, True),
    col("revoked_by", sa.Text, True),
    sa.UniqueConstraint("key_hash", name="uq_virtual_keys_hash"),
)
login_throttle = sa.Table(  # m008: failed sign-ins per client and username (see auth.py)
    "login_throttle",
    metadata,
    col("client", sa.Text, primary_key=True),
    col("username", sa.Text, primary_key=True),
    col("failures", sa.Integer),
    col("locked_until", UTCDateTime, True),
    col("updated_at", UTCDateTime),
)
