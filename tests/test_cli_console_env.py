"""`costline console` started outside the repository still gets the console's Streamlit
settings: each one in .streamlit/config.toml that is not theme has an environment default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from core.cli import CONSOLE_STREAMLIT_ENV, console_env

ROOT = Path(__file__).resolve().parents[1]


def _env_name(section: str, key: str) -> str:
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", key)  # postScriptGC -> post_Script_GC
    return f"STREAMLIT_{section}_{snake}".upper()


def test_every_non_theme_setting_of_config_toml_has_the_same_env_default() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    wanted = {
        _env_name(section, key): str(value).lower()
        for section, values in config.items()
        if section != "theme"
        for key, value in values.items()
        if not (section == "server" and key == "runOnSave")  # Streamlit's own default
    }
    assert wanted  # the file was read
    assert {k: CONSOLE_STREAMLIT_ENV.get(k) for k in wanted} == wanted


def test_the_users_streamlit_settings_win() -> None:
    env = console_env({"STREAMLIT_SERVER_FILE_WATCHER_TYPE": "auto", "PATH": "/bin"})
    assert env["STREAMLIT_SERVER_FILE_WATCHER_TYPE"] == "auto"
    assert env["STREAMLIT_CLIENT_TOOLBAR_MODE"] == "viewer" and env["PATH"] == "/bin"
