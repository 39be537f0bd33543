"""Console users: scrypt hashes, sign-in, lock-out with growing delays, the first admin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.control import (
    SYSTEM,
    AccountLocked,
    Actor,
    ControlPlane,
    LoginFailed,
    authenticate,
    ensure_admin,
)
from core.control.auth import hash_password, lock_delay, verify_password
from core.errors import ConfigError, PermissionDenied

PASSWORD = "correct horse battery"
FAST = 2**4  # a test-only scrypt cost, passed explicitly (the default is 2^17)
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
def plane(clock: Clock) -> Iterator[ControlPlane]:
    p = ControlPlane(now=clock, scrypt_n=FAST)
    p.create_user("ada", PASSWORD, "admin", SYSTEM)
    p.create_user("eve", PASSWORD, "engineer", Actor("ada", "admin"))
    yield p
    p.close()


def test_hash_is_salted_scrypt_with_its_parameters() -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b and a.startswith("scrypt$131072$8$1$")
    assert verify_password(PASSWORD, a) and verify_password(PASSWORD, b)
    assert not verify_password(PASSWORD + "x", a)
    assert not verify_password(PASSWORD, a[:-4] + "AAA=")  # tampered key
    assert not verify_password(PASSWORD, "md5$abc") and not verify_password(PASSWORD, "")


def test_sign_in_returns_the_actor(plane: ControlPlane) -> None:
    assert authenticate(plane, "eve", PASSWORD) == Actor("eve", "engineer")
    assert plane.authenticate("ada", PASSWORD) == Actor("ada", "admin")


def test_wrong_password_and_unknown_user_look_the_same(plane: ControlPlane) -> None:
    with pytest.raises(LoginFailed) as wrong:
        authenticate(plane, "eve", "not the password")
    with pytest.raises(LoginFailed) as unknown:
        authenticate(plane, "nobody", "not the password")
    assert type(wrong.value) is type(unknown.value) is LoginFailed
    assert str(wrong.value) == str(unknown.value) == "invalid username or password"
    assert isinstance(wrong.value, PermissionDenied)


def test_lock_out_after_five_failures_with_growing_delay(url: str) -> None:
    clock = Clock()
    plane = ControlPlane(url, now=clock, scrypt_n=FAST)
    plane.create_user("eve", PASSWORD, "engineer", SYSTEM)
    for _ in range(4):
        with pytest.raises(LoginFailed) as err:
            authenticate(plane, "eve", "wrong password")
        assert not isinstance(err.value, AccountLocked)
    with pytest.raises(AccountLocked) as locked:
        authenticate(plane, "eve", "wrong password")
    assert locked.value.locked_until == T0 + timedelta(seconds=30)
    assert "2026-05-14 09:00:30" in str(locked.value)
    with pytest.raises(AccountLocked):  # while locked even the right password is refused
        authenticate(plane, "eve", PASSWORD)
    clock.now += timedelta(seconds=31)
    with pytest.raises(AccountLocked) as again:  # one more failure: locked twice as long
        authenticate(plane, "eve", "wrong password")
    assert again.value.locked_until == clock.now + timedelta(seconds=60)
    clock.now += timedelta(seconds=61)
    assert authenticate(plane, "eve", PASSWORD) == Actor("eve", "engineer")
    user = plane.users()[0]
    assert (user.failed_attempts, user.locked_until) == (0, None)
    assert [e.action for e in plane.audit(entity="user")][:2] == ["user.locked", "user.locked"]
    plane.close()


def test_unknown_user_locks_out_like_a_real_one(plane: ControlPlane) -> None:
    for _ in range(4):
        with pytest.raises(LoginFailed):
            authenticate(plane, "nobody", "guess")
    with pytest.raises(AccountLocked) as locked:
        authenticate(plane, "nobody", "guess")
    assert locked.value.locked_until == T0 + timedelta(seconds=30)


def test_lock_delay_is_capped() -> None:
    assert [lock_delay(n).total_seconds() for n in (4, 5, 6, 7)] == [0, 30, 60, 120]
    assert lock_delay(50) == timedelta(hours=1)


def test_disabled_user_cannot_sign_in(plane: ControlPlane) -> None:
    plane.disable_user("eve", Actor("ada", "admin"))
    with pytest.raises(LoginFailed, match="invalid username or password"):
        authenticate(plane, "eve", PASSWORD)
    plane.disable_user("eve", Actor("ada", "admin"), disabled=False)
    assert authenticate(plane, "eve", PASSWORD).role == "engineer"


def test_password_change_and_audit_never_hold_hashes(plane: ControlPlane) -> None:
    ada = Actor("ada", "admin")
    plane.set_password("eve", "a brand new secret", ada)
    with pytest.raises(LoginFailed):
        authenticate(plane, "eve", PASSWORD)
    assert authenticate(plane, "eve", "a brand new secret").username == "eve"
    plane.set_role("eve", "viewer", ada)
    assert authenticate(plane, "eve", "a brand new secret").role == "viewer"
    entries = plane.audit(entity="user")
    assert [e.action for e in entries] == [
        "user.set_role",
        "user.set_password",
        "user.create",
        "user.create",
    ]
    assert entries[1].after == {"password": "changed"}
    text = json.dumps([(e.before, e.after) for e in entries])
    assert "scrypt$" not in text and "password_hash" not in text
    with pytest.raises(ConfigError) as err:
        plane.create_user("bob", "short", "viewer", ada)
    assert err.value.field == "password" and "short" not in str(err.value)
    with pytest.raises(ConfigError) as dup:
        plane.create_user("eve", PASSWORD, "viewer", ada)
    assert dup.value.field == "username"
    with pytest.raises(ConfigError):
        plane.create_user("system", PASSWORD, "viewer", ada)


def test_ensure_admin_creates_once_with_a_generated_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COSTLINE_ADMIN_PASSWORD", raising=False)
    plane = ControlPlane(scrypt_n=FAST)
    password = ensure_admin(plane)
    assert password is not None and len(password) >= 16
    assert authenticate(plane, "admin", password) == Actor("admin", "admin")
    assert ensure_admin(plane) is None  # second start: nothing to do
    assert [u.username for u in plane.users()] == ["admin"]
    with plane.engine.connect() as conn:
        stored = conn.scalar(sa.text("SELECT password_hash FROM users"))
    assert password not in stored
    plane.close()


def test_ensure_admin_honours_the_env_password(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "from the environment")
    plane = ControlPlane(url, scrypt_n=FAST)
    assert ensure_admin(plane) is None
    assert authenticate(plane, "admin", "from the environment").role == "admin"
    assert [e.actor for e in plane.audit(entity="user")] == ["system"]
    plane.close()


def test_ensure_admin_rejects_a_short_env_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", "admin")
    plane = ControlPlane(scrypt_n=FAST)
    with pytest.raises(ConfigError) as err:
        ensure_admin(plane)
    assert err.value.field == "COSTLINE_ADMIN_PASSWORD" and plane.users() == []
    plane.close()
