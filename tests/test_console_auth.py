"""Sign-in: the first admin, wrong passwords, lock-out, sign-out, disabled users."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.control import SYSTEM, ControlPlane, authenticate
from tests.console_support import ADMIN_PASSWORD, PASSWORDS, app, make_users


def sign_in(at, username: str, password: str):  # type: ignore[no-untyped-def]
    at.text_input(key="login_user").input(username)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def errors(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.value for e in at.error]


@pytest.fixture
def users(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    return costline_home


def test_signed_out_visitors_see_only_the_sign_in_form(users: Path) -> None:
    at = app(role=None).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Costline"]
    assert not at.metric and not at.sidebar.button
    with pytest.raises(ValueError):
        at.switch_page("app_pages/overview.py")


def test_wrong_password_is_refused_then_the_right_one_signs_in(users: Path) -> None:
    at = sign_in(app(role=None).run(), "viewer", "not-the-password")
    assert not at.exception
    assert errors(at) == ["Invalid username or password."]
    assert "actor" not in at.session_state
    at = sign_in(at, "viewer", PASSWORDS["viewer"])
    assert not at.exception
    assert at.session_state["actor"].role == "viewer"
    assert [t.value for t in at.title] == ["Overview"]


def test_unknown_user_gets_the_same_answer(users: Path) -> None:
    at = sign_in(app(role=None).run(), "nobody", "whatever-123")
    assert errors(at) == ["Invalid username or password."]


def test_five_failures_lock_the_account_even_for_the_right_password(users: Path) -> None:
    at = app(role=None).run()
    for _ in range(4):
        at = sign_in(at, "engineer", "wrong-password")
        assert errors(at) == ["Invalid username or password."]
    at = sign_in(at, "engineer", "wrong-password")
    assert errors(at)[0].startswith("Account locked: too many failed sign-ins")
    at = sign_in(at, "engineer", PASSWORDS["engineer"])
    assert not at.exception
    assert errors(at)[0].startswith("Account locked")
    assert "actor" not in at.session_state


def test_sign_out_forgets_the_actor(users: Path) -> None:
    at = app("admin").run()
    at.sidebar.button(key="sign_out").click().run()
    assert not at.exception
    assert "actor" not in at.session_state
    assert [t.value for t in at.title] == ["Costline"]


def test_a_disabled_user_is_signed_out_and_a_new_role_applies_on_next_run(users: Path) -> None:
    at = app("engineer").run()
    assert at.session_state["actor"].role == "engineer"
    with ControlPlane() as plane:
        plane.set_role("engineer", "viewer", SYSTEM)
    at.run()
    assert at.session_state["actor"].role == "viewer"
    with ControlPlane() as plane:
        plane.disable_user("engineer", SYSTEM)
    at.run()
    assert not at.exception
    assert "actor" not in at.session_state


def test_first_start_creates_admin_and_prints_a_one_time_password(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COSTLINE_ADMIN_PASSWORD", raising=False)
    at = app(role=None).run()
    assert not at.exception
    out = capsys.readouterr().out
    assert "sign in as 'admin' with this one-time password" in out
    password = out.split("one-time password:")[1].split()[0]
    with ControlPlane() as plane:
        assert authenticate(plane, "admin", password).role == "admin"
        assert [u.username for u in plane.users()] == ["admin"]
    at.run()  # a second run does not make another admin or print again
    assert "one-time password" not in capsys.readouterr().out
