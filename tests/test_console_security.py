"""Console side of the security hardening: the generated first admin password must be changed
before any page; a bare CR in an uploaded CSV is a clear error naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.control import ControlPlane
from tests.console_support import ADMIN_PASSWORD, app, make_users


def sign_in(at, username: str, password: str):  # type: ignore[no-untyped-def]
    at.text_input(key="login_user").input(username)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def change(at, current: str, new: str, again: str):  # type: ignore[no-untyped-def]
    at.text_input(key="pw_current").input(current)
    at.text_input(key="pw_new").input(new)
    at.text_input(key="pw_again").input(again)
    return at.button[0].click().run()


def test_the_generated_admin_password_is_changed_before_any_page(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COSTLINE_ADMIN_PASSWORD", raising=False)
    at = app(role=None, timeout=60).run()
    password = capsys.readouterr().out.split("one-time password:")[1].split()[0]
    at = sign_in(at, "admin", password)
    assert not at.exception
    assert [t.value for t in at.title] == ["Choose a new password"]
    assert not at.metric and not at.sidebar.button
    with pytest.raises(ValueError):
        at.switch_page("app_pages/overview.py")
    at = change(at, password, "my own secret 1", "my own secret 2")
    assert [e.value for e in at.error] == ["The two new passwords differ."]
    at = change(at, "not the password", "my own secret 1", "my own secret 1")
    assert [e.value for e in at.error] == ["The current password is wrong."]
    at = change(at, password, "short", "short")
    assert "at least 8" in at.error[0].value or "8 to 1024" in at.error[0].value
    at = change(at, password, "my own secret 1", "my own secret 1")
    assert not at.exception
    assert [t.value for t in at.title] == ["Overview"]
    with ControlPlane() as plane:
        assert not plane.must_change_password("admin")
        assert plane.authenticate("admin", "my own secret 1").role == "admin"


def test_a_bare_cr_in_an_uploaded_csv_names_the_line(
    costline_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    text = "Date,Model Name,Prompt Tokens\n2025-03-01,dryrun-small,10\n2025-03-02,dry\rrun,5\n"
    at = app("engineer").run()
    at.switch_page("app_pages/import_export.py").run()
    at.file_uploader(key="imp_file").set_value(("usage.csv", text.encode(), "text/csv"))
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("line 3" in e and "carriage return" in e for e in errors), errors
