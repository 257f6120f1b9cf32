"""The package's shape as users meet it: one public face, no cycles, tests' helpers kept apart."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import streamforge_nb
from streamforge_nb import exceptions

PACKAGE = Path(streamforge_nb.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_time_imports(path: Path) -> set[str]:
    """Modules of ours that `path` imports when it is imported (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(sub, ast.ImportFrom) and sub.module:
                found.add(sub.module)
            elif isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names)
    return {m for m in found if m.startswith("streamforge_nb")}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_the_top_level_offers_every_public_class_and_exception() -> None:
    for name in ("Workflow", "Queue", "CandleStore", "LaunchPanel", "Settings", "QueueTimeout"):
        assert name in streamforge_nb.__all__
        assert inspect.isclass(getattr(streamforge_nb, name)), name
    errors = [
        name
        for name, value in vars(exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__
    ]
    assert set(errors) <= set(streamforge_nb.__all__)
    assert {"StoreError", "ExchangeError", "ArchiveError", "NotAuthorized"} <= set(errors)


def test_every_exception_class_lives_in_exceptions() -> None:
    elsewhere = []
    for name, path in MODULES.items():
        if name == "streamforge_nb.exceptions":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b) for b in node.bases}
                if any(b.endswith(("Error", "Exception", "Timeout")) for b in bases):
                    elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []


def test_a_stop_request_is_not_an_error() -> None:
    assert not issubclass(exceptions.StopRequested, exceptions.StreamForgeError)


def test_no_import_cycle_at_import_time() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = import_time_imports(path)
        # Importing a.b.c imports the packages a and a.b first, except those already being
        # imported because they hold this module.
        parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = (targets | parents) & set(MODULES) - own - {name}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_production_code_never_imports_the_testing_helpers() -> None:
    offenders = [
        name
        for name, path in MODULES.items()
        if not name.startswith("streamforge_nb.testing")
        and any(
            isinstance(node, ast.ImportFrom | ast.Import)
            and "streamforge_nb.testing" in ast.unparse(node)
            for node in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert offenders == []


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = (
        "import sys, streamforge_nb, streamforge_nb.exceptions\n"
        "heavy = {'kafka', 'pandas', 'pydantic', 'cryptography', 'pyarrow', 'numpy'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
