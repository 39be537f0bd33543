"""Empty state and demo data: offer to load it, say when it is there, remove it in one click."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.demo import has_demo, load_demo
from core.usage import Reader
from tests.console_support import ADMIN_PASSWORD, app, make_users


@pytest.fixture
def users(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    make_users(costline_home)
    return costline_home


def banner(at) -> list[str]:  # type: ignore[no-untyped-def]
    return [i.value for i in at.info if "Demo data is loaded" in i.value]


def buttons(at) -> set[str]:  # type: ignore[no-untyped-def]
    return {b.key for b in at.button if b.key}


def test_fresh_home_offers_demo_data_then_banner_then_remove(users: Path) -> None:
    at = app("engineer", timeout=60).run()
    assert not at.exception
    assert "demo_load" in buttons(at) and not banner(at)
    assert at.metric[3].label == "Spend in range" and at.metric[3].value == "$0.00"
    at.button(key="demo_load").click().run()
    assert not at.exception
    assert has_demo(users) and banner(at) and "demo_remove" in buttons(at)
    assert "demo_load" not in buttons(at)
    with Reader(users) as reader:
        assert reader.count() > 100_000
    assert at.metric[3].value != "$0.00"
    at.button(key="demo_remove").click().run()
    assert not at.exception
    assert has_demo(users), "removing asks first"
    assert any("Remove the demo data?" in w.value for w in at.warning)
    at.button(key="demo_remove_yes_data").click().run()
    assert not at.exception
    assert any("Demo data removed" in s.value for s in at.success)
    assert not has_demo(users) and not banner(at)
    assert "demo_load" in buttons(at)
    with Reader(users) as reader:
        assert reader.count() == 0


def test_viewer_sees_the_banner_but_may_not_load_or_remove(users: Path) -> None:
    at = app("viewer").run()
    assert not at.exception
    assert "demo_load" not in buttons(at)
    assert "An engineer or admin can load demo data." in [c.value for c in at.caption]
    load_demo(users)
    at.run()
    assert not at.exception
    assert banner(at) and "demo_remove" not in buttons(at)
