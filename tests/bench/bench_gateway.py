"""The gateway against a mock OpenAI upstream on loopback, measured directly in the same run.

``gateway_added_*``: latency through the gateway minus latency straight to the mock (c=1,
interleaved so drift cancels). CPU per request comes from the gateway process's own
counters (/proc utime + stime) over a c=16 run. RSS growth: after 100k requests minus after
10k. ``upstream_transport_cpu_ms_*``: a thin async pass-through to the mock over httpx's
default transport and over httpx-aiohttp, CPU of this process per request (the choice the
gateway's upstream client makes); ``gateway_cpu_ms_per_request_httpx_transport`` repeats the
non-streamed CPU figure with the gateway on httpx's default transport. The gateway runs with
its alert worker off (``COSTLINE_GATEWAY_ALERT_WORKER=0``): it scans every few minutes, not
per request, and a scan in the middle of a run would show up as request CPU and RSS.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from core.control import SYSTEM, ControlPlane
from core.keys import KeySpec, issue_key
from tests.gateway_support import GatewayProcess
from tests.servers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
SBODY = BODY[:-1] + b',"stream":true}'


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"content-length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Conn:
    """A keep-alive HTTP/1.1 connection that reads one response at a time."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self) -> None:
        data = self.s.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def roundtrip(self, raw: bytes, marker: bytes | None = None) -> float | None:
        """Send, read the whole response; seconds until ``marker`` was seen (if given)."""
        t0 = time.perf_counter()
        self.s.sendall(raw)
        first = None
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lower = head.lower()
        if b"content-length:" in lower:
            n = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            while len(self.buf) < n:
                self._fill()
            self.buf = self.buf[n:]
            return None
        while marker is not None and first is None:  # chunked (SSE)
            if marker in self.buf:
                first = time.perf_counter() - t0
                break
            self._fill()
        while b"0\r\n\r\n" not in self.buf:
            self._fill()
        self.buf = self.buf.split(b"0\r\n\r\n", 1)[1]
        return first


def latency(gw_port: int, up_port: int, key: str, n: int) -> tuple[list[float], list[float]]:
    g, d = Conn(gw_port), Conn(up_port)
    h = {"authorization": f"Bearer {key}", "x-costline-cache": "no-store"}
    graw = request("/v1/chat/completions", BODY, h)
    draw = request("/v1/chat/completions", BODY, {})
    gt, dt = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        d.roundtrip(draw)
        t1 = time.perf_counter()
        g.roundtrip(graw)
        t2 = time.perf_counter()
        dt.append(t1 - t0)
        gt.append(t2 - t1)
    return sorted(gt), sorted(dt)


def ttft(gw_port: int, up_port: int, key: str, n: int) -> tuple[list[float], list[float]]:
    g, d = Conn(gw_port), Conn(up_port)
    h = {"authorization": f"Bearer {key}", "x-costline-cache": "no-store"}
    graw = request("/v1/chat/completions", SBODY, h)
    draw = request("/v1/chat/completions", SBODY, {})
    gt, dt = [], []
    for _ in range(n):
        dt.append(d.roundtrip(draw, b"word0") or 0.0)
        gt.append(g.roundtrip(graw, b"word0") or 0.0)
    return sorted(gt), sorted(dt)


async def _load(port: int, key: str, n: int, c: int, stream: bool) -> float:
    """``n`` requests at concurrency ``c``; wall seconds."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    h = {
        "authorization": f"Bearer {key}",
        "x-costline-cache": "no-store",
        "content-type": "application/json",
    }
    body = SBODY if stream else BODY
    left = [n]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                async with s.post(url, data=body, headers=h) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"status {r.status}: {await r.text()}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        return time.perf_counter() - t0


def load(port: int, key: str, n: int, c: int = 16, stream: bool = False) -> float:
    return asyncio.run(_load(port, key, n, c, stream))


def cpu_per_request(gw: GatewayProcess, key: str, n: int, stream: bool) -> tuple[float, float]:
    """(gateway CPU ms per request, requests per second) over ``n`` requests at c=16."""
    assert gw.proc is not None
    c0 = cpu_s(gw.proc.pid)
    wall = load(gw.port, key, n, stream=stream)
    return (cpu_s(gw.proc.pid) - c0) / n * 1000, n / wall


async def _passthrough(port: int, kind: str, n: int, c: int = 16) -> float:
    from core.gateway import upstream_client

    client = upstream_client(kind)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    h = {"content-type": "application/json"}
    for _ in range(200):
        (await client.post(url, content=BODY, headers=h)).read()
    left = [n]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            r = await client.post(url, content=BODY, headers=h)
            await r.aread()

    c0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(c)))
    spent = time.process_time() - c0
    await client.aclose()
    return spent / n * 1000


def q(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def gateway_env(up_port: int) -> dict[str, str]:
    """The measured gateway's settings: the mock as OpenAI, shipped defaults otherwise."""
    from core.settings import Settings

    return {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "OPENAI_API_KEY": "sk-mock",
        # the alert worker scans every few minutes, not per request: measured on its own
        "COSTLINE_GATEWAY_ALERT_WORKER": "0",
        # GatewayProcess seals the usage journal every 0.2 s for the tests' events(); a
        # gateway as shipped seals it every 2 s, and sealing (a Parquet segment) is per-request
        # CPU: at the 0.2 s of the tests the figure was 0.6-1.1 ms a request higher
        "COSTLINE_LOG_FLUSH_S": str(Settings().log_flush_s),
    }


def run(quick: bool) -> dict[str, Any]:
    home = Path(os.environ["COSTLINE_HOME"]) / "gateway-bench"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["COSTLINE_HOME"] = str(home)
    with ControlPlane() as plane:
        key = issue_key(plane, KeySpec(name="bench"), SYSTEM).secret
    up_port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "tests.bench._mock_upstream", str(up_port)], cwd=ROOT
    )
    out: dict[str, Any] = {"gateway_loadavg_start": round(os.getloadavg()[0], 2)}
    env = gateway_env(up_port)
    small, big = (1_000, 10_000) if quick else (10_000, 100_000)
    n_lat, n_load = (300, 2_000) if quick else (3_000, 10_000)
    try:
        time.sleep(0.5)
        for kind in ("httpx", "aiohttp"):
            cost = asyncio.run(_passthrough(up_port, kind, n_load // 2))
            out[f"upstream_transport_cpu_ms_{kind}"] = round(cost, 3)
        with GatewayProcess(home, env) as gw:
            assert gw.proc is not None
            load(gw.port, key, small)
            rss_small, done = rss_mb(gw.proc.pid), small
            gt, dt = latency(gw.port, up_port, key, n_lat)
            out["gateway_added_p50_us"] = round((q(gt, 0.5) - q(dt, 0.5)) * 1e6)
            out["gateway_added_p99_us"] = round((q(gt, 0.99) - q(dt, 0.99)) * 1e6)
            out["gateway_p50_us"], out["upstream_direct_p50_us"] = (
                round(q(gt, 0.5) * 1e6),
                round(q(dt, 0.5) * 1e6),
            )
            gs, ds = ttft(gw.port, up_port, key, n_lat // 3)
            out["gateway_stream_ttft_added_ms"] = round((q(gs, 0.5) - q(ds, 0.5)) * 1000, 3)
            cpu, rps = cpu_per_request(gw, key, n_load, stream=False)
            out["gateway_cpu_ms_per_request"], out["gateway_rps_1worker"] = (
                round(cpu, 3),
                round(rps),
            )
            cpu, _ = cpu_per_request(gw, key, n_load // 2, stream=True)
            out["gateway_cpu_ms_per_request_stream"] = round(cpu, 3)
            done += n_lat + n_lat // 3 + n_load + n_load // 2
            if big > done:
                load(gw.port, key, big - done)
            out["gateway_rss_growth_mb_100k"] = round(rss_mb(gw.proc.pid) - rss_small, 1)
            out["gateway_rss_mb"] = round(rss_mb(gw.proc.pid), 1)
        with GatewayProcess(home, {**env, "COSTLINE_GATEWAY_TRANSPORT": "httpx"}) as gw:
            load(gw.port, key, n_load // 5)
            cpu, _ = cpu_per_request(gw, key, n_load // 2, stream=False)
            out["gateway_cpu_ms_per_request_httpx_transport"] = round(cpu, 3)
    finally:
        up.terminate()
        up.wait(timeout=10)
    out["gateway_loadavg_end"] = round(os.getloadavg()[0], 2)
    return out
