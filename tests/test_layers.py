"""The package's layers (pyproject.toml's import-linter contracts) hold, and a circle breaks them.

Layers, top to bottom: cli | testing; api | quickstart; ui | workers | local; workflow;
control; kafka | exchange | store; platform; logs | process | program; settings; exceptions;
_lazy. docs/architecture.md tells why each sits where it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import streamforge_nb

PACKAGE = Path(streamforge_nb.__file__).parent
ROOT = PACKAGE.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# Prints every import circle among modules, counting only imports that run (module level and
# inside functions), not those under TYPE_CHECKING. Run in a child so the package it reads is
# the one on its PYTHONPATH.
CIRCLES = """
import grimp
graph = grimp.build_graph("streamforge_nb", exclude_type_checking_imports=True, cache_dir=None)
index, low, stack, on, found = {}, {}, [], set(), []
def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    on.add(module)
    for imported in graph.find_modules_directly_imported_by(module):
        if imported not in index:
            visit(imported)
            low[module] = min(low[module], low[imported])
        elif imported in on:
            low[module] = min(low[module], index[imported])
    if low[module] == index[module]:
        part = []
        while not part or part[-1] != module:
            part.append(stack.pop())
            on.discard(part[-1])
        if len(part) > 1:
            found.append(sorted(part))
for module in sorted(graph.modules):
    if module not in index:
        visit(module)
for part in found:
    print(" ".join(part))
"""


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def circles(root: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CIRCLES],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package in which the store imports a workflow: upward, and a circle
    (workflow.plan imports store.candles, which imports store.base)."""
    root = tmp_path_factory.mktemp("planted")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(PACKAGE, root / "streamforge_nb", ignore=shutil.ignore_patterns("__pycache__"))
    base = root / "streamforge_nb" / "store" / "base.py"
    base.write_text(base.read_text() + "\nfrom streamforge_nb.workflow.plan import Workflow\n")
    return root


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_no_import_that_runs_goes_round_in_a_circle() -> None:
    # The acyclic contract ignores five imports under TYPE_CHECKING (pyproject.toml says
    # which and why); this fails if any of them, or any other circle, ever runs.
    assert circles(ROOT) == ""


def test_a_planted_upward_import_breaks_both_contracts(planted: Path) -> None:
    result = lint_imports(planted)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 2 broken." in result.stdout
    assert "streamforge_nb.store is not allowed to import streamforge_nb.workflow" in result.stdout
    assert "streamforge_nb.store.base -> streamforge_nb.workflow.plan" in result.stdout


def test_a_planted_circle_is_found_among_the_imports_that_run(planted: Path) -> None:
    found = circles(planted).splitlines()
    assert any(
        {"streamforge_nb.store.base", "streamforge_nb.workflow.plan"} <= set(line.split())
        for line in found
    ), found
