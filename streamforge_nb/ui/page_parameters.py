"""How parameters reach a dashboard's notebook: the page URL's query string, applied by papermill.

Voila is started with a config file that sets `VoilaConfiguration.prelaunch_hook` to this
module's `prelaunch_hook`. For each page request, before the kernel starts, the hook takes
the query arguments that name a variable of the notebook's `parameters` cell and injects them
exactly as `papermill -p` does (an `injected-parameters` cell after the parameters cell,
`papermill.parameterize.parameterize_notebook`), typed like the parameter's default (or its
annotation when the default is None): an int, float or bool default makes `?count=3` an int,
`?debug=false` a bool; a list/dict/tuple default takes a Python literal (`?tags=['a','b']`);
anything else stays a string. A query argument the notebook does not declare is refused with
HTTP 400 naming the declared ones (a typo such as `?queueid=` would otherwise silently show
the default queue). Voila's own arguments (`template`, `theme`, `token`) pass through.

Why this way, of those Voila 0.5 offers:

- The notebooks stay plain papermill payloads: `control_panel.ipynb` runs the same under
  `papermill -p queue_id Q`, in Jupyter, and in Voila, with no Voila-specific code.
- Voila does put the request's `QUERY_STRING` in a kernel's environment (when kernels are
  not preheated), so each notebook could parse `os.environ["QUERY_STRING"]`; but every
  notebook would need that code, untyped, and it would bypass its parameters cell. With
  `preheat_kernel` the notebook runs before the request and only code that blocks in
  `voila.utils.get_query_string()` sees the query: Voila-specific code again, and preheating
  is incompatible with `prelaunch_hook` (Voila refuses to start). We do not preheat.
- Writing a parameterised copy of the notebook per queue id into a served temp dir also
  works, but leaves one file per URL, the URL no longer names the notebook, and a user
  cannot change the queue id in the address bar.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Mapping
from typing import Any

from streamforge_nb.exceptions import DashboardError, InvalidName
from streamforge_nb.platform.names import check_parameter_name, check_parameters

__all__ = ["declared_parameters", "parameterize", "prelaunch_hook"]

# Query arguments Voila itself reads: never notebook parameters.
VOILA_ARGUMENTS = frozenset({"template", "theme", "token"})


def parameterize(notebook: Any, arguments: Mapping[str, str]) -> Any:
    """Return a copy of `notebook` with `arguments` injected as papermill parameters.

    Each value is converted to the type of the parameter's default (int, float, bool, or a
    Python literal for list/tuple/dict), or of its annotation when the default is None
    (`count: int | None = None`); a name the parameters cell does not assign, or a value that
    does not convert, raises `DashboardError`.
    """
    from papermill.parameterize import parameterize_notebook

    for name in arguments:
        _checked(check_parameter_name, name)
    nb = copy.deepcopy(notebook)
    # papermill expects what its own loader adds: tags on every cell, a papermill section.
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    nb.metadata.setdefault("papermill", {})
    declared = declared_parameters(nb)
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        known = ", ".join(declared) or "none"
        raise DashboardError(
            f"unknown parameter(s) {', '.join(unknown)}: this notebook's parameters are {known}"
        )
    values = {name: _convert(name, value, *declared[name]) for name, value in arguments.items()}
    # Papermill writes a value it does not know (a tuple, a set, bytes) as '"<str(value)>"'
    # unescaped: a literal holding a quote would run as code in the page's kernel.
    _checked(check_parameters, values, "the page's parameters")
    # The parameters cell was read as Python, so the injected cell is Python too.
    kernel = nb.metadata.get("kernelspec", {}).get("name") or "python3"
    return parameterize_notebook(nb, values, kernel_name=kernel, language="python")


def declared_parameters(notebook: Any) -> dict[str, tuple[str, type | None]]:
    """Map each variable the `parameters` cell assigns to (its default's source, its type).

    The type is the default literal's, else the annotation's (int, float, bool, list, tuple,
    dict), else None (the value stays a string). Read with `ast`: papermill's line-based
    inspector skips lines such as `archives = []  # paths (source="archive")`.
    """
    cell = next((c for c in notebook.cells if "parameters" in c.metadata.get("tags", ())), None)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise DashboardError(f"the parameters cell is not plain Python: {exc}") from None
    found: dict[str, tuple[str, type | None]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, annotation = statement.targets, None
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, annotation = [statement.target], statement.annotation
        else:
            continue
        assert statement.value is not None
        source = ast.get_source_segment(cell.source, statement.value) or ""
        kind = _literal_type(statement.value) or _annotated_type(annotation)
        for target in targets:
            if isinstance(target, ast.Name):
                found[target.id] = (source, kind)
    return found


def _literal_type(node: ast.expr) -> type | None:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None  # an expression, not a literal
    return None if value is None else type(value)


def _annotated_type(annotation: ast.expr | None) -> type | None:
    for node in ast.walk(annotation) if annotation is not None else ():
        if isinstance(node, ast.Name) and node.id in _ANNOTATIONS:
            return _ANNOTATIONS[node.id]
    return None


def _convert(name: str, value: str, default_source: str, kind: type | None) -> Any:
    try:
        if kind is bool:
            lowered = value.strip().lower()
            if lowered not in _BOOLEANS:
                raise ValueError(f"not one of {', '.join(_BOOLEANS)}")
            return _BOOLEANS[lowered]
        if kind in (int, float):
            return kind(value)
        if kind in (list, tuple, dict):
            parsed = ast.literal_eval(value)
            if not isinstance(parsed, kind):
                raise ValueError(f"not a {kind.__name__} literal")
            # Papermill writes only JSON shapes as literals (a tuple became a string).
            return _as_json(parsed)
    except (ValueError, TypeError, SyntaxError) as exc:
        what = kind.__name__ if kind else "value"
        raise DashboardError(
            f"parameter {name}={value!r}: expected {what}, as its default {default_source} ({exc})"
        ) from None
    return value


def _as_json(value: Any) -> Any:
    """`value` with tuples made lists, recursively; other types are left to be refused."""
    if isinstance(value, tuple | list):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    return value


def _checked(check: Callable[..., Any], *args: Any) -> None:
    try:
        check(*args)
    except InvalidName as exc:
        raise DashboardError(str(exc)) from None


_ANNOTATIONS: dict[str, type] = {
    "int": int, "float": float, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
}  # fmt: skip
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}  # fmt: skip


def prelaunch_hook(req: Any, notebook: Any, cwd: str) -> Any:
    """Voila's `prelaunch_hook`: the page URL's query arguments become parameters.

    It also gives the page the `_xsrf` cookie. Voila's page asks the server to shut its kernel
    down on `beforeunload` with a beacon that carries that cookie's value, but nothing sets the
    cookie on a rendered page (voila-dashboards/voila#1458, open): every such request is
    refused (403) and the kernel lives on until culled. Reading the token sets the cookie.
    """
    import tornado.web

    req.xsrf_token  # noqa: B018  # sets the cookie, see above
    arguments = {
        name: req.get_query_argument(name)
        for name in req.request.query_arguments
        if name not in VOILA_ARGUMENTS
    }
    if not arguments:
        return None  # Voila runs the notebook as it is
    try:
        return parameterize(notebook, arguments)
    except DashboardError as exc:
        raise tornado.web.HTTPError(400, str(exc), reason=str(exc)[:200]) from None
