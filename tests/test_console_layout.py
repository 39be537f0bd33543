"""The console split (docs/architecture.md, "The console split") holds: commands, inputs,
frames and charts never touch Streamlit, and queries use it only to cache and read secrets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[1] / "console"
PURE = ["commands", "inputs", "frames", "charts", "selection.py"]
QUERY_USES = {"cache_data", "cache_resource", "secrets"}


def modules(*names: str) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = CONSOLE / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def streamlit_names(tree: ast.AST) -> tuple[list[str], set[str]]:
    """The Streamlit imports of a module, and the attributes it reads from ``st``."""
    imports, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "streamlit":
                    imports.append(a.name)
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamlit"):
            imports += [f"{node.module}.{a.name}" for a in node.names]
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
    }
    return imports, used


@pytest.mark.parametrize("path", modules(*PURE), ids=lambda p: str(p.relative_to(CONSOLE)))
def test_commands_inputs_frames_and_charts_import_no_streamlit(path: Path) -> None:
    imports, _ = streamlit_names(ast.parse(path.read_text()))
    assert imports == [], f"{path.relative_to(CONSOLE)} imports {imports}"


@pytest.mark.parametrize("path", modules("queries"), ids=lambda p: str(p.relative_to(CONSOLE)))
def test_queries_use_streamlit_only_to_cache_and_read_secrets(path: Path) -> None:
    imports, used = streamlit_names(ast.parse(path.read_text()))
    assert set(imports) <= {"streamlit", "streamlit.errors.StreamlitAPIException"}, imports
    assert used <= QUERY_USES, f"{path.relative_to(CONSOLE)} draws: st.{sorted(used - QUERY_USES)}"


def test_the_split_is_there() -> None:
    for name in ["queries", "commands", "inputs", "frames", "charts"]:
        assert (CONSOLE / name / "__init__.py").exists(), name
    for gone in ["actions.py", "shape.py", "view.py", "frame.py"]:
        assert not list(CONSOLE.rglob(gone)), gone
    assert not list(CONSOLE.rglob("*_data.py"))
