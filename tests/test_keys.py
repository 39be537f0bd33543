"""Virtual keys: the CLI, the stored keyed hash, the pepper file, audit and validation."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.control import SYSTEM, Actor, ControlPlane
from core.errors import ConfigError, PermissionDenied
from core.keys import KeyIndex, KeySpec, hash_secret, issue_key, load_pepper
from core.pricing import load_catalog

ROOT = Path(__file__).resolve().parents[1]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COSTLINE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("COSTLINE_KEY_PEPPER", None)
    return subprocess.run(
        [sys.executable, "-m", "core.cli", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_create_list_revoke(costline_home: Path) -> None:
    out = cli(
        costline_home,
        "create",
        "--name",
        "ci",
        "--project",
        "search",
        "--budget-usd",
        "50",
        "--rpm",
        "600",
        "--tpm",
        "90000",
        "--models",
        "gpt-4o-mini,dryrun-small",
        "--expires",
        "2999-12-31",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    secret = lines[-1]
    assert secret.startswith("sk-cl-") and len(secret) == 6 + 43 and " " not in secret
    assert secret not in "\n".join(lines[:-1])
    assert "Budget 'key:ci': $50 per month" in out.stdout
    # stored: a keyed hash (HMAC-SHA256 under the 0600 pepper), never the secret
    pepper_file = costline_home / "gateway.pepper"
    assert stat.S_IMODE(pepper_file.stat().st_mode) == 0o600
    pepper = pepper_file.read_bytes().strip()
    engine = sa.create_engine(f"sqlite:///{costline_home / 'control.db'}")
    with engine.connect() as c:
        row = c.execute(sa.text("SELECT * FROM virtual_keys")).mappings().one()
        dump = json.dumps(
            [dict(r) for r in c.execute(sa.text("SELECT * FROM audit_log")).mappings()], default=str
        )
    engine.dispose()
    assert row["key_hash"] == hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
    assert row["prefix"] == secret[:12] and row["project"] == "search"
    assert secret not in dump and row["key_hash"] not in dump  # audited without hash or secret
    with ControlPlane() as plane:
        actions = [a.action for a in plane.audit()]
        budget = plane.budget("key:ci")
        limits = {r.id: r for r in plane.rate_limits()}
    assert "virtual_key.create" in actions
    assert budget is not None and budget.scope == "key" and budget.limit_usd == Decimal("50")
    assert limits["key:ci:rpm"].limit == 600 and limits["key:ci:tpm"].metric == "tokens"
    listed = cli(costline_home, "list", "--json")
    (entry,) = json.loads(listed.stdout)
    assert entry["status"] == "active" and entry["models"] == ["gpt-4o-mini", "dryrun-small"]
    assert secret not in listed.stdout
    assert cli(costline_home, "revoke", "ci").returncode == 0
    assert json.loads(cli(costline_home, "list", "--json").stdout)[0]["status"] == "revoked"
    with ControlPlane() as plane:
        assert plane.audit()[0].action == "virtual_key.revoke"
    again = cli(costline_home, "revoke", "ci")  # as 'tokens revoke' and DELETE /keys/ci: no
    assert again.returncode == 2 and "no active key 'ci': revoked at" in again.stderr
    assert "Revoked" not in again.stdout


def test_cli_refuses_bad_input_and_writes_nothing(costline_home: Path) -> None:
    bad = cli(costline_home, "create", "--name", "x y")
    assert bad.returncode == 2 and "name: use at most 64 letters" in bad.stderr
    bad = cli(costline_home, "create", "--name", "m", "--models", "no-such-model")
    assert bad.returncode == 2 and "models: is not a model in the price catalog" in bad.stderr
    bad = cli(costline_home, "create", "--name", "e", "--expires", "2001-01-01")
    assert bad.returncode == 2 and "in the past" in bad.stderr
    bad = cli(costline_home, "create", "--name", "b", "--budget-usd", "-3")
    assert bad.returncode == 2 and "positive amount" in bad.stderr
    assert cli(costline_home, "list", "--json").stdout.strip() == "[]"
    assert cli(costline_home, "create", "--name", "dup").returncode == 0
    again = cli(costline_home, "create", "--name", "dup")
    assert again.returncode == 2 and "exists" in again.stderr
    assert cli(costline_home, "revoke", "ghost").returncode == 2


def test_index_finds_by_hash_and_roles_are_checked(costline_home: Path) -> None:
    with ControlPlane(model_exists=load_catalog().has) as plane:
        pepper = load_pepper()
        issued = issue_key(plane, KeySpec(name="k1", org="acme"), SYSTEM)
        index = KeyIndex(plane.snapshot().keys, pepper)
        assert index.find(issued.secret) == issued.key
        assert index.find(issued.secret + "x") is None
        assert index.by_hash[hash_secret(issued.secret, pepper)].org == "acme"
        plane.create_user("vic", "a-long-password-1", "viewer", SYSTEM)
        with pytest.raises(PermissionDenied):
            issue_key(plane, KeySpec(name="k2"), Actor("vic", "viewer"))
        assert plane.virtual_key("k2") is None


def test_pepper_refused_when_others_can_read_it(tmp_path: Path) -> None:
    p = load_pepper(tmp_path, env={})
    assert load_pepper(tmp_path, env={}) == p  # created once
    (tmp_path / "gateway.pepper").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_pepper(tmp_path, env={})
    assert load_pepper(tmp_path, env={"COSTLINE_KEY_PEPPER": "x" * 32}) == b"x" * 32
