"""Under COSTLINE_REQUIRE_SERVICES=1 (CI) a skipped test is a failed one, whatever skipped it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import shutil
import pytest

@pytest.mark.skipif(shutil.which("no-such-binary") is None, reason="no binary")
def test_needs_a_binary():
    pass


def test_needs_a_module():
    pytest.importorskip("no_such_module_anywhere")
"""


@pytest.mark.parametrize("required", ["1", ""])
def test_skips_fail_only_when_services_are_required(tmp_path: Path, required: str) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "COSTLINE_REQUIRE_SERVICES": required}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    done = subprocess.run(
        [*cmd, str(tmp_path / "test_probe.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if required:  # a skip in setup (a mark) is an error, in the test body a failure
        assert done.returncode == 1, done.stdout[-2000:]
        assert done.stdout.count("skipped under COSTLINE_REQUIRE_SERVICES=1") == 2
    else:
        assert done.returncode == 0 and "2 skipped" in done.stdout, done.stdout[-2000:]
