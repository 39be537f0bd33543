"""Sign-in hardening (issue 12 §5): OWASP scrypt cost with re-hash, an atomic failure counter
(SQLite and PostgreSQL), per-client throttling, unlock from the CLI, must-change passwords."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.control import SYSTEM, AccountLocked, Actor, ControlPlane, LoginFailed, auth, ensure_admin
from core.control._passwords import SCRYPT_N, hash_password, needs_rehash, verify_password

FAST = 2**4  # test-only cost, always passed explicitly
PASSWORD = "correct horse battery"
T0 = datetime(2026, 5, 14, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, costline_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{costline_home / 'control.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plane(url: str, clock: Clock) -> Iterator[ControlPlane]:
    p = ControlPlane(url, now=clock, scrypt_n=FAST)
    p.create_user("admin", PASSWORD, "admin", SYSTEM)
    yield p
    p.close()


def stored_hash(plane: ControlPlane, username: str) -> str:
    with plane.engine.connect() as conn:
        return str(
            conn.scalar(
                sa.select(auth.s.users.c.password_hash).where(auth.s.users.c.username == username)
            )
        )


def test_default_cost_is_owasp_scrypt_and_verifies() -> None:
    assert SCRYPT_N == 2**17
    encoded = hash_password(PASSWORD)  # needs maxmem above hashlib's 32 MiB default
    assert encoded.startswith("scrypt$131072$8$1$")
    assert verify_password(PASSWORD, encoded) and not verify_password("nope", encoded)
    assert not needs_rehash(encoded)
    assert needs_rehash(hash_password(PASSWORD, 2**14))
    with ControlPlane() as plane:  # the default plane hashes at full cost
        assert plane.scrypt_n == 2**17


def test_an_old_hash_is_rehashed_at_the_next_successful_sign_in(costline_home: Path) -> None:
    with ControlPlane(scrypt_n=FAST) as old:
        old.create_user("eve", PASSWORD, "viewer", SYSTEM)
        with old.engine.begin() as conn:  # as main's 2^14 code stored it
            conn.execute(auth.s.users.update().values(password_hash=hash_password(PASSWORD, 2**14)))
    with ControlPlane() as plane:
        with pytest.raises(LoginFailed):
            plane.authenticate("eve", "wrong password")
        assert stored_hash(plane, "eve").startswith("scrypt$16384$")  # not on a failure
        assert plane.authenticate("eve", PASSWORD) == Actor("eve", "viewer")
        fresh = stored_hash(plane, "eve")
        assert fresh.startswith("scrypt$131072$8$1$") and verify_password(PASSWORD, fresh)
        assert plane.authenticate("eve", PASSWORD).username == "eve"
        assert stored_hash(plane, "eve") == fresh  # no re-hash once current


def _concurrent(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, clients: list[str]) -> int:
    """Wrong-password sign-ins at once, one per client name; how many passwords were checked.
    Each check is slowed to 50 ms so that every attempt is in flight together."""
    checked = 0
    lock = threading.Lock()
    real = auth.verify_password

    def counting(password: str, encoded: str) -> bool:
        nonlocal checked
        with lock:
            checked += 1
        time.sleep(0.05)
        return real(password, encoded)

    monkeypatch.setattr(auth, "verify_password", counting)
    start = threading.Barrier(len(clients))
    answers: list[Exception] = []

    def attempt(client: str) -> None:
        start.wait()
        try:
            auth.authenticate(plane, "admin", "wrong password", client)
        except LoginFailed as exc:
            with lock:
                answers.append(exc)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == len(clients)  # every attempt refused, none crashed
    return checked


def test_forty_concurrent_wrong_passwords_check_at_most_five(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _concurrent(plane, monkeypatch, ["10.0.0.1"] * 40) <= auth.MAX_FAILURES
    with pytest.raises(AccountLocked):
        plane.authenticate("admin", PASSWORD, "10.0.0.1")


def test_many_clients_at_once_check_at_most_the_account_threshold(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.control._throttle import ACCOUNT_MAX_FAILURES

    checked = _concurrent(plane, monkeypatch, [f"10.0.1.{i}" for i in range(40)])
    assert checked <= ACCOUNT_MAX_FAILURES
    with pytest.raises(AccountLocked):  # the account is locked for a fresh client too
        plane.authenticate("admin", PASSWORD, "10.9.9.9")


def test_one_client_cannot_lock_the_admin_out_for_everyone(
    plane: ControlPlane, clock: Clock
) -> None:
    for _ in range(4):
        with pytest.raises(LoginFailed) as err:
            plane.authenticate("admin", "wrong password", "attacker")
        assert not isinstance(err.value, AccountLocked)
    with pytest.raises(AccountLocked) as locked:
        plane.authenticate("admin", "wrong password", "attacker")
    assert locked.value.locked_until == T0 + timedelta(seconds=30)
    with pytest.raises(AccountLocked):  # the attacker's client stays locked out
        plane.authenticate("admin", PASSWORD, "attacker")
    assert plane.authenticate("admin", PASSWORD, "office") == Actor("admin", "admin")
    for _ in range(30):  # an hour of the attacker retrying whenever allowed
        clock.now += timedelta(minutes=2)
        with pytest.raises(LoginFailed):
            plane.authenticate("admin", "wrong password", "attacker")
    assert plane.authenticate("admin", PASSWORD, "office").username == "admin"
    for i in range(5):  # unknown users answer the same way
        with pytest.raises(LoginFailed) as e:
            plane.authenticate("nobody", "guess", "attacker")
        assert isinstance(e.value, AccountLocked) == (i == 4)


def test_unlock_clears_every_lock_and_is_audited(
    plane: ControlPlane, costline_home: Path, url: str
) -> None:
    for client in ("a", "b"):
        for _ in range(5):
            with pytest.raises(LoginFailed):
                plane.authenticate("admin", "wrong password", client)
    with pytest.raises(AccountLocked):
        plane.authenticate("admin", PASSWORD, "a")
    env = {"COSTLINE_HOME": str(costline_home), "COSTLINE_CONTROL_URL": url, "PATH": "/usr/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "users", "unlock", "admin"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Unlocked admin" in done.stdout
    assert plane.authenticate("admin", PASSWORD, "a") == Actor("admin", "admin")
    entry = next(e for e in plane.audit(entity="user") if e.action == "user.unlock")
    assert entry.actor == "system" and entry.entity_id == "admin"
    assert {c["client"] for c in entry.before["clients"]} == {"a", "b"}
    missing = subprocess.run(
        [sys.executable, "-m", "core.cli", "users", "unlock", "ghost"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "no user 'ghost'" in missing.stderr


def test_a_generated_first_admin_password_must_be_changed(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COSTLINE_ADMIN_PASSWORD", raising=False)
    with ControlPlane(scrypt_n=FAST) as plane:
        password = ensure_admin(plane)
        assert password is not None and plane.must_change_password("admin")
        assert plane.authenticate("admin", password) == Actor("admin", "admin")
        secret, _ = plane.create_api_token("admin", SYSTEM)
        assert plane.token_actor(secret) == Actor("admin", "admin")  # API tokens unaffected
        with pytest.raises(Exception, match="different"):
            plane.change_own_password("admin", password, password)
        with pytest.raises(LoginFailed):
            plane.change_own_password("admin", "not it at all", "a new secret 1")
        plane.change_own_password("admin", password, "a new secret 1")
        assert not plane.must_change_password("admin")
        assert plane.authenticate("admin", "a new secret 1").role == "admin"
        entry = plane.audit(entity="user")[0]
        assert (entry.action, entry.actor, entry.after) == (
            "user.change_password",
            "admin",
            {"password": "changed"},
        )
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "chosen by the operator")
    with ControlPlane(f"sqlite:///{costline_home / 'other.db'}", scrypt_n=FAST) as plane:
        assert ensure_admin(plane) is None and not plane.must_change_password("admin")
