"""The public surface: core's lazy exports resolve, and core never imports a UI package."""

from __future__ import annotations

import subprocess
import sys

import core


def test_every_export_resolves() -> None:
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    assert core.__all__ == sorted(core.__all__)


def test_core_modules_import_no_ui_package() -> None:
    code = (
        "import sys, core, core.router, core.analytics, core.cli, core.controls\n"
        "import core.api, core.worker, core.reports, core.periods\n"
        "bad = [m for m in ('streamlit', 'altair', 'prophet') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
