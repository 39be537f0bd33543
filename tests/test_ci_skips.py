"""Under COSTLINE_REQUIRE_SERVICES=1 (CI) a skipped test is a failed one, whatever skipped it."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "skipped under COSTLINE_REQUIRE_SERVICES=1"
PROBE = """
import shutil
import pytest

@pytest.mark.skipif(shutil.which("no-such-binary") is None, reason="no binary")
def test_needs_a_binary():
    pass


def test_needs_a_module():
    pytest.importorskip("no_such_module_anywhere")
"""
MODULE_PROBE = """
import pytest

pytest.importorskip("no_such_module_anywhere")  # the whole module, while it is collected


def test_never_collected():
    pass
"""


def outcomes(junit: Path) -> dict[str, list[tuple[str, str]]]:
    """Per probe test: its (outcome, message + text) entries as the JUnit XML report gives
    them - read from the report, not the console, whose summary depends on the terminal."""
    out: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        # a collection error's name is the module's dotted path from the rootdir, which
        # depends on where the checkout is: keep its last part
        out[case.attrib["name"].rsplit(".", 1)[-1]] = [
            (child.tag, f"{child.attrib.get('message', '')} {child.text or ''}")
            for child in case
            if child.tag in ("failure", "error", "skipped")
        ]
    return out


@pytest.mark.parametrize("workers", ["0", "2"])  # one process, and xdist workers (make test)
@pytest.mark.parametrize("required", ["1", ""])
def test_skips_fail_only_when_services_are_required(
    tmp_path: Path, required: str, workers: str
) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_probe_module.py").write_text(MODULE_PROBE)
    junit = tmp_path / "probe.xml"
    env = {**os.environ, "COSTLINE_REQUIRE_SERVICES": required}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    cmd += ["-n", workers]
    done = subprocess.run(
        [*cmd, "--continue-on-collection-errors", f"--junitxml={junit}", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    got = outcomes(junit)
    probes = ["test_needs_a_binary", "test_needs_a_module", "test_probe_module"]
    assert sorted(got) == probes, done.stdout[-2000:]
    if required:  # a skip in setup (a mark) or in collection is an error, in a test a failure
        assert done.returncode == 1, done.stdout[-2000:]
        assert [tag for tag, _ in got["test_needs_a_binary"]] == ["error"], got
        assert [tag for tag, _ in got["test_needs_a_module"]] == ["failure"], got
        assert [tag for tag, _ in got["test_probe_module"]] == ["error"], got
        assert all(MARK in text for entries in got.values() for _, text in entries), got
    else:
        assert done.returncode == 0, done.stdout[-2000:]
        assert all([tag for tag, _ in e] == ["skipped"] for e in got.values()), got
        assert all(MARK not in text for e in got.values() for _, text in e), got
