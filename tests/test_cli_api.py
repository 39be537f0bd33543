"""`costline tokens`, `costline prune` and `costline worker --once` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core import clock
from core.control import SYSTEM, ControlPlane
from core.usage import Reader, UsageEvent, UsageLog
from tests.child_clock import preamble
from tests.child_death import python_m

REPO = Path(__file__).resolve().parents[1]


def costline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*python_m("core.cli", preamble()), *args],  # on this process's clock, moved or not
        cwd=REPO,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tokens_create_list_revoke(costline_home: Path) -> None:
    with ControlPlane() as plane:
        plane.create_user("ann", "password-123", "viewer", SYSTEM)
    missing = costline("tokens", "create")
    assert missing.returncode == 2 and "--user" in missing.stderr
    done = costline("tokens", "create", "--user", "ann", "--name", "finance")
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    with ControlPlane() as plane:
        assert plane.token_actor(secret).username == "ann"
        (token,) = plane.api_tokens()
    listing = costline("tokens", "list")
    assert token.id in listing.stdout and "active" in listing.stdout
    assert costline("tokens", "revoke", "--id", token.id).returncode == 0
    assert "revoked" in costline("tokens", "list").stdout
    assert costline("tokens", "revoke", "--id", token.id).returncode == 2
    unknown = costline("tokens", "create", "--user", "nobody")
    assert unknown.returncode != 0 and "no user 'nobody'" in unknown.stderr


def test_prune_uses_the_setting_or_days(costline_home: Path) -> None:
    old = clock.now() - timedelta(days=400)
    with UsageLog(costline_home, compact_threshold=0) as log:
        log.append_many(
            UsageEvent(request_id=f"r{i}", ts=old, provider="p", model="m", cost_picousd=5)
            for i in range(3)
        )
    nothing = costline("prune")
    assert nothing.returncode == 0 and "No retention set" in nothing.stdout
    with ControlPlane() as plane:
        plane.set_setting("retention_days", 365, SYSTEM)
    done = costline("prune")
    assert done.returncode == 0 and "Removed 1 segments (3 raw events" in done.stdout
    with Reader(costline_home) as reader:
        assert reader.count() == 0 and reader.totals()["cost_picousd"] == 15


def test_prune_past_the_settings_maximum_is_refused_not_a_traceback(costline_home: Path) -> None:
    """``costline prune --days 1000000`` reached before year 1 and died with an
    OverflowError traceback; it is refused as the retention_days setting refuses it."""
    from core.errors import ConfigError
    from core.usage import prune

    done = costline("prune", "--days", "1000000")
    assert done.returncode == 2, done.stderr
    assert "retention_days: at most 36,500 days" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ConfigError, match="retention_days"):
        prune(costline_home, 36_501)
    assert prune(costline_home, 36_500).segments == 0
    with ControlPlane() as plane:  # the setting's own bounds are the same
        with pytest.raises(ConfigError, match="retention_days"):
            plane.set_setting("retention_days", 36_501, SYSTEM)
        plane.set_setting("retention_days", 36_500, SYSTEM)


def test_worker_once_scans_without_channels(costline_home: Path) -> None:
    done = costline("worker", "--once")
    assert done.returncode == 0, done.stderr
    assert "delivered 0" in done.stdout


def test_worker_once_counts_only_what_reached_every_channel(costline_home: Path) -> None:
    """A webhook that answers 500: `costline worker --once` said "delivered 1" and exited 0
    (it counted alerts attempted); now it says none was delivered, one waits for a retry,
    and exits 1 for cron to report. Once the receiver answers: "delivered 1", exit 0."""
    from core.control import tables, write_tx
    from tests.servers.sinks import WebhookServer

    with ControlPlane() as plane:
        plane.record_alert("b1", "w", 90, message="Ops at 90%")
        plane.set_setting("alert_thresholds", {"anomalies": False}, SYSTEM)
        with WebhookServer(fail_first=3) as hook:
            plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
            failed = costline("worker", "--once")
        assert failed.returncode == 1, (failed.stdout, failed.stderr)
        assert "delivered 0 of 1 (1 to retry)" in failed.stdout, failed.stdout
        assert "1 alerts not delivered to every channel" in failed.stderr, failed.stderr
        assert hook.posts == []
        (alert,) = plane.alerts()
        assert alert.notify_state == "pending"
        with write_tx(plane.engine) as conn:  # the one-minute backoff has passed
            conn.execute(tables.alerts.update().values(notify_next_at=None))
        with WebhookServer() as hook:
            plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
            done = costline("worker", "--once")
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "delivered 1," in done.stdout and len(hook.posts) == 1, done.stdout


def test_worker_once_leaves_alerts_to_the_worker_holding_the_lease(costline_home: Path) -> None:
    """A gateway's worker holds the lease: `costline worker --once` (from cron) scanned and
    delivered beside it, though only the holder may; now it says who holds it and does
    nothing. Once the lease is free it takes it for its run and gives it back."""
    from core.worker import LEASE
    from tests.servers.sinks import WebhookServer

    with ControlPlane() as plane:
        plane.record_alert("b1", "w", 90, message="Ops at 90%")
        plane.set_setting("alert_thresholds", {"anomalies": False}, SYSTEM)
        assert plane.acquire_lease(LEASE, "gateway-host:123:abc", timedelta(minutes=5))
        with WebhookServer() as hook:
            plane.set_setting("notifications", {"webhook_urls": [hook.url]}, SYSTEM)
            held = costline("worker", "--once")
            assert held.returncode == 0, held.stderr
            assert "Another alert worker holds the lease (gateway-host:123:abc" in held.stdout
            assert hook.posts == [], held.stdout
            plane.release_lease(LEASE, "gateway-host:123:abc")
            free = costline("worker", "--once")
            assert free.returncode == 0, free.stderr
            assert "delivered 1," in free.stdout and len(hook.posts) == 1, free.stdout
        assert plane.lease_holder(LEASE) is None


def test_tokens_list_says_none_and_speaks_json(costline_home: Path) -> None:
    """Before, ``tokens list`` printed nothing at all when there were none, and had no
    ``--json`` (``keys list`` has both)."""
    empty = costline("tokens", "list")
    assert empty.returncode == 0 and "No tokens yet" in empty.stdout, empty.stderr
    assert json.loads(costline("tokens", "list", "--json").stdout) == []
    with ControlPlane() as plane:
        plane.create_user("ann", "password-123", "viewer", SYSTEM)
        _, token = plane.create_api_token("ann", SYSTEM, name="finance")
    got = costline("tokens", "list", "--json")
    assert got.returncode == 0, got.stderr
    (row,) = json.loads(got.stdout)
    assert row["id"] == token.id and row["user"] == "ann" and row["status"] == "active"
    assert "secret" not in row and row["prefix"].startswith(token.prefix)
    assert "No tokens for bob yet" in costline("tokens", "list", "--user", "bob").stdout


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["create", "--user", "ann", "--id", "tok_1"], "--id"),
        (["revoke", "--id", "tok_1", "--user", "ann"], "--user"),
        (["list", "--name", "x"], "--name"),
        (["revoke", "--id", "tok_1", "--json"], "--json"),
    ],
)
def test_tokens_refuses_a_flag_its_action_does_not_take(
    costline_home: Path, argv: list[str], flag: str
) -> None:
    """Before, ``tokens create --id X`` ignored ``--id`` (and made a token)."""
    done = costline("tokens", *argv)
    assert done.returncode == 2 and flag in done.stderr, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    with ControlPlane() as plane:
        assert plane.api_tokens() == []


@pytest.mark.parametrize(
    ("command", "path"), [("api", "/api/v1/openapi.json"), ("gateway", "/health/live")]
)
def test_an_ipv6_host_is_printed_bracketed(costline_home: Path, command: str, path: str) -> None:
    """``--host ::1`` printed ``http://::1:PORT``, not a URL; now ``http://[::1]:PORT``, and
    it answers."""
    from tests.servers.ports import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            *python_m("core.cli", signum=signal.SIGTERM),
            command,
            "--host",
            "::1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env={**os.environ, "COSTLINE_GATEWAY_ALERT_WORKER": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://[::1]:{port}/" in line, line
        url = line.split(" on ", 1)[1].split()[0]
        base = url.split("/", 3)[:3]
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get("/".join(base) + path, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
