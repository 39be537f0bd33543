"""The first page load (the sign-in page) imports only what signing in needs: the demo
loader, the usage commands and the sidebar's queries wait until someone is signed in
(bench: console_first_load_s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file("console/app.py", default_timeout=60).run()
assert not at.exception, at.exception
assert "Username" in [t.label for t in at.text_input]
later = ("console.chrome", "console.sidebar", "core.demo")
print("LOADED=" + ",".join(m for m in later if m in sys.modules))
"""


def test_sign_in_page_skips_the_signed_in_imports(costline_home: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = next(x for x in out.stdout.splitlines() if x.startswith("LOADED="))
    assert loaded == "LOADED=", loaded
