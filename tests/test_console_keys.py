"""API keys page: an engineer issues a key (secret shown once, only its hash stored), bad
values are refused by name with nothing stored, a key is revoked after a confirmation; the
key dimension is a sidebar filter and an Overview breakdown."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from console.commands import keys as commands
from core.control import Actor, ControlPlane
from core.errors import PermissionDenied
from core.keys import KeyIndex, load_pepper
from core.router import Router
from core.types import ChatRequest, Message
from tests.console_support import app, choose

PAGE = "app_pages/keys.py"


@pytest.fixture
def home(console_home: Path) -> Path:
    return console_home


def page(role: str = "engineer") -> Any:
    at = app(role).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def create(at: Any, **values: str) -> Any:
    for field, value in values.items():
        if field in ("org", "project", "user"):  # picked from the log, or typed
            choose(at, f"keys_{field}", value)
            continue
        at.text_input(key=f"keys_{field}").set_value(value)
    at.button(key="FormSubmitter:keys_create-Create key").click().run()
    assert not at.exception
    return at


def test_engineer_creates_a_key_and_sees_its_secret_once(home: Path) -> None:
    at = create(page(), name="web", project="shop", budget_usd="25", rpm="120")
    (secret,) = [c.value for c in at.code]
    assert secret.startswith("sk-cl-")
    assert "web" in at.dataframe[0].value["name"].tolist()
    with ControlPlane() as plane:
        key = plane.virtual_key("web")
        assert key is not None and key.project == "shop" and secret not in repr(key)
        assert KeyIndex(plane.snapshot().keys, load_pepper()).find(secret) == key
        assert plane.budget("key:web") is not None
        assert plane.audit()[0].actor == "engineer"
    row = at.dataframe[0].value.set_index("name").loc["web"]
    assert row["revoked"] == "" and row["expires"] == ""  # blank, not None
    assert row["created"] == f"{key.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"  # no offset
    at.run()  # the next run no longer shows it
    assert not at.code


def test_bound_org_project_and_user_are_picked_from_the_log(home: Path) -> None:
    at = page()
    for dim, seen in (("org", "org1"), ("project", "proj2"), ("user", "user3")):
        assert seen in at.selectbox(key=f"keys_{dim}").options
    at = create(at, name="bound", org="org1", project="proj-new")  # a new one can be typed
    with ControlPlane() as plane:
        key = plane.virtual_key("bound")
    assert key is not None and (key.org, key.project, key.user) == ("org1", "proj-new", None)


def test_bad_values_are_named_and_nothing_is_stored(home: Path) -> None:
    at = create(page(), name="bad", budget_usd="lots")
    assert any("Budget USD: not an amount" in e.value for e in at.error)  # the form's words
    at = create(page(), name="bad", rpm="0")
    assert any("Requests / min: must be at least 1" in e.value for e in at.error)
    with ControlPlane() as plane:
        assert plane.virtual_keys() == []


def test_revoke_asks_first_then_revokes(home: Path) -> None:
    at = create(page(), name="old")
    at.button(key="keys_revoke_old").click().run()
    with ControlPlane() as plane:
        assert plane.virtual_key("old").revoked_at is None  # type: ignore[union-attr]
    at.button(key="keys_revoke_yes_old").click().run()
    assert not at.exception
    with ControlPlane() as plane:
        assert plane.virtual_key("old").revoked_at is not None  # type: ignore[union-attr]
    assert "revoked" in at.dataframe[0].value["status"].tolist()


def test_viewer_is_refused_by_core(home: Path) -> None:
    with pytest.raises(PermissionDenied):
        commands.create_key(Actor("viewer", "viewer"), {"name": "sneaky"})


def test_key_is_a_sidebar_filter_and_an_overview_dimension(home: Path) -> None:
    with Router() as r:
        r.complete(ChatRequest([Message("user", "hi")], model="dryrun-small", key="web"))
    at = app("viewer", filters=True).run()
    assert "web" in at.sidebar.multiselect(key="f_key").options
    at.selectbox(key="ov_dim").set_value("key").run()
    assert not at.exception
