"""Everything Costline writes under ``COSTLINE_HOME`` is its owner's alone: directories
0700, files 0600, whatever the umask (control.db holds password hashes, segments may hold
prompts, the pepper files are secrets).

    private_dir(home / "events" / "segments")   # mkdir -p, each new directory 0700
    fd = private_open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)   # created 0600
    make_private(tmp)          # a file another library wrote (DuckDB COPY, pyarrow), 0600
"""

from __future__ import annotations

import contextlib
import os
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
