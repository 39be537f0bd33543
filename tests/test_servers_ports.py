"""The test servers' ports: under pytest-xdist two workers never pick the same free port
(one of them may be starting a server on it)."""

from __future__ import annotations

import socket

import pytest

from tests.servers.ports import free_port


@pytest.mark.parametrize("workers", [2, 3])
def test_each_xdist_worker_picks_only_its_own_share_of_ports(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    picked: dict[int, set[int]] = {}
    for worker in range(workers):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        picked[worker] = {free_port() for _ in range(30)}
        assert {p // 2 % workers for p in picked[worker]} == {worker}
    assert not set.intersection(*picked.values())


def test_a_picked_port_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", free_port()))


def test_seaweed_starts_on_new_ports_when_its_grpc_port_was_taken(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """weed binds each port + 10000 for gRPC; an outgoing connection's ephemeral port can
    take it between the pick and the bind (weed then exits 255, "address already in use",
    seen once in a full run). A first start tries new ports."""
    from tests.servers.seaweed import SeaweedS3

    weed = SeaweedS3(tmp_path / "weed")
    first = weed.ports["s3"]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", first + 10000))
        blocker.listen()
        weed.start()
    try:
        assert weed.ports["s3"] != first
        weed.create_bucket("costline-port-retry")
        assert weed.filesystem().get_file_info("costline-port-retry").type.name == "Directory"
    finally:
        weed.stop()
