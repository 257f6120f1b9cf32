"""Notebook parameters: no name or value can run code in papermill's parameters cell.

Papermill writes `<name> = <value>` into the injected cell: the name verbatim, the value
escaped only for JSON types. Every way parameters reach a notebook (a Job's
STREAMFORGE_PARAMETERS, `Workflow(parameters=...)`, a dashboard page's query string) either
refuses them up front or gives a cell of plain literal assignments, checked here on the cell
papermill really writes.
"""

from __future__ import annotations

import ast
import html
import json
import math
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import node_dummy_job, notebook_dir, with_env
from hypothesis import example, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from streamforge_nb.control.queue import Queue
from streamforge_nb.exceptions import DashboardError, InvalidName
from streamforge_nb.platform.names import check_parameter_name, check_parameters
from streamforge_nb.settings import Settings
from streamforge_nb.testing import unique_name
from streamforge_nb.ui.page_parameters import parameterize
from streamforge_nb.workflow import Workflow
from streamforge_nb.workflow.processes import LocalLauncher
from streamforge_nb.workflow.targets import PARAMETERS_ENV, TARGETS, job_parameters, notebook_path

# A name that, written verbatim, assigns x, runs the middle line, then assigns y.
INJECTED = "x = 0\nimport pathlib; pathlib.Path({path!r}).touch()\ny"
# Literal nodes papermill's translator may write for a JSON value, and nothing else.
LITERAL_NODES = (ast.Constant, ast.List, ast.Dict, ast.UnaryOp, ast.USub, ast.Load)


def injected_cell(parameters: dict[str, Any]) -> str:
    """The parameters cell papermill writes for `parameters` as the runner calls it."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(notebook_path("dummy_service.ipynb")))
    nb = parameterize_notebook(nb, parameters, kernel_name="python3")
    (cell,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", ())]
    return str(cell.source)


def assert_only_literal_assignments(cell: str, parameters: dict[str, Any]) -> None:
    """`cell` assigns exactly `parameters`, in order, each a literal equal to its value."""
    statements = ast.parse(cell).body
    assert [type(s) for s in statements] == [ast.Assign] * len(parameters), cell
    for statement, (name, value) in zip(statements, parameters.items(), strict=True):
        assert isinstance(statement, ast.Assign)
        assert [getattr(t, "id", None) for t in statement.targets] == [name], cell
        assert all(isinstance(n, LITERAL_NODES) for n in ast.walk(statement.value)), cell
        assert ast.literal_eval(statement.value) == value, cell


names = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
    st.sampled_from(["type", "match", "class", "None", "In", "_", "__builtins__", "x y"]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


class _Sneaky(int):
    def __str__(self) -> str:
        return "0\nimport os"


# Python values papermill does not escape: each would put code in the cell.
python_values = st.one_of(
    json_values,
    st.tuples(st.text()),
    st.frozensets(st.integers(), max_size=3),
    st.binary(max_size=5),
    st.complex_numbers(allow_nan=False),
    st.builds(_Sneaky, st.integers()),
    st.lists(st.tuples(st.text()), max_size=2),
    st.dictionaries(st.integers(), st.text(), min_size=1, max_size=2),
)


@given(name=names, value=json_values)
@example(name="x\nimport os\ny", value=1)
@example(name=INJECTED.format(path="/tmp/pwned"), value=1)
@example(name="queue_id = 1 or __import__('os').system('id') #", value=1)
@example(name="x", value="\" + __import__('os').getcwd() + \"")
@settings_(max_examples=400, deadline=None)
def test_a_jobs_parameters_are_refused_or_only_literals(name: str, value: Any) -> None:
    """STREAMFORGE_PARAMETERS, as the runner reads it and papermill writes it."""
    env = {"QUEUE_ID": "wf-q", PARAMETERS_ENV: json.dumps({name: value})}
    try:
        parameters = job_parameters(TARGETS["dummy"], env)
    except InvalidName:
        return
    assert_only_literal_assignments(injected_cell(parameters), parameters)


@given(name=names, value=python_values)
@example(name="x", value=("\" + str(__import__('os').getpid()) + \"",))
@example(name="x", value=_Sneaky(0))
@settings_(max_examples=400, deadline=None)
def test_any_python_value_is_refused_or_written_as_a_literal(name: str, value: Any) -> None:
    try:
        parameters = check_parameters({name: value})
    except InvalidName:
        return
    assert_only_literal_assignments(injected_cell(parameters), parameters)


# A page's notebook declares one parameter of each kind the dashboard converts to.
PAGE_PARAMETERS = (
    'name = "n"\ncount = 1\nratio = 0.5\nloud = False\ntags = []\npair = ()\nmeta = {}'
)


def page_notebook() -> Any:
    cell = nbformat.v4.new_code_cell(PAGE_PARAMETERS, metadata={"tags": ["parameters"]})
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python"}
    return notebook


@given(
    name=st.sampled_from(["name", "count", "ratio", "loud", "tags", "pair", "meta"]) | names,
    value=st.text(max_size=40) | st.builds(repr, python_values),
)
@example(name="tags", value="[('\" + str(__import__(chr(111)+chr(115)).getpid()) + \"',)]")
@example(name="pair", value="('\" + str(__import__(chr(111)+chr(115)).getpid()) + \"',)")
@example(name="meta", value="{'k': {b'\" + x + \"'}}")
@settings_(max_examples=300, deadline=None)
def test_a_pages_query_arguments_are_refused_or_only_literals(name: str, value: str) -> None:
    """A dashboard page's query string, as Voila's prelaunch hook applies it."""
    try:
        notebook = parameterize(page_notebook(), {name: value})
    except DashboardError:
        return
    (cell,) = [c for c in notebook.cells if "injected-parameters" in c.metadata["tags"]]
    statements = ast.parse(cell.source).body
    assert len(statements) == 1 and isinstance(statements[0], ast.Assign), cell.source
    assert [getattr(t, "id", None) for t in statements[0].targets] == [name]
    assert all(isinstance(n, LITERAL_NODES) for n in ast.walk(statements[0].value)), cell.source


def test_a_tuple_parameter_of_a_page_arrives_as_a_list() -> None:
    notebook = parameterize(page_notebook(), {"pair": "(1, ('a', 2.5))"})
    (cell,) = [c for c in notebook.cells if "injected-parameters" in c.metadata["tags"]]
    assert cell.source.splitlines()[1:] == ['pair = [1, ["a", 2.5]]']


@pytest.mark.parametrize(
    "name",
    ["queue_id", "type", "match", "metrics_port", "A1", "x_"],
)
def test_plain_names_are_parameters(name: str) -> None:
    assert check_parameter_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("x\nimport os\ny", "Python variable name"),
        ("1x", "Python variable name"),
        ("x-y", "Python variable name"),
        ("", "Python variable name"),
        ("\uff51ueue_id", "Python variable name"),  # fullwidth q: Python reads queue_id
        ("class", "not a keyword"),
        ("None", "not a keyword"),
        ("_", "belong to the notebook's kernel"),
        ("__builtins__", "belong to the notebook's kernel"),
        ("get_ipython", "belong to the notebook's kernel"),
    ],
)
def test_bad_names_are_refused_naming_the_rule(name: str, rule: str) -> None:
    with pytest.raises(InvalidName, match=rule) as raised:
        check_parameter_name(name)
    assert repr(name) in str(raised.value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("nan"), "nan is not a JSON number"),
        ([1, float("inf")], "inf is not a JSON number"),
        ({"k": (1, 2)}, "a tuple is not a JSON value"),
        ({1: "a"}, "dict key 1 is not a string"),
        (b"x", "a bytes is not a JSON value"),
    ],
)
def test_non_json_values_are_refused_naming_the_parameter(value: Any, problem: str) -> None:
    with pytest.raises(InvalidName, match=f"parameter p: {problem}"):
        check_parameters({"p": value})


# -- end to end: the injection refused before anything runs -------------------------
def test_an_injected_name_in_a_jobs_parameters_is_refused_before_the_notebook_runs(
    settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    queue_id = unique_name("wf-inject")
    job, output = node_dummy_job(tmp_path, queue_id, "streamforge/jupyter:test")
    trivial = notebook_dir(tmp_path, "trivial", "print('the notebook ran')")
    injected = INJECTED.format(path=str(marker))
    bad = json.dumps({"metrics_port": 0, injected: 1})
    launcher = LocalLauncher(tmp_path, settings=settings)
    name = launcher.submit(
        with_env(job, STREAMFORGE_PARAMETERS=bad, STREAMFORGE_NOTEBOOKS=str(trivial))
    )
    assert launcher.wait(name, timeout=180) == 1
    assert not marker.exists()
    assert not output.exists()
    with Queue(queue_id, settings, launcher=launcher) as queue:
        message = queue.status().loc["dummy__job001", "message"]
    assert message.startswith(
        "ValueError: bad parameters in STREAMFORGE_PARAMETERS: notebook parameters: "
        f"invalid notebook parameter name {injected!r}: a parameter is a Python variable name"
    ), message
    assert message.endswith("(no notebook executed)")


def test_an_injected_name_in_a_workflows_parameters_is_refused_when_planned(
    settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    injected = INJECTED.format(path=str(marker))
    with pytest.raises(InvalidName) as raised:
        Workflow.candles(
            "BTCUSDT", "1h", "2024-08-01:2024-08-02", settings=settings,
            parameters={"arango-candles": {injected: 1}},
        )  # fmt: skip
    assert str(raised.value).startswith(
        f"parameters of arango-candles: invalid notebook parameter name {injected!r}: "
        "a parameter is a Python variable name"
    )
    assert not marker.exists()
    with pytest.raises(InvalidName, match=r"parameters of dummy: parameter ratio: nan"):
        Workflow("BTCUSDT", "1h", "2024-08-01:2024-08-02", ["dummy"], settings=settings,
                 parameters={"dummy": {"ratio": math.nan}})  # fmt: skip


def unquoted(text: str) -> str:
    """A Python expression for `text` without a quote character."""
    return f"bytes({tuple(text.encode())}).decode()"


def test_a_page_url_that_would_run_code_is_refused_by_the_server(tmp_path: Path) -> None:
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from streamforge_nb.ui.dashboard import start_dashboard

    marker = tmp_path / "pwned"
    notebook = page_notebook()
    notebook.metadata["kernelspec"]["display_name"] = "Python 3"
    notebook.cells.append(nbformat.v4.new_code_cell("print('the page ran', tags)"))
    pages = tmp_path / "pages"
    pages.mkdir()
    nbformat.write(notebook, pages / "page.ipynb")
    # No quote inside: the payload must survive literal_eval as one string of a tuple.
    touch = f"__import__({unquoted('pathlib')}).Path({unquoted(str(marker))}).touch()"
    board = start_dashboard(pages)
    try:
        # A set papermill writes as '"<str(set)>"': refused.
        with pytest.raises(HTTPError) as refused:
            set_of_code = f"[{{'\" + str({touch}) + \"'}}]"
            urlopen(board.page_url("page", tags=set_of_code), timeout=120).read()
        assert refused.value.code == 400
        assert "a set is not a JSON value" in refused.value.read().decode()
        # A tuple (a list now): its string arrives as data.
        evil = f"('\" + str({touch}) + \"',)"
        with urlopen(board.page_url("page", tags=f"[{evil}, ('a', 1)]"), timeout=120) as page:
            shown = html.unescape(page.read().decode())
        assert f"the page ran [['\" + str({touch}) + \"'], ['a', 1]]" in shown
        assert not marker.exists()
        with pytest.raises(DashboardError, match="Python variable name"):
            board.page_url("page", **{"x\nimport os\ny": 1})
        with pytest.raises(DashboardError, match="Voila reads it itself"):
            board.page_url("page", template="lab")
    finally:
        board.stop()
