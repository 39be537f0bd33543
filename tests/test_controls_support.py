"""Helpers for the spend-control tests: a real control plane with real users, a Router with
every control on (dryrun provider, zero latency), and the usage events it logged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from core import clock, tokens
from core.control import SYSTEM, Actor, Budget, ControlPlane, RoutingPolicy
from core.control.auth import create_user
from core.controls import Controls
from core.errors import BudgetExceeded
from core.pricing import load_catalog, max_cost
from core.router import Router
from core.settings import Settings
from core.state import State
from core.types import ChatRequest, Message
from core.usage import Reader
from tests.child_clock import preamble
from tests.child_death import die_with_parent
from tests.servers.ports import free_port

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
ENGINEER = Actor("eve", "engineer")
ADMIN = Actor("ada", "admin")
POLL_S = 0.02  # routers in these tests re-read the control plane this often
MATCH = dict(org="acme", project="web", user="ann", task="summarize")
OTHER = dict(org="globex", project="api", user="bob", task="other")
PROMPT = "Summarise this quarter's cloud bill in one paragraph."
OUT = 100  # max_tokens of every budget-test call: a known reservation


def make_plane(url: str | None = None) -> ControlPlane:
    """A migrated control plane (SQLite in $COSTLINE_HOME unless ``url``) with an engineer
    and an admin who really exist in its users table (the store re-checks every write)."""
    plane = ControlPlane(url, model_exists=load_catalog().has, scrypt_n=2**4)  # test-only cost
    create_user(plane, ENGINEER.username, PASSWORD, ENGINEER.role, SYSTEM)
    create_user(plane, ADMIN.username, PASSWORD, ADMIN.role, SYSTEM)
    return plane


def make_router(
    plane: ControlPlane, state: State | None = None, *, poll_s: float = POLL_S, **kw: Any
) -> Router:
    controls = Controls(load_catalog(), plane=plane, state=state, poll_s=poll_s)
    return Router(Settings.from_env(), controls=controls, **kw)


def ask(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message("user", text)], **kw)


# ---- budgets ------------------------------------------------------------------------------


def budget_plane(url: str | None = None) -> ControlPlane:
    """A plane whose task 'summarize' goes to dryrun-large and 'other' to dryrun-small."""
    plane = make_plane(url)
    plane.upsert_policy(RoutingPolicy(task="summarize", primary_model="dryrun-large"), ENGINEER)
    plane.upsert_policy(RoutingPolicy(task="other", primary_model="dryrun-small"), ENGINEER)
    return plane


def call(text: str = PROMPT, **kw: Any) -> ChatRequest:
    kw.setdefault("max_tokens", OUT)
    return ask(text, **kw)


def estimate(router: Router, model: str, req: ChatRequest) -> int:
    """The reservation the router makes for ``req`` on ``model`` (picodollars)."""
    n = tokens.count_messages(model, req.messages).tokens
    return max_cost(router.catalog.lookup(model, prompt_tokens=n), n, req.max_tokens or 0)


def budget(plane: ControlPlane, id: str, **kw: Any) -> Budget:
    kw.setdefault("name", id)
    kw.setdefault("action", "block")
    return plane.upsert_budget(Budget(id=id, **kw), ENGINEER)


def spend_until_blocked(router: Router, **kw: Any) -> tuple[int, BudgetExceeded]:
    """Distinct calls (up to 200) until one is blocked: (picodollars spent, the error)."""
    spent = 0
    for i in range(200):
        try:
            spent += router.complete(call(f"{PROMPT} #{i}", **kw)).cost.total
        except BudgetExceeded as exc:
            return spent, exc
    raise AssertionError(f"not blocked after 200 calls ({spent} pUSD)")


def status(router: Router, budget_id: str) -> Any:
    """The live BudgetStatus of one budget, as the console shows it."""
    assert router.controls is not None
    snap = router.controls.snapshot()
    return next(s for s in router.controls.guard.status(snap.budgets) if s.budget.id == budget_id)


def sync(router: Router) -> None:
    """Make the router see the latest control-plane version now (no waiting for the poll)."""
    assert router.controls is not None
    router.controls.watcher.refresh()
    router.controls.snapshot()


def events(router: Router) -> pd.DataFrame:
    """Every usage event the router logged, oldest first."""
    router.log.flush()
    with Reader(router.settings.home) as r:
        return r.events(order_by="ts", descending=False)


def window_label(budget: Budget) -> str:
    return budget.window_key(clock.now())


def usd(picousd: int) -> Decimal:
    return Decimal(picousd).scaleb(-12)


@dataclass
class RedisServer:
    """A private redis-server on its own port (never the shared one), no persistence."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """kill -9 and wait: the port is free again when this returns."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a router subprocess: same COSTLINE_HOME, no inherited REDIS_URL."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def python(code: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """A Python child running ``code`` with ``args`` on this process's clock, moved or not
    (``tests/child_clock.py``), killed when this process dies (``tests/child_death.py``);
    read its stdout lines."""
    return subprocess.Popen(
        [sys.executable, "-c", die_with_parent() + preamble() + textwrap.dedent(code), *args],
        env=child_env(**env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
