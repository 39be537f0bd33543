"""A real `costline gateway` in a subprocess on loopback, and helpers to read what it logged.

The gateway modules' usual fixture (the ``scripted`` upstream is the module-scoped fixture of
``tests/servers/fixtures.py``)::

    @pytest.fixture(scope="module")
    def gw(tmp_path_factory, scripted):
        keys = {"main": {}, "only": {"models": ("dryrun-small",)}}
        with serve(tmp_path_factory.mktemp("gw-x"), keys, upstream_env(scripted)) as proc:
            yield proc

    openai_client(gw).chat.completions.create(...)   # as key "main": gw.keys["main"]
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from core.control import SYSTEM, ControlPlane
from core.keys import KeySpec, issue_key
from core.pricing import load_catalog
from tests.child_clock import preamble
from tests.child_death import python_m
from tests.servers.ports import free_port
from tests.servers.scripted import ScriptedServer

if TYPE_CHECKING:
    import anthropic
    import openai

ROOT = Path(__file__).resolve().parents[1]
METRICS_TOKEN = "test-metrics-token-0123456789"  # COSTLINE_GATEWAY_METRICS_TOKEN of test gateways


class GatewayProcess:
    """``costline gateway`` with its own COSTLINE_HOME; ``stop()`` sends SIGTERM and waits.
    Started from the main thread, it gets SIGTERM when this process dies and stops with its
    workers (``tests/child_death.py``; ``spawn()`` there, ``wait_ready()`` anywhere)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.home = home
        self.port = free_port()
        self.workers = workers
        self.extra_env = dict(env or {})
        self.keys: dict[str, str] = {}  # virtual key name -> secret (``serve``)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="costline-gateway-")  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        return Path(self._log.name).read_bytes()[-n:].decode("utf-8", "replace")

    def start(self, timeout: float = 60.0) -> GatewayProcess:
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_GATEWAY")}
        env.pop("REDIS_URL", None)
        env.update({"COSTLINE_HOME": str(self.home), "PYTHONPATH": str(ROOT)})
        env["COSTLINE_GATEWAY_METRICS_TOKEN"] = METRICS_TOKEN
        env["COSTLINE_LOG_FLUSH_S"] = "0.2"  # events() sees a call's event within ~0.2 s
        env.update(self.extra_env)
        # no death signal off the main thread: the child would get it when that thread ends
        main = threading.current_thread() is threading.main_thread()
        # on this process's clock, moved or not (one worker only)
        cmd = python_m("core.cli", preamble(), signal.SIGTERM if main else None)
        cmd += ["gateway", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> GatewayProcess:
        """Until ``/health/ready`` answers 200 (stopped and an error if it never does)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def metrics(self) -> str:
        """GET /metrics with the metrics token, as Prometheus scrapes it."""
        r = httpx.get(self.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        r.raise_for_status()
        return r.text

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric_sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in Prometheus text ``text``
    (0 when it has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


@contextmanager
def serve(
    home: Path, keys: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> Iterator[GatewayProcess]:
    """A started gateway in ``home`` with ``keys`` issued first (name -> ``KeySpec`` fields);
    their secrets in ``proc.keys``. Stopped on exit."""
    secrets = {name: make_key(home, name, **spec) for name, spec in keys.items()}
    with GatewayProcess(home, dict(env or {})) as proc:
        proc.keys = secrets
        yield proc


def upstream_env(
    srv: ScriptedServer, openai_key: str = "sk-upstream-0123456789", anthropic_key: str = ""
) -> dict[str, str]:
    """Provider settings pointing OpenAI (and, given its key, Anthropic) at ``srv``."""
    env = {"OPENAI_BASE_URL": srv.openai_url, "OPENAI_API_KEY": openai_key}
    if anthropic_key:
        env |= {"ANTHROPIC_BASE_URL": srv.url, "ANTHROPIC_API_KEY": anthropic_key}
    return env


def openai_client(gw: GatewayProcess, key: str = "main", **kw: Any) -> openai.OpenAI:
    """The official ``openai`` SDK against ``gw`` as key ``key`` (no SDK retries)."""
    import openai

    return openai.OpenAI(base_url=gw.base_url, api_key=gw.keys[key], max_retries=0, **kw)


def anthropic_client(gw: GatewayProcess, key: str = "main") -> anthropic.Anthropic:
    """The official ``anthropic`` SDK against ``gw`` as key ``key`` (no SDK retries)."""
    import anthropic

    return anthropic.Anthropic(base_url=gw.url, api_key=gw.keys[key], max_retries=0)


@contextmanager
def control_plane(home: Path) -> Iterator[ControlPlane]:
    """``home``'s control plane, as the gateway in ``home`` reads it (a running gateway sees
    a change within about a second)."""
    old = os.environ.get("COSTLINE_HOME")
    os.environ["COSTLINE_HOME"] = str(home)
    try:
        with ControlPlane(model_exists=load_catalog().has) as plane:
            yield plane
    finally:
        if old is None:
            os.environ.pop("COSTLINE_HOME", None)
        else:
            os.environ["COSTLINE_HOME"] = old


def make_key(home: Path, name: str, **spec: Any) -> str:
    """Issue a key in ``home``'s control plane (as the gateway would see it); the secret."""
    spec = dict(spec)
    with control_plane(home) as plane:
        if "budget_usd" in spec and spec["budget_usd"] is not None:
            spec["budget_usd"] = Decimal(str(spec["budget_usd"]))
        return issue_key(plane, KeySpec(name=name, **spec), SYSTEM).secret


def make_token(home: Path, user: str, role: str) -> str:
    """A console user with ``role`` in ``home`` and an API token for them; the token."""
    with control_plane(home) as plane:
        plane.create_user(user, "password-123", role, SYSTEM)
        return plane.create_api_token(user, SYSTEM, name="test")[0]


def events(home: Path, want: int | None = None, timeout: float = 15.0, **where: Any) -> list[Any]:
    """The usage events in ``home`` (UsageEvent objects), waiting until ``want`` match ``where``
    (a gateway started here seals its journal about 0.2 s after its first append:
    COSTLINE_LOG_FLUSH_S)."""
    from core.usage import Reader

    deadline = time.monotonic() + timeout
    while True:
        with Reader(home) as reader:
            got = reader.fetch()
        rows = [e for e in got if all(getattr(e, k) == v for k, v in where.items())]
        if want is None or len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
