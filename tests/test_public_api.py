"""The public surface: core's lazy exports resolve, and core never imports a UI package."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import core

ROOT = Path(__file__).resolve().parent.parent


def test_every_export_resolves() -> None:
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    assert core.__all__ == sorted(core.__all__)


def test_core_modules_import_no_ui_package() -> None:
    code = (
        "import sys, core, core.router, core.insights, core.cli, core.controls\n"
        "import core.api, core.worker, core.reports, core.periods\n"
        "bad = [m for m in ('streamlit', 'altair', 'prophet') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _packages() -> list[str]:
    return sorted(
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "core").rglob("__init__.py")
    )


@pytest.mark.parametrize("package", _packages())
def test_every_package_all_is_complete(package: str) -> None:
    """As httpx does: every public name a package offers is in its ``__all__``, and every
    name in ``__all__`` exists. Offered: defined in the package (or a constant); names it
    imports from elsewhere for its own use, and submodules, are not offers."""
    mod = importlib.import_module(package)
    declared = getattr(mod, "__all__", None)
    assert declared is not None, f"{package} has no __all__"
    assert len(set(declared)) == len(declared), f"{package}.__all__ repeats a name"
    missing = [n for n in declared if not hasattr(mod, n)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"
    offered = []
    for name, value in vars(mod).items():
        if name.startswith("_") or name in ("annotations", "TYPE_CHECKING"):
            continue
        if inspect.ismodule(value):
            continue
        home = getattr(value, "__module__", None) if callable(value) else type(value).__module__
        if home in (package, "builtins") or str(home).startswith(package + "."):
            offered.append(name)
    left_out = sorted(set(offered) - set(declared))
    assert not left_out, f"{package} offers names missing from its __all__: {left_out}"


def test_every_core_module_imports_without_a_ui_package() -> None:
    """Each module of core, imported in a fresh interpreter, pulls in no UI package."""
    code = (
        "import importlib, pkgutil, sys, core\n"
        "names = sorted(m.name for m in pkgutil.walk_packages(core.__path__, 'core.'))\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "    bad = [m for m in ('streamlit', 'altair', 'prophet') if m in sys.modules]\n"
        "    if bad:\n"
        "        print(name, bad)\n"
        "        break\n"
        "print('modules', len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("modules ") and int(lines[-1].split()[1]) > 150
    assert len(lines) == 1, f"a UI package was imported by {lines[0]}"


def test_no_module_imports_another_packages_private_module() -> None:
    """One rule for core and console: import a name from its package (``core.usage``),
    never from another package's ``_private`` module."""
    bad = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "console").rglob("*.py")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        here = ".".join(parts[:-1])  # the package this file belongs to
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                segs = name.split(".")
                private = next((i for i, s in enumerate(segs) if s.startswith("_")), None)
                if private is None or segs[private].startswith("__"):
                    continue
                owner = ".".join(segs[:private])
                if not (ROOT / owner.replace(".", "/")).is_dir():  # a module: its package
                    owner = ".".join(segs[: private - 1])
                if here != owner and not here.startswith(owner + "."):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_picodollar_unit_is_defined_once() -> None:
    """Money's unit (1 USD = 10**12 pUSD) is core.types.PICO everywhere: no module of core or
    console assigns a copy of its own (core/insights had two)."""
    copies = []
    for path in sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "console").rglob("*.py")]):
        if path == ROOT / "core" / "types.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                named = [t.id for t in targets if isinstance(t, ast.Name)]
                value = node.value
                literal = value is not None and ast.unparse(value) in {"10 ** 12", "1000000000000"}
                if "PICO" in named or (literal and named and "TOKENS" not in named[0]):
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not copies, "\n".join(copies)
