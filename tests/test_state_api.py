"""The public face of core.state: a complete __all__, protocol conformance, no UI imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import core.state
from core.state import BudgetItem, MemoryState, RateItem, RedisState, ResilientState, State


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, obj in vars(core.state).items()
        if not name.startswith("_") and getattr(obj, "__module__", "").startswith("core.state")
    }
    assert core.state.__all__ == sorted(core.state.__all__)
    assert public <= set(core.state.__all__)


def test_every_backend_satisfies_the_protocol() -> None:
    primary = RedisState("redis://127.0.0.1:1/0")  # never connected: construction is lazy
    for st in (MemoryState(), primary, ResilientState(primary)):
        assert isinstance(st, State)


def test_items_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        RateItem("k", "token_bucket", 0, 60.0)
    with pytest.raises(ValueError):
        RateItem("k", "leaky", 10, 60.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BudgetItem("k", 100, -1)
    with pytest.raises(ValueError):
        ResilientState(primary=RedisState("redis://127.0.0.1:1/0"), policy="maybe")  # type: ignore[arg-type]


def test_import_pulls_in_no_ui_packages() -> None:
    code = (
        "import sys, core.state; "
        "bad = {'streamlit', 'altair', 'prophet'} & set(sys.modules); "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
