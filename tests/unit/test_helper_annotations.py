"""The helper's modules are annotated for mypy, yet run on the host's Python (3.8 and newer, python_pick.NEEDS):
there their annotations are never evaluated, and the functions copied into JupyterLab's config keep theirs quoted."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

from portal_tasks.remote.python_pick import NEEDS

REMOTE = Path(__file__).resolve().parents[2] / "portal_tasks" / "remote"
#: Written for every Python from 2.7 on (type comments only): the zipapp imports it before it knows the version.
ANY_PYTHON = "python_pick.py"
#: Functions whose source remote/jupyter.py copies into the JupyterLab config it writes (PROXY_CONFIG): the env's
#: Python runs them without ``from __future__ import annotations``.
COPIED = {"common.py": ("_parse_addr", "tcp_rows"), "proxy.py": ("proxy_safe",),
          "jupyter.py": ("_portal_proxy_version",)}
MODULES = sorted(p.name for p in REMOTE.glob("*.py") if p.name != ANY_PYTHON)
#: Annotations every Python 3 evaluates as they are.
PLAIN = {"bool", "int", "str", "float", "bytes", "None"}


def annotations(node: ast.AST) -> Iterator[ast.expr]:
    """Every annotation under ``node``: of parameters, returns and annotated assignments."""
    for each in ast.walk(node):
        if isinstance(each, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = each.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    yield arg.annotation
            if each.returns is not None:
                yield each.returns
        elif isinstance(each, ast.AnnAssign):
            yield each.annotation


def future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
               and any(alias.name == "annotations" for alias in stmt.names) for stmt in tree.body)


@pytest.mark.parametrize("name", MODULES)
def test_a_helper_module_parses_on_the_oldest_host_python(name: str) -> None:
    ast.parse((REMOTE / name).read_text(), name, feature_version=NEEDS)


@pytest.mark.parametrize("name", MODULES)
def test_an_annotated_helper_module_never_evaluates_its_annotations(name: str) -> None:
    tree = ast.parse((REMOTE / name).read_text(), name)
    if any(True for _ in annotations(tree)):
        assert future_annotations(tree), f"{name} is annotated without `from __future__ import annotations`"


@pytest.mark.parametrize("name", sorted(COPIED))
def test_functions_copied_into_jupyterlabs_config_quote_their_annotations(name: str) -> None:
    tree = ast.parse((REMOTE / name).read_text(), name)
    found = {fn.name: fn for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name in COPIED[name]}
    assert sorted(found) == sorted(COPIED[name])
    for fn in found.values():
        bare = [ast.unparse(a) for a in annotations(fn)
                if not (isinstance(a, ast.Constant) and isinstance(a.value, str)) and ast.unparse(a) not in PLAIN]
        assert not bare, f"{name}: {fn.name} has annotations the env's Python would evaluate: {bare}"
