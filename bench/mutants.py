"""Mutation testing: plant one small bug at a time and see whether the tests notice.

    .venv/bin/python bench/mutants.py                      # every target below
    .venv/bin/python bench/mutants.py names checks --max 60 --timeout 60
    .venv/bin/python bench/mutants.py names --list         # the mutants, nothing run
    .venv/bin/python bench/mutants.py names --lines 183,212  # again, after a new test

Each mutant is one operator change inside the functions (and module constants) listed in
TARGETS: `>=`/`>`, `<=`/`<`, `==`/`!=`, `in`/`not in`, `is`/`is not`, `+`/`-`, `*`/`/`,
`and`/`or`, `not x` -> `x`, an integer n -> n + 1, a regex `{m,n}` -> `+` or `{m,n+1}`, and
an `if` guarding a `raise`/`return` made never true. It is written into a copy of the package
in a temporary directory (the working tree, shared with others, is never touched), and the
target's fast tests run there with `-x -q`. A mutant whose tests still pass *survived*:
either a test is missing or the change does not matter (an equivalent mutant); each survivor
is printed with its line for a person to judge.

mutmut was not used: it rewrites the whole source tree under ./mutants and runs the whole
suite first, which here needs the broker; this runner mutates named functions only and runs
only the broker-free test files that cover them (TARGETS), so a run takes minutes.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SINK_PURE = "stored_xor or hand_made or dlq_copies or queue_series or null_message or zero_price"
_NOT_BROKER = "not test_real_rows_load_exactly_through_the_loader_and_the_sink"
_PARAMETERS = "plain_names or bad_names or non_json or jobs_parameters or any_python_value"


@dataclass(frozen=True)
class Target:
    path: str  # relative to the repository
    names: tuple[str, ...]  # functions, methods (Class.method) and module constants
    tests: tuple[str, ...]  # pytest arguments


# fmt: off
TARGETS = {
    "names": Target(
        "streamforge_nb/platform/names.py",
        ("_SHORT_RE", "_SYMBOL_RE", "_TYPE_RE", "_QUEUE_ID_RE", "_COLLECTION_NAME_RE",
         "check_kafka_topic", "check_dns1123_label", "check_label_value",
         "check_collection_name", "check_parameter_name", "check_parameters", "_not_json",
         "check_symbol", "check_type", "check_short_id", "queue_id", "parse_queue_id",
         "collection_name", "parse_collection_name", "job_name", "TimeRange.__post_init__",
         "TimeRange.start_ms", "TimeRange.end_ms", "TimeRange.__str__", "parse_time_range",
         "_split_range", "_parse_instant", "_is_midnight"),
        ("tests/test_names.py", "tests/test_parameters.py", "-k", f"test_names or {_PARAMETERS}"),
    ),
    "checks": Target(
        "streamforge_nb/platform/checks.py",
        ("check_candles", "_series_masks", "candle_anomalies", "decode_and_check",
         "_decode_and_check"),
        ("tests/test_real_klines.py", "tests/test_sink.py",
         "-k", f"{_NOT_BROKER} and (test_real_klines or {_SINK_PURE})"),
    ),
    "decode": Target(
        "streamforge_nb/platform/candle_decode.py",
        ("decode_candles", "_decode_into", "_decode_candles_fast"),
        ("tests/test_real_klines.py", "tests/test_sink.py",
         "-k", f"{_NOT_BROKER} and (test_real_klines or {_SINK_PURE})"),
    ),
    "worker": Target(
        "streamforge_nb/control/worker.py",
        ("Worker._handle", "Worker.check_stop", "Worker.run", "Worker._fields"),
        ("tests/test_worker.py",),  # the real broker: about 15 s a mutant
    ),
    "analysis": Target(
        "streamforge_nb/store/analysis.py",
        ("resample", "_slots", "_first_slot_at_or_after", "find_gaps", "_split",
         "volume_volatility"),
        ("tests/test_analysis.py", "tests/test_real_klines.py", "-k", _NOT_BROKER),
    ),
    "sink": Target(
        "streamforge_nb/workers/sink.py",
        ("DLQ_MAX_VALUE", "DLQ_MAX_KEY", "dlq_copy"),
        ("tests/test_sink.py", "-k", _SINK_PURE),
    ),
}
# fmt: on

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
}  # fmt: skip
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d+))?\}")


@dataclass(frozen=True)
class Mutant:
    index: int  # the n-th mutation point of the file, in a fixed walk order
    variant: int  # which change at that point
    line: int
    what: str


def _scopes(tree: ast.Module, names: tuple[str, ...]) -> Iterator[ast.AST]:
    """The top-level functions, methods and constant assignments named in `names`."""
    wanted = set(names)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in wanted:
            yield node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and f"{node.name}.{item.name}" in wanted:
                    yield item
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in wanted for t in targets):
                yield node


def _points(tree: ast.Module, names: tuple[str, ...]) -> Iterator[ast.AST]:
    for scope in _scopes(tree, names):
        yield from ast.walk(scope)  # nested helpers (closures) with their function


def _changes(node: ast.AST) -> list[str]:
    """Describe each change this runner can make at `node` (empty: none)."""
    if isinstance(node, ast.Compare):
        return [
            f"{type(op).__name__} -> {_COMPARE_SWAPS[type(op)].__name__} (operator {i})"
            for i, op in enumerate(node.ops)
            if type(op) in _COMPARE_SWAPS
        ]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        return [f"{type(node.op).__name__} -> {_BINOP_SWAPS[type(node.op)].__name__}"]
    if isinstance(node, ast.BoolOp):
        return ["and -> or" if isinstance(node.op, ast.And) else "or -> and"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ["not x -> x"]
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            return [f"{value} -> {value + 1}"]
        if isinstance(value, str) and _QUANTIFIER.search(value):
            return ["regex {m,n} -> +", "regex {m,n} -> {m,n+1}"]
    if isinstance(node, ast.If) and isinstance(node.body[0], ast.Raise | ast.Return):
        return [f"if <guard of {type(node.body[0]).__name__.lower()}> -> if False"]
    return []


def _apply(node: ast.AST, variant: int) -> None:
    if isinstance(node, ast.Compare):
        positions = [i for i, op in enumerate(node.ops) if type(op) in _COMPARE_SWAPS]
        i = positions[variant]
        node.ops[i] = _COMPARE_SWAPS[type(node.ops[i])]()
    elif isinstance(node, ast.BinOp):
        node.op = _BINOP_SWAPS[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        node.operand = ast.UnaryOp(ast.Not(), node.operand)  # `not not x`: the `not` undone
    elif isinstance(node, ast.Constant) and isinstance(node.value, int):
        node.value += 1
    elif isinstance(node, ast.Constant):
        first = _QUANTIFIER.search(node.value)
        assert first is not None
        low, high = first[1], first[2] or first[1]
        new = "+" if variant == 0 else f"{{{low},{int(high) + 1}}}"
        node.value = node.value[: first.start()] + new + node.value[first.end() :]
    elif isinstance(node, ast.If):
        node.test = ast.Constant(False)


def mutants(source: str, names: tuple[str, ...]) -> list[Mutant]:
    tree = ast.parse(source)
    found = []
    for index, node in enumerate(_points(tree, names)):
        for variant, what in enumerate(_changes(node)):
            found.append(Mutant(index, variant, getattr(node, "lineno", 0), what))
    return sorted(found, key=lambda m: m.line)


def mutate(source: str, names: tuple[str, ...], mutant: Mutant) -> str:
    tree = ast.parse(source)
    for index, node in enumerate(_points(tree, names)):
        if index == mutant.index:
            _apply(node, mutant.variant)
            return ast.unparse(ast.fix_missing_locations(tree))
    raise LookupError(mutant)


def _copy_tree(into: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "streamforge_nb", into / "streamforge_nb", ignore=skip)
    shutil.copytree(ROOT / "tests", into / "tests", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")


def _run_tests(copy: Path, target: Target, timeout: float) -> str:
    """Run the target's tests in `copy`: 'passed', 'failed' or 'timeout'."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # no stale .pyc of another mutant
    env.pop("PYTHONPATH", None)
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *target.tests]
    try:
        done = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    # 1: a test failed; 2: collection failed (a mutant that breaks the import is killed too);
    # below 0: a signal (pyarrow fed what it never should be can segfault): killed as well.
    if done.returncode in (3, 4, 5):
        raise RuntimeError(f"pytest could not run (exit {done.returncode}):\n{done.stdout}")
    return "passed" if done.returncode == 0 else "failed"


def _spread(items: list[Mutant], limit: int | None) -> list[Mutant]:
    """At most `limit` items, evenly spread over the file (not just its first functions)."""
    if limit is None or len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


def run(
    names: list[str], limit: int | None, timeout: float, list_only: bool, lines: set[int]
) -> int:
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        where = subprocess.run(
            [sys.executable, "-c", "import streamforge_nb; print(streamforge_nb.__file__)"],
            cwd=copy, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if not where.startswith(str(copy)):
            raise RuntimeError(f"the copy is not what the tests import ({where})")
        for name in names:
            target = TARGETS[name]
            module = copy / target.path
            source = (ROOT / target.path).read_text()
            found = mutants(source, target.names)
            chosen = _spread([m for m in found if not lines or m.line in lines], limit)
            print(f"== {target.path}: {len(chosen)} mutants", flush=True)
            if list_only:
                for m in chosen:
                    print(f"  {target.path}:{m.line}: {m.what}")
                continue
            module.write_text(ast.unparse(ast.parse(source)))  # the baseline, unparsed alike
            started = time.monotonic()
            if _run_tests(copy, target, timeout * 4) != "passed":
                raise RuntimeError(f"{name}: the tests fail without any mutant")
            print(f"   baseline passed in {time.monotonic() - started:.1f} s", flush=True)
            killed = 0
            for m in chosen:
                module.write_text(mutate(source, target.names, m))
                outcome = _run_tests(copy, target, timeout)
                killed += outcome != "passed"
                if outcome == "passed":
                    line = source.splitlines()[m.line - 1].strip()
                    survivors.append(f"{target.path}:{m.line}: {m.what}    | {line}")
                    print(f"   SURVIVED {target.path}:{m.line}: {m.what}", flush=True)
            module.write_text(source)
            print(f"   killed {killed} of {len(chosen)}", flush=True)
    if survivors:
        print(f"\n{len(survivors)} surviving mutant(s):")
        print("\n".join(survivors))
    return 1 if survivors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (all)")
    parser.add_argument("--max", type=int, default=None, help="mutants per file (spread)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant run")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--lines", default="", help="only mutants on these lines: 74,183")
    args = parser.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    lines = {int(n) for n in args.lines.split(",") if n.strip()}
    # Stopped with `kill`: exit through the `with` blocks, so the temporary copy is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args.targets or list(TARGETS), args.max, args.timeout, args.list, lines)


if __name__ == "__main__":
    sys.exit(main())
