"""COSTLINE_LOG_FLUSH_S: how long a router's usage event may wait in its journal before it is
sealed into a segment that readers see (README "Configuration")."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.router import Router
from core.settings import Settings
from core.types import ChatRequest, Message
from core.usage import Reader


def test_a_router_seals_its_journal_after_the_configured_seconds(costline_home: Path) -> None:
    env = {"COSTLINE_HOME": str(costline_home), "COSTLINE_LOG_FLUSH_S": "0.25"}
    settings = Settings.from_env(env)
    assert settings.log_flush_s == 0.25
    with Router(settings) as router:
        assert router._ctx.log.flush_interval_s == 0.25  # the log the router made
        router.complete(ChatRequest(messages=[Message("user", "hi")], model="dryrun-small"))
    with Reader(costline_home) as reader:
        assert len(reader.fetch()) == 1
    assert Settings.from_env({}).log_flush_s == 2.0


@pytest.mark.parametrize("raw", ["soon", "-1", "inf"])
def test_a_bad_flush_interval_is_a_config_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="COSTLINE_LOG_FLUSH_S") as err:
        Settings.from_env({"COSTLINE_LOG_FLUSH_S": raw})
    assert err.value.field == "COSTLINE_LOG_FLUSH_S"
