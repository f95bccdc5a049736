"""docs/ARCHITECTURE.md stays true: every module it names exists, and every ``module.py:name`` is defined there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
NAMED = re.compile(r"`((?:portal_tasks|tests)/[\w/]*?(?:\.py|/))(?::(\w+))?`")


def defined(path: Path) -> set[str]:
    """Top-level functions, classes and assignments of a module."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_module_and_name_the_architecture_page_gives_exists() -> None:
    found = NAMED.findall(DOC.read_text())
    assert len(found) > 30, "the page names the modules it speaks of"
    missing = []
    for rel, name in found:
        path = ROOT / rel
        if not path.exists():
            missing.append(rel)
        elif name and name not in defined(path):
            missing.append(f"{rel}:{name}")
    assert not missing, f"docs/ARCHITECTURE.md names what does not exist: {missing}"
