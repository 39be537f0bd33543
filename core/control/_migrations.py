"""Versioned migrations: plain functions applied in order, recorded in ``_migrations``.

Each migration runs in its own transaction together with the row that records it, under a
lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock) so that several processes starting
at once apply each migration exactly once. Migrations describe the schema as it was when they
were written (they never import ``_schema``), only add, and never drop user data.
To change the schema: append ``m00N_what(conn)`` to ``MIGRATIONS`` and update ``_schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core import clock

from ._engine import write_tx

MIGRATION_LOCK_KEY = 0x636F73746C696E  # 'costlin': advisory lock id on PostgreSQL
TS = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _cols(*spec: tuple[str, Any, bool]) -> list[sa.Column[Any]]:
    return [sa.Column(name, t, nullable=null) for name, t, null in spec]


def m001_initial(conn: Connection) -> None:
    md = sa.MetaData()
    T, INT, B, D, BOOL = sa.Text, sa.Integer, sa.BigInteger, sa.Double, sa.Boolean  # noqa: N806
    sa.Table(
        "meta",
        md,
        sa.Column("id", INT, primary_key=True, autoincrement=False),
        sa.Column("version", B, nullable=False),
    )
    sa.Table(
        "budgets",
        md,
        sa.Column("id", T, primary_key=True),
        *_cols(
            ("name", T, False),
            ("scope", T, False),
            ("scope_value", T, True),
            ("period", T, False),
            ("limit_picousd", B, True),
            ("limit_tokens", B, True),
            ("soft_multiplier", D, False),
            ("thresholds_json", T, False),
            ("action", T, False),
            ("degrade_to", T, True),
            ("timezone", T, False),
            ("webhook_url", T, True),
            ("enabled", BOOL, False),
            ("reset_generation", INT, False),
        ),
        sa.Index("ix_budgets_scope", "scope", "scope_value"),
    )
    sa.Table(
        "routing_policies",
        md,
        sa.Column("task", T, primary_key=True),
        *_cols(
            ("primary_model", T, False),
            ("fallbacks_json", T, False),
            ("degrade_to", T, True),
            ("criticality", T, False),
            ("strategy", T, False),
            ("weight_cost", D, False),
            ("weight_latency", D, False),
            ("weight_quality", D, False),
            ("cache_ttl_s", INT, True),
            ("personalised", BOOL, False),
            ("max_tokens", INT, True),
        ),
    )
    sa.Table(
        "sampling_strategies",
        md,
        sa.Column("key", T, primary_key=True),
        *_cols(
            ("strategy", T, False),
            ("params_json", T, False),
            ("min_interval_s", D, False),
            ("batch_size", INT, False),
            ("batch_timeout_s", D, False),
            ("enabled", BOOL, False),
        ),
    )
    sa.Table(
        "cache_settings",
        md,
        sa.Column("task", T, primary_key=True),
        *_cols(("ttl_s", INT, False), ("enabled", BOOL, False), ("semantic_threshold", D, True)),
    )
    sa.Table(
        "rate_limits",
        md,
        sa.Column("id", T, primary_key=True),
        *_cols(
            ("scope", T, False),
            ("scope_value", T, True),
            ("metric", T, False),
            ("limit_value", B, False),
            ("window_s", INT, False),
            ("algorithm", T, False),
            ("burst", B, True),
            ("enabled", BOOL, False),
        ),
    )
    sa.Table(
        "price_overrides",
        md,
        sa.Column("provider", T, primary_key=True),
        sa.Column("model", T, primary_key=True),
        sa.Column("effective_from", sa.Date, primary_key=True),
        *_cols(
            ("input_picousd_per_token", B, False),
            ("cached_input_picousd_per_token", B, True),
            ("cache_write_picousd_per_token", B, True),
            ("output_picousd_per_token", B, False),
            ("reasoning_picousd_per_token", B, True),
            ("note", T, False),
        ),
    )
    sa.Table(
        "model_scores",
        md,
        sa.Column("model", T, primary_key=True),
        *_cols(("quality", D, False), ("note", T, False)),
    )
    sa.Table(
        "users",
        md,
        sa.Column("username", T, primary_key=True),
        *_cols(
            ("password_hash", T, False),
            ("role", T, False),
            ("failed_attempts", INT, False),
            ("locked_until", TS, True),
            ("created_at", TS, False),
            ("disabled", BOOL, False),
        ),
    )
    sa.Table(
        "audit_log",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        *_cols(
            ("ts", TS, False),
            ("actor", T, False),
            ("action", T, False),
            ("entity", T, False),
            ("entity_id", T, False),
            ("before_json", T, True),
            ("after_json", T, True),
        ),
        sa.Index("ix_audit_log_ts", "ts"),
        sa.Index("ix_audit_log_entity", "entity", "entity_id"),
    )
    sa.Table(
        "alerts",
        md,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        *_cols(
            ("ts", TS, False),
            ("kind", T, False),
            ("budget_id", T, False),
            ("window_key", T, False),
            ("threshold_pct", INT, False),
            ("spent_picousd", B, True),
            ("limit_picousd", B, True),
            ("spent_tokens", B, True),
            ("limit_tokens", B, True),
            ("message", T, False),
            ("delivered", BOOL, False),
            ("delivery_error", T, True),
        ),
        sa.UniqueConstraint(
            "kind", "budget_id", "window_key", "threshold_pct", name="uq_alerts_once"
        ),
        sa.Index("ix_alerts_ts", "ts"),
    )
    sa.Table(
        "settings",
        md,
        sa.Column("key", T, primary_key=True),
        sa.Column("value_json", T, nullable=False),
    )
    md.create_all(conn)
    conn.execute(sa.text("INSERT INTO meta (id, version) VALUES (1, 0)"))


def m002_alert_ack(conn: Connection) -> None:
    """Engineers acknowledge alerts in the console: who and when."""
    ts = TS.compile(dialect=conn.dialect)
    conn.execute(sa.text("ALTER TABLE alerts ADD COLUMN acked_by TEXT"))
    conn.execute(sa.text(f"ALTER TABLE alerts ADD COLUMN acked_at {ts}"))


def m003_data_loads(conn: Connection) -> None:
    """Data sets loaded into the usage log (CSV imports, the demo): what, by whom, and the
    content hash that makes re-importing the same file a no-op."""
    md = sa.MetaData()
    T, B = sa.Text, sa.BigInteger  # noqa: N806
    sa.Table(
        "data_loads",
        md,
        sa.Column("id", T, primary_key=True),
        *_cols(
            ("kind", T, False),
            ("name", T, False),
            ("rows", B, False),
            ("cost_picousd", B, True),
            ("actor", T, False),
            ("created_at", TS, False),
            ("details_json", T, False),
        ),
        sa.Index("ix_data_loads_kind", "kind"),
    )
    md.create_all(conn)


def m004_prompt_cache(conn: Connection) -> None:
    """A routing policy may turn on provider prompt caching ("5m" or "1h"; NULL: off)."""
    conn.execute(sa.text("ALTER TABLE routing_policies ADD COLUMN prompt_cache TEXT"))


def m005_api_tokens(conn: Connection) -> None:
    """API tokens of console users: only an HMAC of the token is stored (unique, so a
    lookup is one index probe); revoked tokens stay for the record."""
    md = sa.MetaData()
    T = sa.Text  # noqa: N806
    sa.Table(
        "api_tokens",
        md,
        sa.Column("id", T, primary_key=True),
        *_cols(
            ("username", T, False),
            ("name", T, False),
            ("token_hash", T, False),
            ("prefix", T, False),
            ("created_at", TS, False),
            ("created_by", T, False),
            ("expires_at", TS, True),
            ("last_used_at", TS, True),
            ("revoked_at", TS, True),
            ("revoked_by", T, True),
        ),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_hash"),
        sa.Index("ix_api_tokens_username", "username"),
    )
    md.create_all(conn)


def m006_alert_inbox(conn: Connection) -> None:
    """The alerts inbox and always-on delivery: severity, a link to the page that explains
    the alert, the notification outbox state per alert, muted series, and the leases that
    let exactly one worker scan at a time."""
    ts = TS.compile(dialect=conn.dialect)
    for name, kind in (
        ("severity", "TEXT"),
        ("link", "TEXT"),
        ("notify_state", "TEXT"),
        ("notify_attempts", "INTEGER"),
        ("notify_next_at", ts),
        ("notify_error", "TEXT"),
        ("notified_at", ts),
        ("notify_json", "TEXT"),
    ):
        conn.execute(sa.text(f"ALTER TABLE alerts ADD COLUMN {name} {kind}"))
    conn.execute(sa.text("CREATE INDEX ix_alerts_notify ON alerts (notify_state, notify_next_at)"))
    md = sa.MetaData()
    T = sa.Text  # noqa: N806
    sa.Table(
        "alert_mutes",
        md,
        sa.Column("kind", T, primary_key=True),
        sa.Column("subject", T, primary_key=True),
        *_cols(("until", TS, False), ("created_by", T, False), ("created_at", TS, False)),
    )
    sa.Table(
        "leases",
        md,
        sa.Column("name", T, primary_key=True),
        *_cols(("holder", T, False), ("expires_at", TS, False)),
    )
    md.create_all(conn)


def m007_virtual_keys(conn: Connection) -> None:
    """The gateway's virtual keys: a keyed hash of the secret (never the secret), its shown
    prefix, the org/project/user it speaks for, allowed models, expiry and revocation."""
    md = sa.MetaData()
    T = sa.Text  # noqa: N806
    sa.Table(
        "virtual_keys",
        md,
        sa.Column("name", T, primary_key=True),
        *_cols(
            ("prefix", T, False),
            ("key_hash", T, False),
            ("org", T, True),
            ("project", T, True),
            ("user", T, True),
            ("models_json", T, False),
            ("created_at", TS, False),
            ("created_by", T, False),
            ("expires_at", TS, True),
            ("revoked_at", TS, True),
            ("revoked_by", T, True),
        ),
        sa.UniqueConstraint("key_hash", name="uq_virtual_keys_hash"),
    )
    md.create_all(conn)


def m008_login_security(conn: Connection) -> None:
    """Sign-in hardening: a user may have to change the password at the next sign-in (the
    generated first admin password), and failed sign-ins are counted per client and
    username, so one client cannot lock an account for everyone."""
    conn.execute(
        sa.text("ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE")
    )
    md = sa.MetaData()
    sa.Table(
        "login_throttle",
        md,
        sa.Column("client", sa.Text, primary_key=True),
        sa.Column("username", sa.Text, primary_key=True),
        *_cols(
            ("failures", sa.Integer, False), ("locked_until", TS, True), ("updated_at", TS, False)
        ),
    )
    md.create_all(conn)


def m009_redact_audit_webhooks(conn: Connection) -> None:
    """Webhook URLs (they hold secrets) in the audit rows written before the audit redacted
    them: each becomes ``scheme://host/[redacted]#<digest>`` (``_redact.py``). Safe: nothing reads a
    URL back from the audit (it only shows what changed; the settings and budgets keep the
    real URLs), and the digest still tells two URLs, and a change of one, apart. Only rows
    that name a webhook are rewritten; ids, times, actors and actions stay."""
    import json

    from ._redact import redact_webhooks

    audit = sa.table(
        "audit_log", sa.column("id"), sa.column("before_json"), sa.column("after_json")
    )
    like = sa.or_(
        audit.c.before_json.like("%webhook_url%"), audit.c.after_json.like("%webhook_url%")
    )
    found = conn.execute(
        sa.select(audit.c.id, audit.c.before_json, audit.c.after_json).where(like)
    ).all()
    for rid, before, after in found:
        values = {}
        for name, text in (("before_json", before), ("after_json", after)):
            if text is None:
                continue
            value = json.loads(text)
            redacted = redact_webhooks(value)
            if redacted != value:
                values[name] = json.dumps(redacted, sort_keys=True, separators=(",", ":"))
        if values:
            conn.execute(audit.update().where(audit.c.id == rid).values(**values))


def m010_exact_price_overrides(conn: Connection) -> None:
    """A price override holds any rate the catalog holds, exactly: next to each rate's
    integer column (pUSD per token), a text column with the exact rate as a decimal number
    of pUSD per token when it is not whole (LiteLLM's 4.6875e-09 USD per token is
    ``4687.5``; at most 12 decimals, as the catalog). The integer column then holds the rate
    rounded half to even, so SQL over it stays a whole-pUSD approximation. Existing rows
    are not touched: NULL means the integer column is the exact rate, as before."""
    for name in ("input", "cached_input", "cache_write", "output", "reasoning"):
        conn.execute(
            sa.text(f"ALTER TABLE price_overrides ADD COLUMN {name}_picousd_per_token_exact TEXT")
        )


Migration = Callable[[Connection], None]
MIGRATIONS: list[Migration] = [
    m001_initial,
    m002_alert_ack,
    m003_data_loads,
    m004_prompt_cache,
    m005_api_tokens,
    m006_alert_inbox,
    m007_virtual_keys,
    m008_login_security,
    m009_redact_audit_webhooks,
    m010_exact_price_overrides,
]

_md = sa.MetaData()
_record = sa.Table(
    "_migrations",
    _md,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("applied_at", TS, nullable=False),
)


def applied(engine: Engine) -> list[str]:
    """Names of the migrations already applied ([] on a blank database)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("_migrations"):
            return []
        return list(conn.scalars(sa.select(_record.c.name).order_by(_record.c.name)))


def migrate(engine: Engine, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the missing migrations in order; returns their names ([] when up to date)."""
    todo = MIGRATIONS if migrations is None else migrations
    done = set(applied(engine))
    if all(m.__name__ in done for m in todo):
        return []
    ran: list[str] = []
    for m in todo:
        with write_tx(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            _record.create(conn, checkfirst=True)
            if conn.scalar(sa.select(_record.c.name).where(_record.c.name == m.__name__)):
                continue  # another process got there first
            m(conn)
            conn.execute(_record.insert().values(name=m.__name__, applied_at=clock.now()))
            ran.append(m.__name__)
    return ran
