"""Admin's audit log: filters by who, what and when, and each change in words (before → after)
instead of raw JSON."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core import clock
from core.control import Actor, Budget, ControlPlane
from tests.console_support import ADMIN_PASSWORD, app, make_users


@pytest.fixture
def at(costline_home: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    engineer = Actor("engineer", "engineer")
    with ControlPlane() as plane:
        plane.upsert_budget(Budget(id="team", name="Team", limit_usd=Decimal(60)), engineer)
        plane.upsert_budget(Budget(id="team", name="Team", limit_usd=Decimal(5)), engineer)
    at = app("admin").run()
    at.switch_page("app_pages/admin.py").run()
    assert not at.exception
    return at


def audit(at):  # type: ignore[no-untyped-def]
    return next(d.value for d in at.dataframe if "changes" in d.value.columns)


def test_audit_changes_read_as_words(at) -> None:  # type: ignore[no-untyped-def]
    log = audit(at)
    assert not [c for c in log.columns if c in ("before", "after")]
    edit = log[log["what"] == "budget team"]["changes"].tolist()
    assert edit[0] == "limit usd: 60 → 5" and edit[1].startswith("created: ")
    assert "{" not in edit[1] and "name=Team" in edit[1]


def test_audit_filters_by_who_what_and_when(at) -> None:  # type: ignore[no-untyped-def]
    at.selectbox(key="adm_audit_who").set_value("engineer").run()
    log = audit(at)
    assert set(log["actor"]) == {"engineer"} and len(log) == 2
    at.selectbox(key="adm_audit_who").set_value(None)
    at.selectbox(key="adm_audit_what").set_value("user").run()
    log = audit(at)
    assert set(log["what"].str.split().str[0]) == {"user"} and len(log) >= 3
    today = clock.today()
    at.date_input(key="adm_audit_when").set_value((today - timedelta(days=9), today)).run()
    assert len(audit(at)) == len(log)
    past = (today - timedelta(days=9), today - timedelta(days=2))
    at.date_input(key="adm_audit_when").set_value(past).run()
    assert not at.exception
    assert "No entries match these filters on this page." in [i.value for i in at.info]


def test_users_table_reads_local_times_and_counts_with_separators(at) -> None:  # type: ignore[no-untyped-def]
    users = next(d for d in at.dataframe if "username" in d.value.columns)
    assert users.value["locked until"].tolist() == ["", "", ""]
    assert not any("+00:00" in str(v) for v in users.value["created"])
    assert '"localized"' in users.proto.columns or "localized" in str(users.proto)
