"""Everything Costline writes under ``COSTLINE_HOME`` is its owner's alone: directories
0700, files 0600, whatever the umask (control.db holds password hashes, segments may hold
prompts, the pepper files are secrets).

    private_dir(home / "events" / "segments")   # mkdir -p, each new directory 0700
    fd = private_open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)   # created 0600
    make_private(tmp)          # a file another library wrote (DuckDB COPY, pyarrow), 0600
    create_private(db)         # an empty 0600 file, never opening one that exists (SQLite)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600


def private_dir(path: Path | str) -> Path:
    """``mkdir -p`` whose new directories (and the leaf, always) are 0700."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=DIR_MODE)
        with contextlib.suppress(OSError):
            os.chmod(d, DIR_MODE)  # mkdir's mode was masked by the umask
    if not missing:
        with contextlib.suppress(OSError):  # an older install's 0755 directory
            if path.stat().st_mode & 0o077:
                os.chmod(path, DIR_MODE)
    return path


def private_open(path: Path | str, flags: int) -> int:
    """``os.open`` that creates the file 0600 (and tightens an older 0644 one)."""
    fd = os.open(path, flags, FILE_MODE)
    with contextlib.suppress(OSError):
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
    return fd


def make_private(path: Path | str) -> None:
    """0600 for a file that another library created with the umask's mode."""
    os.chmod(path, FILE_MODE)


def create_private(path: Path | str) -> None:
    """An empty 0600 file at ``path`` unless one exists (then only tightened to 0600). The
    existing file is never opened: closing any descriptor of a file drops every POSIX lock
    this process holds on it, and SQLite's locks are POSIX locks (another process could then
    take itself for the database's last user, checkpoint and delete the WAL under our open
    connections: stale reads, lost writes). A new file is made aside and linked in."""
    path = Path(path)
    if path.exists():
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                os.chmod(path, FILE_MODE)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
    os.close(private_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC))
    try:
        os.link(tmp, path)  # fails if another process or thread made it first: theirs stays
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system: create it in place, only if new
        with contextlib.suppress(FileExistsError):
            os.close(private_open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
