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


@pytest.fixture(scope="module")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 server on loopback, shared by a test module. Skips when the weed
    binary is missing, unless COSTLINE_REQUIRE_SERVICES=1, where that is a failure."""
    try:
        server = SeaweedS3(tmp_path_factory.mktemp("weed"))
    except WeedUnavailable as exc:
        if REQUIRE_SERVICES:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with server:
        yield server
