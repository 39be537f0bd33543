"""``costline gateway`` (and ``costline api``) told to stop while it starts stops: within
seconds, exit 0 (a drained stop's status), no traceback.

It ignored a SIGTERM from the moment it set the handler that swallows uvicorn's re-raise after
a drain until uvicorn's own handlers were in (the imports, building the app), then served on;
a SIGINT then was a KeyboardInterrupt traceback. The moments: from outside at fixed delays
and as soon as the process handles SIGTERM itself (``/proc``); from inside (code run first in
the child) as a module starts importing or the workers' socket is bound, whatever the load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.child_death import python_m
from tests.servers.ports import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ROOT = Path(__file__).resolve().parents[1]
EXIT_S = 10.0  # from the signal to the exit
# with --workers, uvicorn's supervisor acts on a signal between health checks of its workers
# (a starting one answers when its interpreter is up: up to 5 s), and a worker told to stop
# while it starts finishes starting, then drains
WORKERS_EXIT_S = 30.0

AT_IMPORT = """
import os as _o, signal as _s, sys as _y
class _At:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            _y.meta_path.remove(self)
            _o.kill(_o.getpid(), _s.{signame})
_y.meta_path.insert(0, _At())
"""

AT_BIND = """
import os as _o, signal as _s, socket as _k
def _bind(sock, address, bind=_k.socket.bind):
    bind(sock, address)
    if address[1] == {port}:
        _o.kill(_o.getpid(), _s.{signame})
_k.socket.bind = _bind
"""


def _start(args: list[str], env: dict[str, str], first: str = "") -> subprocess.Popen[str]:
    """``costline ARGS`` (``first``: code run before it) in a child that stops with us."""
    child_env = {**os.environ, "COSTLINE_GATEWAY_ALERT_WORKER": "0"}
    child_env.pop("REDIS_URL", None)
    return subprocess.Popen(
        [*python_m("core.cli", first, signal.SIGTERM), *args],
        cwd=ROOT,
        env={**child_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _handles(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler of its own for ``signum`` (its SigCgt mask)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"exited {proc.returncode} before {what}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.002)


def _ends(proc: subprocess.Popen[str], within: float) -> tuple[int, str, set[int]]:
    """Wait up to ``within`` s for ``proc`` to exit: (status, output, children it had);
    kill it (and them) if it does not."""
    kids: set[int] = set()
    deadline = time.monotonic() + within
    while proc.poll() is None and time.monotonic() < deadline:
        kids |= _children(proc.pid)
        time.sleep(0.05)
    if proc.poll() is None:
        kids |= _children(proc.pid)
        proc.kill()
        for kid in kids:
            if _running(kid):
                os.kill(kid, signal.SIGKILL)
        out = proc.communicate(timeout=10)[0]
        raise AssertionError(f"still running {within:.0f} s after the signal:\n{out[-2000:]}")
    return proc.returncode, proc.communicate(timeout=10)[0], kids


MOMENTS = ["spawned", 0.3, 0.8, "handles SIGTERM"]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_signal_while_the_gateway_starts_stops_it(
    costline_home: Path, moment: str | float, signame: str
) -> None:
    signum = getattr(signal, signame)
    proc = _start(["gateway", "--port", str(free_port())], {})
    if moment == "handles SIGTERM" or signum == signal.SIGINT:
        # Before Costline's handlers are in, a SIGINT meets CPython's own start-up: a
        # KeyboardInterrupt in whatever imports (exit 1 or -2), or, once in CI under two test
        # workers, nothing at all (sent as it was spawned; cause not found, see docs/gateway.md).
        # So SIGINT's moments count from there; SIGTERM keeps its default until then (-15).
        _wait_for("handled SIGTERM", lambda: _handles(proc.pid, signal.SIGTERM), proc)
    if isinstance(moment, float):
        time.sleep(moment)
    # SIGINT and SIGTERM are caught together, before any work: before that, the defaults
    # end it (SIGINT possibly with a traceback from the import it interrupts)
    caught = proc.poll() is None and _handles(proc.pid, signal.SIGTERM)
    proc.send_signal(signum)
    code, out, _ = _ends(proc, EXIT_S)
    if caught:
        assert code == 0, out
        assert "Traceback" not in out, out
    else:
        assert code in (0, -signum), out


@pytest.mark.parametrize(("signame", "status"), [("SIGINT", 0), ("SIGTERM", -signal.SIGTERM)])
def test_a_signal_while_the_api_imports_stops_it(
    costline_home: Path, signame: str, status: int
) -> None:
    """``costline api``: a SIGINT exits 0 (as once serving), no traceback; SIGTERM keeps its
    default, which ends it at once (once serving it ends it too, after the drain)."""
    first = AT_IMPORT.format(module="core.api.app", signame=signame)
    proc = _start(["api", "--port", str(free_port())], {}, first)
    code, out, _ = _ends(proc, 60)  # the signal comes during startup: no time to wait for
    assert code == status, out
    assert "Traceback" not in out and "Costline API on" not in out, out


def _gone_after_exit(kids: set[int]) -> list[int]:
    """The ``kids`` still running 5 s on (the workers; multiprocessing's resource tracker
    ends once its last user did)."""
    deadline = time.monotonic() + 5
    while any(_running(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [k for k in kids if _running(k)]


@pytest.mark.services
@pytest.mark.parametrize("moment", ["socket bound", "handles SIGTERM", "a worker started"])
def test_sigterm_while_the_gateway_starts_its_workers_stops_them(
    costline_home: Path, redis_url: str, moment: str
) -> None:
    """``--workers 2``. "socket bound": sent from inside as the port is bound, after the last
    check before uvicorn's supervisor has handlers: it is passed on to them."""
    port = free_port()
    env = {"REDIS_URL": redis_url, "COSTLINE_REDIS_PREFIX": os.environ["COSTLINE_TEST_PREFIX"]}
    first = AT_BIND.format(port=port, signame="SIGTERM") if moment == "socket bound" else ""
    proc = _start(["gateway", "--port", str(port), "--workers", "2"], env, first)
    if moment == "handles SIGTERM":
        _wait_for("handled SIGTERM", lambda: _handles(proc.pid, signal.SIGTERM), proc)
    elif moment == "a worker started":
        _wait_for("started a worker", lambda: bool(_children(proc.pid)), proc)
    if moment != "socket bound":
        proc.send_signal(signal.SIGTERM)
    code, out, kids = _ends(proc, WORKERS_EXIT_S)
    assert code == 0, out
    assert "Traceback" not in out, out
    assert _gone_after_exit(kids) == []
