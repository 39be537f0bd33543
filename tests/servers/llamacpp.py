"""The real llama.cpp server (``python -m llama_cpp.server``) serving SmolLM2-135M.

Its OpenAI-compatible API is what Ollama, vLLM and TGI also speak. Note: its streamed
responses carry no usage block, so the OpenAI adapter returns ``usage=None`` for them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from core.providers.local import n_ctx
from tests.servers.ports import free_port

SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)
MODEL_ALIAS = "smollm2"


class Unavailable(RuntimeError):
    """llama-cpp-python[server] or the GGUF is missing (a reason to skip)."""


def missing_modules() -> list[str]:
    return [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]


class LlamaCppServer:
    """Start with ``with LlamaCppServer() as srv: srv.base_url`` (".../v1")."""

    def __init__(self, model_path: Path | None = None, startup_timeout: float = 120.0) -> None:
        self.model_path = model_path
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        # closed (and deleted) in stop()
        self._log = tempfile.NamedTemporaryFile(prefix="llamacpp-server-")  # noqa: SIM115

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return Path(self._log.name).read_bytes()[-n:].decode("utf-8", "replace")

    def start(self) -> LlamaCppServer:
        missing = missing_modules()
        if missing:
            raise Unavailable(
                f"llama.cpp server needs {', '.join(missing)}: pip install 'costline[server]'"
            )
        if self.model_path is None:
            from core.errors import ConfigError
            from core.providers.local import smollm2_path

            try:
                self.model_path = smollm2_path()
            except ConfigError as exc:
                raise Unavailable(str(exc)) from exc
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(n_ctx()),  # the catalog's window: the router's pre-check agrees with it
            "--model_alias",
            MODEL_ALIAS,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama.cpp server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.base_url + "/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"llama.cpp server not ready after {self.startup_timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
