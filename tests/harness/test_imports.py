"""Helpers live in harness/: no test module imports another, and bench, soak, scripts and the
harness itself import nothing from tests/ (fixtures stay in conftest.py files)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of_tests(folder: Path) -> list[str]:
    """Every ``import tests...`` / ``from tests... import`` under ``folder``, by place."""
    found: list[str] = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n == "tests" or n.startswith("tests.") for n in names):
                found.append(f"{path.relative_to(folder).as_posix()}:{node.lineno}")
    return found


def test_nothing_imports_from_tests() -> None:
    for folder in ("tests", "harness", "bench", "soak", "scripts"):
        assert imports_of_tests(ROOT / folder) == [], folder


def test_the_scan_sees_an_import_from_tests(tmp_path: Path) -> None:
    """The scan finds what it looks for (an empty answer would pass the test above)."""
    (tmp_path / "test_a.py").write_text("import os\nfrom tests.conftest import env\n")
    (tmp_path / "b.py").write_text("import tests.web.test_api\nfrom harness.app import Env\n")
    assert imports_of_tests(tmp_path) == ["b.py:1", "test_a.py:2"]
