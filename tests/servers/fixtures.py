"""Pytest fixtures for the real test servers. Load them in a test module with:

pytest_plugins = ["tests.servers.fixtures"]
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.servers.llamacpp import LlamaCppServer, Unavailable
from tests.servers.scripted import ScriptedServer
from tests.servers.seaweed import SeaweedS3
from tests.servers.seaweed import Unavailable as WeedUnavailable

REQUIRE_SERVICES = os.environ.get("COSTLINE_REQUIRE_SERVICES") == "1"


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A fresh scripted provider server on 127.0.0.1 for one test."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    """One scripted provider server shared by a test module (the gateway modules' upstream)."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="session")
def llamacpp_url() -> Iterator[str]:
    """Base URL (".../v1") of a real llama.cpp server with SmolLM2-135M, shared by the session.

    Skips when llama-cpp-python[server] or the model is missing, unless
    COSTLINE_REQUIRE_SERVICES=1, where that is a failure.
    """
    server = LlamaCppServer()
    try:
        server.start()
    except Unavailable as exc:
        server.stop()
        if REQUIRE_SERVICES:
            pytest.fail(f"{exc} (COSTLINE_REQUIRE_SERVICES=1)")
        pytest.skip(str(exc))
    except BaseException:
        server.stop()  # did not come up: the error (with the server's log) fails the tests
        raise
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def weed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 server on loopback, started once for the session (a start takes
    several seconds). Skips when the weed binary is missing, unless
    COSTLINE_REQUIRE_SERVICES=1, where that is a failure."""
    try:
        server = SeaweedS3(tmp_path_factory.mktemp("weed"))
    except WeedUnavailable as exc:
        if REQUIRE_SERVICES:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with server:
        yield server


@pytest.fixture
def weed(weed_server: SeaweedS3) -> SeaweedS3:
    """The session's SeaweedFS S3 server, running: a test that paused it (an outage) and
    failed before resuming it does not leave it away for the next test. Tests share it, each
    in its own bucket."""
    if weed_server.proc is None or weed_server.proc.poll() is not None:
        weed_server.pause()  # reaps a process that died
        weed_server.resume()
    return weed_server
