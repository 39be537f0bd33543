"""The usage log on S3-compatible object storage: ``COSTLINE_EVENTS_URL=s3://bucket/prefix``.

Writers. A journal still becomes a local segment (``events/segments/``, fsynced) exactly as
without a bucket; that directory is now the *outbox*. A ``Shipper`` thread uploads each
segment whose journal is gone to ``<prefix>/segments/<name>`` with one PUT (or one
multipart upload, completed at once): S3 makes an object visible whole or not at all, so a
reader never sees a partial segment. Only when the object is confirmed (HEAD, same size)
does the local file move to the cache. Names are unique per writing process and sequence,
so an upload retried after a crash overwrites the same bytes: an event lands exactly once.

An unreachable bucket never fails or blocks a call: segments wait in the outbox and go when
it answers (retried with a back-off up to ``RETRY_MAX_S``). The outbox is reported (log
WARNING once per outage, ERROR each minute while it holds more than
``COSTLINE_EVENTS_QUEUE_MB``, ``status()``) and never dropped: disk is the bound.

Readers. ``Mirror.sync()`` lists the bucket's segments and downloads the missing ones into
``events/cache/segments/`` (segments are immutable, so a cached file never goes stale); the
Reader then runs DuckDB over that directory. Objects deleted from the bucket (merged by a
compaction) leave the cache too. Nothing is downloaded but the data: the S3 client is
pyarrow's, shipped in its wheel.

Compaction across hosts runs on one leader at a time (``_leader.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from core.errors import ConfigError
from core.private import make_private, private_dir
from core.usage._journal import CLAIM, JOURNAL_SUFFIX
from core.usage._segments import SUFFIX, events_dir, journal_dir, segments_dir

log = logging.getLogger("costline.usage")

RETRY_MIN_S = 0.5
RETRY_MAX_S = 5.0
RESCAN_S = 5.0  # the shipper looks at the outbox this often even without a poke
REPORT_EVERY_S = 60.0
DOWNLOAD_THREADS = 8
UPLOAD_CHUNK = 8 << 20
CLOSE_DRAIN_S = 5.0  # closing a log tries this long to ship its last segments


def cache_dir(home: Path | None = None) -> Path:
    return events_dir(home) / "cache" / "segments"


def rollup_cache_dir(home: Path | None = None) -> Path:
    """The local copies of the bucket's rollups (``rollups/<segment name>``)."""
    return events_dir(home) / "cache" / "rollups"


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """Where the usage log lives in object storage, and how to reach it."""

    bucket: str
    prefix: str  # "" or "a/b" (no slashes at either end)
    endpoint: str | None  # host:port, from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
    scheme: str
    region: str
    access_key: str | None
    secret_key: str | None
    session_token: str | None
    queue_mb: int  # outbox size past which an ERROR is logged every minute
    sync_s: float  # readers re-list the bucket at most this often
    compact_s: float  # a writer tries to lead a compaction this often (0: never)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BucketConfig | None:
        env = os.environ if env is None else env
        url = env.get("COSTLINE_EVENTS_URL", "").strip()
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(
                f"COSTLINE_EVENTS_URL must look like s3://bucket/prefix, not {url!r}",
                field="COSTLINE_EVENTS_URL",
            )
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        scheme = "https"
        if endpoint:
            ep = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
            scheme, endpoint = ep.scheme or "https", ep.netloc
        return cls(
            bucket=parts.netloc,
            prefix=parts.path.strip("/"),
            endpoint=endpoint or None,
            scheme=scheme,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            queue_mb=_number(env, "COSTLINE_EVENTS_QUEUE_MB", 10_240, int),
            sync_s=_number(env, "COSTLINE_EVENTS_SYNC_S", 1.0, float),
            compact_s=_number(env, "COSTLINE_EVENTS_COMPACT_S", 300.0, float),
        )

    def filesystem(self) -> pafs.S3FileSystem:
        """pyarrow's S3 client: short timeouts and one attempt (the shipper retries)."""
        kwargs: dict[str, Any] = {
            "region": self.region,
            "scheme": self.scheme,
            "connect_timeout": 2.0,
            "request_timeout": 10.0,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=1),
        }
        if self.endpoint:
            kwargs["endpoint_override"] = self.endpoint
        if self.access_key and self.secret_key:
            kwargs.update(access_key=self.access_key, secret_key=self.secret_key)
            if self.session_token:
                kwargs["session_token"] = self.session_token
        elif self.endpoint:
            kwargs["anonymous"] = True
        return pafs.S3FileSystem(**kwargs)

    def path(self, *parts: str) -> str:
        """``bucket/prefix/parts...`` as pyarrow's S3 paths are written."""
        return "/".join(p for p in (self.bucket, self.prefix, *parts) if p)

    def url(self, *parts: str) -> str:
        return "s3://" + self.path(*parts)


def _number(env: Mapping[str, str], name: str, default: Any, kind: Callable[[str], Any]) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}", field=name) from None
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, not {raw!r}", field=name)
    return value


_fs_lock = threading.Lock()
_filesystems: dict[BucketConfig, pafs.S3FileSystem] = {}


def filesystem(cfg: BucketConfig) -> pafs.S3FileSystem:
    with _fs_lock:
        fs = _filesystems.get(cfg)
        if fs is None:
            fs = _filesystems[cfg] = cfg.filesystem()
        return fs


def list_segments(
    cfg: BucketConfig, fs: pafs.FileSystem | None = None, kind: str = "segments"
) -> dict[str, int]:
    """Segment name -> size of every committed segment object in the bucket (``kind``
    "rollups": of every rollup object, named like its segment)."""
    fs = fs or filesystem(cfg)
    selector = pafs.FileSelector(cfg.path(kind), allow_not_found=True)
    out: dict[str, int] = {}
    for info in fs.get_file_info(selector):
        name = info.base_name
        if info.type == pafs.FileType.File and name.endswith(SUFFIX) and name[0] != ".":
            out[name] = int(info.size or 0)
    return out


def upload(
    cfg: BucketConfig,
    src: Path,
    name: str,
    fs: pafs.FileSystem | None = None,
    kind: str = "segments",
) -> None:
    """PUT ``src`` as ``segments/name`` (or ``kind/name``) and confirm it (HEAD: present,
    same size)."""
    fs = fs or filesystem(cfg)
    dest = cfg.path(kind, name)
    size = 0
    with open(src, "rb") as fh, fs.open_output_stream(dest) as out:
        while chunk := fh.read(UPLOAD_CHUNK):  # a merged segment need not fit in memory
            out.write(chunk)
            size += len(chunk)
    info = fs.get_file_info(dest)
    if info.type != pafs.FileType.File or info.size != size:
        raise OSError(f"upload of {name} not confirmed (found {info.type}, {info.size} bytes)")


def _outbox(sdir: Path, jdir: Path) -> list[Path]:
    """Local segments ready to ship: sealed, and their journal already deleted (while a
    journal exists, recovery still decides by the local segment's presence)."""
    try:
        names = sorted(n for n in os.listdir(sdir) if n.endswith(SUFFIX) and n[0] != ".")
    except FileNotFoundError:
        return []
    try:
        journals = {n.split(CLAIM, 1)[0].removesuffix(JOURNAL_SUFFIX) for n in os.listdir(jdir)}
    except FileNotFoundError:
        journals = set()
    return [sdir / n for n in names if n.removesuffix(SUFFIX) not in journals]


def outbox_status(home: Path | None = None) -> dict[str, int]:
    """Segments (and bytes) waiting on this host for the bucket."""
    files = _outbox(segments_dir(home), journal_dir(home))
    size = 0
    for p in files:
        with contextlib.suppress(FileNotFoundError):
            size += p.stat().st_size
    return {"segments": len(files), "bytes": size}


class Shipper:
    """One background thread per process and home: uploads the outbox, oldest first."""

    def __init__(self, home: Path, cfg: BucketConfig) -> None:
        self.home = home
        self.cfg = cfg
        self._sdir = segments_dir(home)
        self._jdir = journal_dir(home)
        self._cache = private_dir(cache_dir(home))
        self._cond = threading.Condition()
        self._poked = False
        self._stopped = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self.shipped = 0  # segments uploaded by this process
        self.failures = 0
        self.last_error: str | None = None
        self.down_since: float | None = None
        self._last_report = 0.0
        self._next_compact = time.monotonic() + (cfg.compact_s or 0.0)

    def poke(self) -> None:
        with self._cond:
            if self._stopped:
                return
            self._poked = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="usage-ship", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Ship what is in the outbox now, for up to ``timeout_s``; True if it is empty."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._cond:
                while self._busy and time.monotonic() < deadline:
                    self._cond.wait(0.05)
                if self._busy:
                    return False
                self._busy = True
            try:
                if self.ship_once() == 0 and not _outbox(self._sdir, self._jdir):
                    return True
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self.down_since is not None:
                time.sleep(min(RETRY_MIN_S, max(0.0, deadline - time.monotonic())))
        return not _outbox(self._sdir, self._jdir)

    def stop(self, drain_s: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if drain_s > 0:
            self.drain(drain_s)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(outbox_status(self.home))
        out.update(
            shipped=self.shipped,
            failures=self.failures,
            last_error=self.last_error,
            down_s=None if self.down_since is None else time.monotonic() - self.down_since,
        )
        return out

    def ship_once(self) -> int:
        """Upload every segment in the outbox until one fails; the number shipped."""
        fs = filesystem(self.cfg)
        shipped = 0
        for src in _outbox(self._sdir, self._jdir):
            try:
                upload(self.cfg, src, src.name, fs)
            except FileNotFoundError:
                continue  # another process of this host shipped it first
            except OSError as exc:
                self._failed(exc)
                return shipped
            with contextlib.suppress(FileNotFoundError):
                os.replace(src, self._cache / src.name)  # now a cached, committed segment
            shipped += 1
            self.shipped += 1
        if self.down_since is not None:
            log.info(
                "usage bucket %s reachable again after %.0f s; outbox shipped",
                self.cfg.url(),
                time.monotonic() - self.down_since,
            )
            self.down_since = None
        return shipped

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "usage bucket %s unreachable (%s); segments wait in %s",
                self.cfg.url(),
                self.last_error,
                self._sdir,
            )
        if now - self._last_report >= REPORT_EVERY_S:
            status = outbox_status(self.home)
            if status["bytes"] > self.cfg.queue_mb << 20:
                self._last_report = now
                log.error(
                    "usage outbox holds %d segments (%d MB), over COSTLINE_EVENTS_QUEUE_MB=%d;"
                    " nothing is dropped, the bucket has been away %.0f s",
                    status["segments"],
                    status["bytes"] >> 20,
                    self.cfg.queue_mb,
                    now - self.down_since,
                )

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            with self._cond:
                wait = RESCAN_S if self.down_since is None else delay
                if not self._poked and not self._stopped:
                    self._cond.wait(wait)
                if self._stopped:
                    self._thread = None
                    return
                self._poked = False
                if self._busy:
                    continue
                self._busy = True
            try:
                self.ship_once()
                self._maybe_compact()
            except Exception:  # never kills the thread; the outbox waits for the next try
                log.exception("shipping usage segments failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            delay = RETRY_MIN_S if self.down_since is None else min(RETRY_MAX_S, delay * 2)

    def _maybe_compact(self) -> None:
        if not self.cfg.compact_s or self.down_since is not None:
            return
        if time.monotonic() < self._next_compact:
            return
        self._next_compact = time.monotonic() + self.cfg.compact_s
        from core.usage._bucket_compact import compact_bucket

        compact_bucket(self.home, self.cfg, wait=False)


_shippers: dict[tuple[int, str], Shipper] = {}
_shippers_lock = threading.Lock()


def shipper_for(home: Path) -> Shipper | None:
    """This process's shipper for ``home`` (None when no bucket is configured)."""
    cfg = BucketConfig.from_env()
    if cfg is None:
        return None
    key = (os.getpid(), str(home))
    with _shippers_lock:
        shipper = _shippers.get(key)
        if shipper is None:
            shipper = _shippers[key] = Shipper(home, cfg)
    return shipper


class Mirror:
    """A reader's local cache of the bucket's segments (immutable, so never stale)."""

    def __init__(self, home: Path, cfg: BucketConfig) -> None:
        self.cfg = cfg
        self.dir = private_dir(cache_dir(home))
        self.rollups = private_dir(rollup_cache_dir(home))
        self._last = -float("inf")
        self._lock = threading.Lock()
        self.stale_since: float | None = None
        self.downloaded = 0

    def sync(self, force: bool = False) -> bool:
        """Bring the cache in line with the bucket (at most every ``sync_s`` unless
        ``force``). False when the bucket did not answer (the cache is used as it is)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.cfg.sync_s:
                return self.stale_since is None
            self._last = now
            fs = filesystem(self.cfg)
            before = set(_cached(self.dir))  # a shipper moves segments in after their upload
            rolled = set(_cached(self.rollups))
            try:
                remote = list_segments(self.cfg, fs)
                self._fetch(fs, remote)
                # rollups after segments: a reader uses one only for a segment it holds
                rollups = list_segments(self.cfg, fs, "rollups")
                self._fetch(fs, rollups, "rollups", self.rollups)
            except OSError as exc:
                if self.stale_since is None:
                    self.stale_since = now
                    log.warning("usage bucket unreachable (%s); reading the local cache", exc)
                return False
            self.stale_since = None
            # merged away by a compaction: only what was cached before the listing (a
            # segment shipped meanwhile is in the bucket, maybe not in this listing)
            for name in before - set(remote):
                (self.dir / name).unlink(missing_ok=True)
            for name in rolled - set(rollups):
                (self.rollups / name).unlink(missing_ok=True)
            return True

    def _fetch(
        self,
        fs: pafs.FileSystem,
        remote: dict[str, int],
        kind: str = "segments",
        directory: Path | None = None,
    ) -> None:
        into = self.dir if directory is None else directory
        cached = _cached(into)
        missing = [n for n, size in remote.items() if cached.get(n) != size]
        if not missing:
            return

        def get(name: str) -> None:
            tmp = into / f".{name}.{secrets.token_hex(4)}.tmp"
            try:
                with fs.open_input_stream(self.cfg.path(kind, name)) as src:
                    tmp.write_bytes(src.read())
                make_private(tmp)
                os.replace(tmp, into / name)
            finally:
                tmp.unlink(missing_ok=True)

        if len(missing) == 1:
            get(missing[0])
        else:
            with ThreadPoolExecutor(min(DOWNLOAD_THREADS, len(missing))) as pool:
                list(pool.map(get, missing))
        self.downloaded += len(missing)


def _cached(directory: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    with os.scandir(directory) as it:
        for e in it:
            if e.name.endswith(SUFFIX) and e.name[0] != ".":
                with contextlib.suppress(FileNotFoundError):
                    out[e.name] = e.stat().st_size
    return out


def mirror_for(home: Path) -> Mirror | None:
    cfg = BucketConfig.from_env()
    return None if cfg is None else Mirror(home, cfg)
