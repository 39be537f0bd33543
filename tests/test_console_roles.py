"""Every page under every role; what a role may not use is not shown, and the write functions
refuse a viewer server-side (core raises PermissionDenied) whatever the UI shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.app import PAGE_DIR, PAGES
from console.commands import admin, usage
from core.control import Actor, ControlPlane
from core.errors import PermissionDenied
from tests.console_support import app

ROLES = ("viewer", "engineer", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
VIEWER = Actor("viewer", "viewer")


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def existing_pages() -> list:  # type: ignore[type-arg]
    return [p for p in PAGES if (PAGE_DIR / p.file).exists()]


def test_every_page_file_is_registered_once() -> None:
    files = sorted(p.name for p in PAGE_DIR.glob("*.py") if not p.name.startswith("_"))
    registered = [p.file for p in PAGES]
    assert len(set(registered)) == len(registered)
    assert set(files) <= set(registered), "add a line to PAGES in console/app.py"


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_every_page_it_may_see_and_no_other(home: Path, role: str) -> None:
    at = app(role).run()
    assert not at.exception
    for spec in existing_pages():
        path = f"app_pages/{spec.file}"
        if RANK[role] < RANK[spec.role]:
            with pytest.raises(ValueError):
                at.switch_page(path)
            continue
        at.switch_page(path).run()
        assert not at.exception, (role, spec.file, at.exception)
        assert at.sidebar.selectbox(key="f_range").value == "30d"  # the frame is still there


def test_viewer_sees_no_import_or_demo_controls(home: Path) -> None:
    at = app("viewer").run()
    at.switch_page("app_pages/import_export.py").run()
    assert not at.exception
    assert not at.file_uploader
    assert "Importing usage needs the engineer role." in [c.value for c in at.caption]
    assert {b.key for b in at.get("download_button")} == {"exp_csv", "exp_parquet", "exp_acc_csv"}
    assert not [b for b in at.button if b.key in ("demo_load", "demo_remove", "imp_go")]


def test_engineer_sees_import_but_not_admin(home: Path) -> None:
    at = app("engineer").run()
    at.switch_page("app_pages/import_export.py").run()
    assert not at.exception
    assert len(at.file_uploader) == 1
    with pytest.raises(ValueError):
        at.switch_page("app_pages/admin.py")


@pytest.mark.parametrize(
    "write",
    [
        lambda a: admin.create_user(a, "mallory", "password-123", "admin"),
        lambda a: admin.set_role(a, "viewer", "admin"),
        lambda a: admin.set_disabled(a, "admin", True),
        lambda a: admin.reset_password(a, "admin", "new-password-1"),
        lambda a: admin.save_settings(a, "UTC", "USD", {"EUR": "0.5"}),
        lambda a: usage.import_usage(
            a,
            "u.csv",
            b"timestamp,model,input_tokens,output_tokens\n2025-01-01,dryrun-small,1,1\n",
            {
                "timestamp": "timestamp",
                "model": "model",
                "input_tokens": "input_tokens",
                "output_tokens": "output_tokens",
            },
            True,
        ),
    ],
    ids=["create_user", "set_role", "disable", "reset_password", "settings", "import"],
)
def test_viewer_write_calls_are_refused_by_core(home: Path, write) -> None:  # type: ignore[no-untyped-def]
    with ControlPlane() as plane:
        before = (plane.version(), plane.users(), len(plane.audit(limit=1000)))
    with pytest.raises(PermissionDenied):
        write(VIEWER)
    with pytest.raises(PermissionDenied):  # a forged role does not help: core re-reads it
        write(Actor("viewer", "admin"))
    with ControlPlane() as plane:
        assert (plane.version(), plane.users(), len(plane.audit(limit=1000))) == before


def test_viewer_may_not_load_or_remove_demo_data(home: Path) -> None:
    for write in (usage.load_demo, usage.remove_demo):
        with pytest.raises(PermissionDenied):
            write(VIEWER)


def test_admin_manages_users_through_the_page_and_it_is_audited(home: Path) -> None:
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.text_input(key="adm_new_user").input("fiona")
    at.text_input(key="adm_new_password").input("fiona-pass-1")
    at.selectbox(key="adm_new_role").set_value("viewer")
    at.button(key="FormSubmitter:adm_create-Create user").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Created fiona."]
    at.selectbox(key="adm_user").set_value("fiona").run()
    at.selectbox(key="adm_role_fiona").set_value("engineer")
    at.button(key="FormSubmitter:adm_role-Set role").click().run()
    at.button(key="FormSubmitter:adm_disable-Disable user").click().run()
    assert not at.exception
    with ControlPlane() as plane:
        fiona = next(u for u in plane.users() if u.username == "fiona")
        assert (fiona.role, fiona.disabled) == ("engineer", True)
        actions_logged = [e.action for e in plane.audit(entity="user", entity_id="fiona")]
    assert actions_logged == ["user.disable", "user.set_role", "user.create"]
    audit = at.tabs[4]
    assert audit.label == "Audit log"
    assert any(df.value["actor"].eq("admin").any() for df in audit.dataframe)


def test_admin_cannot_demote_the_last_admin(home: Path) -> None:
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.selectbox(key="adm_user").set_value("admin").run()
    at.selectbox(key="adm_role_admin").set_value("viewer")
    at.button(key="FormSubmitter:adm_role-Set role").click().run()
    assert not at.exception
    assert any("last enabled admin" in e.value for e in at.error)


def test_admin_settings_set_the_currency_rates_the_sidebar_offers(home: Path) -> None:
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.text_input(key="adm_rates").input("EUR=0.5, CHF=0.9")
    at.text_input(key="adm_currency").input("eur")
    at.button(key="FormSubmitter:adm_settings-Save settings").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Settings saved."]
    at = app("viewer").run()  # a new session starts in the configured currency
    assert at.sidebar.selectbox(key="f_currency").options == ["USD", "EUR", "GBP", "CHF"]
    assert at.session_state["selection"].money.currency == "EUR"
    assert next(m.value for m in at.metric if m.label == "Spend in range").startswith("€")
    with ControlPlane() as plane:
        assert plane.get_setting("currency_rates") == {"USD": "1", "EUR": "0.5", "CHF": "0.9"}
        assert plane.audit(limit=1)[0].actor == "admin"


def test_a_failed_user_create_keeps_the_typed_username(home: Path) -> None:
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    at.text_input(key="adm_new_user").input("george")
    at.text_input(key="adm_new_password").input("short")
    at.button(key="FormSubmitter:adm_create-Create user").click().run()
    assert not at.exception and at.error
    assert at.text_input(key="adm_new_user").value == "george"
    assert at.text_input(key="adm_new_password").value == ""
    assert at.tabs[0].label == "Users"
    at.text_input(key="adm_new_password").input("george-pass-1")
    at.button(key="FormSubmitter:adm_create-Create user").click().run()
    assert [s.value for s in at.success] == ["Created george."]
    assert at.text_input(key="adm_new_user").value == ""


def test_streamlit_developer_chrome_is_hidden_for_everyone() -> None:
    import tomllib

    config = tomllib.loads((Path(__file__).parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"


def test_importing_the_console_creates_no_account_and_no_home(tmp_path: Path) -> None:
    """Tests import ``console.app`` for its page list at collection, outside any test's
    COSTLINE_HOME: that import ran the app, which created ./.costline with an 'admin' account,
    so a ``make run`` after ``make test`` printed no one-time password to sign in with."""
    import os
    import subprocess
    import sys

    repo, cwd = Path(__file__).resolve().parents[1], tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_")}
    env["PYTHONPATH"] = str(repo)
    out = subprocess.run(
        [sys.executable, "-c", "import console.app as a; print(len(a.PAGES), 'pages')"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("pages") and "password" not in out.stdout
    assert list(cwd.iterdir()) == []  # no .costline, nothing else
