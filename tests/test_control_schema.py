"""Migrations on real SQLite files and real PostgreSQL: the exact schema, idempotence, no data
loss, and several processes migrating one database at the same time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core.control import MIGRATIONS, applied, make_engine, migrate
from core.control import _schema as current
from tests.child_death import die_with_parent

ROOT = Path(__file__).resolve().parents[1]

# (column, type family, nullable) in table order; type families are normalised per engine.
TS, TXT, INT, BIG, DBL, BOOL, DATE = "timestamp", "text", "int", "bigint", "double", "bool", "date"
ROWID = "rowid"  # serial ids: INTEGER (the rowid alias) on SQLite, BIGINT on PostgreSQL
EXPECTED: dict[str, dict[str, Any]] = {
    "_migrations": {"columns": [("name", TXT, False), ("applied_at", TS, False)], "pk": ["name"]},
    "meta": {"columns": [("id", INT, False), ("version", BIG, False)], "pk": ["id"]},
    "budgets": {
        "columns": [
            ("id", TXT, False),
            ("name", TXT, False),
            ("scope", TXT, False),
            ("scope_value", TXT, True),
            ("period", TXT, False),
            ("limit_picousd", BIG, True),
            ("limit_tokens", BIG, True),
            ("soft_multiplier", DBL, False),
            ("thresholds_json", TXT, False),
            ("action", TXT, False),
            ("degrade_to", TXT, True),
            ("timezone", TXT, False),
            ("webhook_url", TXT, True),
            ("enabled", BOOL, False),
            ("reset_generation", INT, False),
        ],
        "pk": ["id"],
        "indexes": {"ix_budgets_scope": (["scope", "scope_value"], False)},
    },
    "routing_policies": {
        "columns": [
            ("task", TXT, False),
            ("primary_model", TXT, False),
            ("fallbacks_json", TXT, False),
            ("degrade_to", TXT, True),
            ("criticality", TXT, False),
            ("strategy", TXT, False),
            ("weight_cost", DBL, False),
            ("weight_latency", DBL, False),
            ("weight_quality", DBL, False),
            ("cache_ttl_s", INT, True),
            ("personalised", BOOL, False),
            ("max_tokens", INT, True),
            ("prompt_cache", TXT, True),
        ],
        "pk": ["task"],
    },
    "sampling_strategies": {
        "columns": [
            ("key", TXT, False),
            ("strategy", TXT, False),
            ("params_json", TXT, False),
            ("min_interval_s", DBL, False),
            ("batch_size", INT, False),
            ("batch_timeout_s", DBL, False),
            ("enabled", BOOL, False),
        ],
        "pk": ["key"],
    },
    "cache_settings": {
        "columns": [
            ("task", TXT, False),
            ("ttl_s", INT, False),
            ("enabled", BOOL, False),
            ("semantic_threshold", DBL, True),
        ],
        "pk": ["task"],
    },
    "rate_limits": {
        "columns": [
            ("id", TXT, False),
            ("scope", TXT, False),
            ("scope_value", TXT, True),
            ("metric", TXT, False),
            ("limit_value", BIG, False),
            ("window_s", INT, False),
            ("algorithm", TXT, False),
            ("burst", BIG, True),
            ("enabled", BOOL, False),
        ],
        "pk": ["id"],
    },
    "price_overrides": {
        "columns": [
            ("provider", TXT, False),
            ("model", TXT, False),
            ("effective_from", DATE, False),
            ("input_picousd_per_token", BIG, False),
            ("cached_input_picousd_per_token", BIG, True),
            ("cache_write_picousd_per_token", BIG, True),
            ("output_picousd_per_token", BIG, False),
            ("reasoning_picousd_per_token", BIG, True),
            ("note", TXT, False),
            ("input_picousd_per_token_exact", TXT, True),
            ("cached_input_picousd_per_token_exact", TXT, True),
            ("cache_write_picousd_per_token_exact", TXT, True),
            ("output_picousd_per_token_exact", TXT, True),
            ("reasoning_picousd_per_token_exact", TXT, True),
        ],
        "pk": ["provider", "model", "effective_from"],
    },
    "model_scores": {
        "columns": [("model", TXT, False), ("quality", DBL, False), ("note", TXT, False)],
        "pk": ["model"],
    },
    "users": {
        "columns": [
            ("username", TXT, False),
            ("password_hash", TXT, False),
            ("role", TXT, False),
            ("failed_attempts", INT, False),
            ("locked_until", TS, True),
            ("created_at", TS, False),
            ("disabled", BOOL, False),
            ("must_change_password", BOOL, False),
        ],
        "pk": ["username"],
    },
    "audit_log": {
        "columns": [
            ("id", ROWID, False),
            ("ts", TS, False),
            ("actor", TXT, False),
            ("action", TXT, False),
            ("entity", TXT, False),
            ("entity_id", TXT, False),
            ("before_json", TXT, True),
            ("after_json", TXT, True),
        ],
        "pk": ["id"],
        "indexes": {
            "ix_audit_log_ts": (["ts"], False),
            "ix_audit_log_entity": (["entity", "entity_id"], False),
        },
    },
    "alerts": {
        "columns": [
            ("id", ROWID, False),
            ("ts", TS, False),
            ("kind", TXT, False),
            ("budget_id", TXT, False),
            ("window_key", TXT, False),
            ("threshold_pct", INT, False),
            ("spent_picousd", BIG, True),
            ("limit_picousd", BIG, True),
            ("spent_tokens", BIG, True),
            ("limit_tokens", BIG, True),
            ("message", TXT, False),
            ("delivered", BOOL, False),
            ("delivery_error", TXT, True),
            ("acked_by", TXT, True),
            ("acked_at", TS, True),
            ("severity", TXT, True),
            ("link", TXT, True),
            ("notify_state", TXT, True),
            ("notify_attempts", INT, True),
            ("notify_next_at", TS, True),
            ("notify_error", TXT, True),
            ("notified_at", TS, True),
            ("notify_json", TXT, True),
        ],
        "pk": ["id"],
        "unique": {"uq_alerts_once": ["kind", "budget_id", "window_key", "threshold_pct"]},
        "indexes": {
            "ix_alerts_ts": (["ts"], False),
            "ix_alerts_notify": (["notify_state", "notify_next_at"], False),
        },
    },
    "alert_mutes": {
        "columns": [
            ("kind", TXT, False),
            ("subject", TXT, False),
            ("until", TS, False),
            ("created_by", TXT, False),
            ("created_at", TS, False),
        ],
        "pk": ["kind", "subject"],
    },
    "leases": {
        "columns": [("name", TXT, False), ("holder", TXT, False), ("expires_at", TS, False)],
        "pk": ["name"],
    },
    "api_tokens": {
        "columns": [
            ("id", TXT, False),
            ("username", TXT, False),
            ("name", TXT, False),
            ("token_hash", TXT, False),
            ("prefix", TXT, False),
            ("created_at", TS, False),
            ("created_by", TXT, False),
            ("expires_at", TS, True),
            ("last_used_at", TS, True),
            ("revoked_at", TS, True),
            ("revoked_by", TXT, True),
        ],
        "pk": ["id"],
        "unique": {"uq_api_tokens_hash": ["token_hash"]},
        "indexes": {"ix_api_tokens_username": (["username"], False)},
    },
    "settings": {"columns": [("key", TXT, False), ("value_json", TXT, False)], "pk": ["key"]},
    "data_loads": {
        "columns": [
            ("id", TXT, False),
            ("kind", TXT, False),
            ("name", TXT, False),
            ("rows", BIG, False),
            ("cost_picousd", BIG, True),
            ("actor", TXT, False),
            ("created_at", TS, False),
            ("details_json", TXT, False),
        ],
        "pk": ["id"],
        "indexes": {"ix_data_loads_kind": (["kind"], False)},
    },
    "virtual_keys": {
        "columns": [
            ("name", TXT, False),
            ("prefix", TXT, False),
            ("key_hash", TXT, False),
            ("org", TXT, True),
            ("project", TXT, True),
            ("user", TXT, True),
            ("models_json", TXT, False),
            ("created_at", TS, False),
            ("created_by", TXT, False),
            ("expires_at", TS, True),
            ("revoked_at", TS, True),
            ("revoked_by", TXT, True),
        ],
        "pk": ["name"],
        "unique": {"uq_virtual_keys_hash": ["key_hash"]},
    },
    "login_throttle": {
        "columns": [
            ("client", TXT, False),
            ("username", TXT, False),
            ("failures", INT, False),
            ("locked_until", TS, True),
            ("updated_at", TS, False),
        ],
        "pk": ["client", "username"],
    },
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, costline_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{costline_home / 'control.db'}"
    return str(request.getfixturevalue("pg_url"))


def family(t: sa.types.TypeEngine[Any], dialect: str, column: str) -> str:
    if isinstance(t, sa.DateTime):
        assert dialect != "postgresql" or t.timezone, f"{column}: not timestamptz"
        return TS
    for cls, name in (
        (sa.Boolean, BOOL),
        (sa.Date, DATE),
        (sa.BigInteger, BIG),
        (sa.Integer, INT),
        (sa.Float, DBL),
        (sa.String, TXT),
    ):
        if isinstance(t, cls):
            if cls is sa.String:
                assert getattr(t, "length", None) is None, f"{column}: length-limited text"
            return name
    raise AssertionError(f"{column}: unexpected type {t!r}")


def expected(dialect: str) -> dict[str, dict[str, Any]]:
    rowid = INT if dialect == "sqlite" else BIG
    return {
        table: {
            **spec,
            "columns": [(n, rowid if t == ROWID else t, null) for n, t, null in spec["columns"]],
        }
        for table, spec in sorted(EXPECTED.items())
    }


def reflect(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    insp = sa.inspect(engine)
    dialect = engine.dialect.name
    out: dict[str, dict[str, Any]] = {}
    for table in sorted(insp.get_table_names()):
        spec: dict[str, Any] = {
            "columns": [
                (c["name"], family(c["type"], dialect, c["name"]), c["nullable"])
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
        }
        uniques = {u["name"]: u["column_names"] for u in insp.get_unique_constraints(table)}
        indexes = {
            i["name"]: (i["column_names"], bool(i["unique"]))
            for i in insp.get_indexes(table)
            if i["name"] not in uniques
        }
        if uniques:
            spec["unique"] = uniques
        if indexes:
            spec["indexes"] = indexes
        out[table] = spec
    return out


def test_blank_database_migrates_to_the_exact_schema(url: str) -> None:
    engine = make_engine(url)
    assert applied(engine) == []
    assert migrate(engine) == [m.__name__ for m in MIGRATIONS]
    assert reflect(engine) == expected(engine.dialect.name)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, version FROM meta")).all() == [(1, 0)]
    engine.dispose()


def test_query_schema_matches_the_migrated_database(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    insp = sa.inspect(engine)
    for table in current.metadata.sorted_tables:
        db = [(c["name"], c["nullable"]) for c in insp.get_columns(table.name)]
        assert db == [(c.name, c.nullable) for c in table.columns], table.name
    assert {t.name for t in current.metadata.sorted_tables} == set(insp.get_table_names())
    engine.dispose()


def test_migrate_twice_is_a_no_op(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    with engine.connect() as conn:
        first = conn.execute(sa.text("SELECT name, applied_at FROM _migrations ORDER BY name"))
        rows = first.all()
    schema = reflect(engine)
    assert migrate(engine) == []
    with engine.connect() as conn:
        again = conn.execute(sa.text("SELECT name, applied_at FROM _migrations ORDER BY name"))
        assert again.all() == rows
    assert reflect(engine) == schema
    engine.dispose()


def test_later_migration_keeps_existing_rows(url: str) -> None:
    engine = make_engine(url)
    assert migrate(engine, MIGRATIONS[:1]) == ["m001_initial"]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO alerts (ts, kind, budget_id, window_key, threshold_pct, "
                "spent_picousd, message, delivered) VALUES (:ts, 'budget', 'b1', '2026-05', 50, "
                ":spent, 'half way', false)"
            ),
            {"ts": "2026-05-14 10:00:00", "spent": 5 * 10**12},
        )
    assert migrate(engine) == [m.__name__ for m in MIGRATIONS[1:]]
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT budget_id, spent_picousd, message, acked_by FROM alerts")
        ).one()
    assert tuple(row) == ("b1", 5 * 10**12, "half way", None)
    engine.dispose()


def test_processes_migrating_at_once_apply_each_migration_once(url: str) -> None:
    code = (
        "import sys; from core.control import make_engine, migrate; "
        "print(migrate(make_engine(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", die_with_parent() + code, url],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    ran = [name for out, _ in outs for name in ast.literal_eval(out)]  # what each one applied
    assert sorted(ran) == sorted(m.__name__ for m in MIGRATIONS)
    engine = make_engine(url)
    assert applied(engine) == [m.__name__ for m in MIGRATIONS]
    engine.dispose()
