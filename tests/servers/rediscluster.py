"""A real Redis Cluster on loopback: three masters, three replicas (redis-server processes
started with ``--cluster-enabled yes``, joined by ``redis-cli --cluster create``).

    with RedisClusterServers(tmp_path / "rc") as rc:
        rc.url                       # redis+cluster://127.0.0.1:<port>
        rc.kill_master_of("{tag}")   # SIGKILL the master serving that key; its replica takes over
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.servers.seaweed import port_pair

NODE_TIMEOUT_MS = 1000


class Unavailable(RuntimeError):
    pass


class RedisClusterServers:
    def __init__(self, data_dir: Path, nodes: int = 6) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} is not installed")
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = [port_pair() for _ in range(nodes)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        cmd = [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-replica-validity-factor", "0",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(node_dir),
            "--logfile", str(node_dir / "redis.log"),
        ]  # fmt: skip
        self.procs[port] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        for port in self.ports:
            self._start_node(port)
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                try:
                    if self.client(port).ping():
                        break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        cmd = ["redis-cli", "--cluster", "create"]
        cmd += [f"127.0.0.1:{p}" for p in self.ports]
        cmd += ["--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
        self.wait_ok(timeout)
        self.wait_replicas(timeout)
        return self

    def wait_replicas(self, timeout: float = 30.0) -> None:
        """Until every replica is in sync with its master (before that it cannot take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles = [self.client(p).info("replication") for p in self.ports]
            replicas = [r for r in roles if r.get("role") == "slave"]
            if len(replicas) == len(self.ports) // 2 and all(
                r.get("master_link_status") == "up" for r in replicas
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("Redis Cluster replicas did not sync")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and each slot has a master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                live = [p for p, proc in self.procs.items() if proc.poll() is None]
                if all(self.client(p).cluster("info")["cluster_state"] == "ok" for p in live):
                    return
            except (redis.RedisError, KeyError):
                pass
            time.sleep(0.1)
        raise RuntimeError("Redis Cluster did not reach cluster_state:ok")

    def wait_failover(self, killed: int, key: str, timeout: float = 30.0) -> int:
        """Until a live replica was promoted for ``key``'s slot (the master ``killed`` used to
        serve it) and every live node says cluster_state:ok; the new master's port.

        ``wait_ok`` alone is not enough right after a kill: the nodes still say ok until they
        notice the dead master (``NODE_TIMEOUT_MS``), so it returns before the failover."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, RuntimeError):
                port = self.master_of(key)
                if port != killed:
                    self.wait_ok(max(0.1, deadline - time.monotonic()))
                    return port
            time.sleep(0.1)
        raise RuntimeError(f"no replica was promoted for {key!r} after {killed} died")

    def master_of(self, key: str) -> int:
        live = [p for p, proc in self.procs.items() if proc.poll() is None]
        slot = int(self.client(live[0]).cluster("keyslot", key))
        for port, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            info: Any = self.client(port).info("replication")
            if info.get("role") != "master":
                continue
            for row in self.client(port).cluster("slots"):
                if row[0] <= slot <= row[1] and int(row[2][1]) == port:
                    return port
        raise RuntimeError(f"no master for slot {slot}")

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def kill_master_of(self, key: str) -> int:
        port = self.master_of(key)
        self.kill(port)
        return port

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.wait(10)

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
