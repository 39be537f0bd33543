"""Shared fixtures: every test gets its own COSTLINE_HOME; services skip or fail clearly.

``COSTLINE_TEST_TRAVEL="2028-02-29 12:00"`` runs the whole session with this process's clock
moved there and ticking (time-machine; a time without a zone is UTC), to show the suite does
not depend on the day it runs. The Python processes tests start (gateways and their workers,
console servers, CLI runs) travel with it: a ``.pth`` file in the interpreter's site-packages,
there only while a session travels, moves each one's clock to this process's as it starts
(``COSTLINE_TEST_CHILD_CLOCK``: the moved wall clock minus CLOCK_MONOTONIC). Redis, PostgreSQL
and Chromium keep the real clock."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.servers.fixtures"]

REQUIRE_SERVICES = os.environ.get("COSTLINE_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("COSTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN_URL = os.environ.get(
    "COSTLINE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


_travel: Any = None
_child_hook: Path | None = None  # the .pth file this process wrote, removed at its end
CHILD_CLOCK = "COSTLINE_TEST_CHILD_CLOCK"
CHILD_HOOK = (
    'import os; exec(\'import time, time_machine\\ntime_machine.travel(float(os.environ["{var}"])'
    " + time.monotonic(), tick=True).start()') if os.environ.get('{var}') else None\n"
)


def pytest_configure(config: pytest.Config) -> None:
    global _travel
    dest = os.environ.get("COSTLINE_TEST_TRAVEL")
    if dest:
        import time

        import time_machine

        at = datetime.fromisoformat(dest)
        _travel = time_machine.travel(at if at.tzinfo else at.replace(tzinfo=UTC), tick=True)
        _travel.start()
        if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", 0):
            # a process that runs tests (not xdist's controller, whose workers would import
            # time-machine before pytest could rewrite its asserts): its children's clock
            os.environ[CHILD_CLOCK] = repr(time.time() - time.monotonic())
        _install_child_hook()


def _install_child_hook() -> None:
    """Every Python child of this interpreter runs its site-packages' .pth files first."""
    global _child_hook
    import site

    path = Path(site.getsitepackages()[0]) / "_costline_test_clock.pth"
    if not path.exists():
        path.write_text(CHILD_HOOK.format(var=CHILD_CLOCK))
        _child_hook = path


def pytest_unconfigure(config: pytest.Config) -> None:
    if _travel is not None:
        _travel.stop()
    if _child_hook is not None:
        _child_hook.unlink(missing_ok=True)


def pytest_report_header(config: pytest.Config) -> str | None:
    dest = os.environ.get("COSTLINE_TEST_TRAVEL")
    return f"clock travelled to {dest} (COSTLINE_TEST_TRAVEL)" if dest else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under COSTLINE_REQUIRE_SERVICES=1 (CI) no test may skip, however it skips (a skipif
    mark, importorskip, a missing binary, model or browser): a skip is reported as a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under COSTLINE_REQUIRE_SERVICES=1: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """The same for a whole module skipped while it is collected (a module-level
    ``importorskip`` or ``skip(allow_module_level=True)``): a collection error in CI."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if REQUIRE_SERVICES and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under COSTLINE_REQUIRE_SERVICES=1: {report.longrepr}"


@pytest.fixture(autouse=True)
def costline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "costline-home"
    home.mkdir()
    monkeypatch.setenv("COSTLINE_HOME", str(home))
    return home


@pytest.fixture
def console_home(costline_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """COSTLINE_HOME holding the console tests' sample data and users (admin's password is
    ``tests.console_support.ADMIN_PASSWORD``)."""
    from tests.console_support import ADMIN_PASSWORD, make_users, sample_data

    monkeypatch.setenv("COSTLINE_ADMIN_PASSWORD", ADMIN_PASSWORD)
    sample_data(costline_home)
    make_users(costline_home)
    return costline_home


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when a service is down, unless CI requires services."""
    if _port_open(host, port):
        return
    msg = f"{name} not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(msg + " and COSTLINE_REQUIRE_SERVICES=1")
    pytest.skip(msg)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL plus a unique key prefix in COSTLINE_TEST_PREFIX; keys are removed after."""
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    prefix = f"costline-test-{uuid.uuid4().hex[:8]}:"
    os.environ["COSTLINE_TEST_PREFIX"] = prefix
    yield REDIS_URL
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Live state on each backend: in-process memory, then real Redis (its own key prefix)."""
    from core.state import MemoryState, RedisState

    if request.param == "memory":
        yield MemoryState("t:")
        return
    url = request.getfixturevalue("redis_url")
    rs = RedisState(url, os.environ["COSTLINE_TEST_PREFIX"], socket_timeout=5.0)
    yield rs
    rs.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = f"costline_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as c:
        c.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop what Streamlit's caches hold (readers, routers: DuckDB connections) while the
    interpreter is whole, so none is left for finalisation to report as leaked."""
    import gc
    import sys

    if "streamlit" in sys.modules:
        import logging

        import streamlit as st

        for name in list(logging.root.manager.loggerDict):  # "No runtime found" notices
            if name.startswith("streamlit"):
                logging.getLogger(name).setLevel(logging.ERROR)
        st.cache_resource.clear()
        st.cache_data.clear()
    gc.collect()
