"""The glossary: every term defined once, linked from the README, naming code that exists."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY = ROOT / "docs" / "glossary.md"
README = ROOT / "README.md"

# The terms the glossary must define (issue 15, item 3), as their headings read.
REQUIRED_TERMS = (
    "Workflow",
    "Queue",
    "Step",
    "Target",
    "Producer",
    "Job",
    "Telemetry",
    "Decoupling",
    "Idempotency",
    "DLQ",
    "Gap",
    "Backfill",
    "Shard",
    "Batch",
    "Queue state",
    "Data topic",
    "Service topics",
    "Candle",
    "_key",
    "Sink",
    "Loader",
    "Launcher",
    "Executed notebook",
    "Weight budget",
)

CODE_PATH = re.compile(r"`(streamforge_nb(?:\.\w+)+)`")
README_LINK = re.compile(r"\]\((?:\./)?docs/glossary\.md(?:#([\w-]+))?\)")


def _term(heading: str) -> str:
    """Return a heading's term as compared: no backticks, no parenthetical, case-folded."""
    return heading.replace("`", "").split(" (")[0].strip().casefold()


def _slug(heading: str) -> str:
    """Return GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _entries() -> dict[str, str]:
    """Map each `###` heading of the glossary to the text of its entry."""
    parts = re.split(r"^### (.+)$", GLOSSARY.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _headings() -> list[str]:
    return re.findall(r"^### (.+)$", GLOSSARY.read_text(encoding="utf-8"), flags=re.M)


def _resolve(path: str) -> Any:
    """Import the longest module prefix of `path`, then walk the rest as attributes.

    A dataclass or pydantic field counts as an attribute of its class.
    """
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            fields = getattr(obj, "model_fields", None) or {}
            if dataclasses.is_dataclass(obj):
                fields = {f.name: f for f in dataclasses.fields(obj)}
            if hasattr(obj, name):
                obj = getattr(obj, name)
            elif name in fields:
                obj = fields[name]
            else:
                raise AttributeError(f"{path}: {'.'.join(parts[:cut])} has no {name!r}")
        return obj
    raise ModuleNotFoundError(path)


def test_every_term_is_defined_exactly_once() -> None:
    terms = [_term(h) for h in _headings()]
    doubles = sorted({t for t in terms if terms.count(t) > 1})
    assert not doubles, f"terms defined more than once: {doubles}"
    missing = [t for t in REQUIRED_TERMS if t.casefold() not in terms]
    assert not missing, f"terms the glossary must define: {missing}"


def test_no_term_is_defined_outside_its_heading() -> None:
    # A second definition would be a bold "**Term**:" line or a "Term:" list item.
    text = GLOSSARY.read_text(encoding="utf-8")
    terms = {_term(h) for h in _headings()}
    inline = re.findall(r"^\s*(?:[-*]\s+)?\*\*([^*]+)\*\*:", text, flags=re.M)
    again = sorted(t for t in inline if _term(t) in terms)
    assert not again, f"terms defined again outside their heading: {again}"


def test_every_entry_says_where_it_lives_in_the_library() -> None:
    for heading, body in _entries().items():
        library = [line for line in body.splitlines() if line.startswith("- Library:")]
        assert len(library) == 1, f"{heading}: needs exactly one '- Library:' line"
        assert CODE_PATH.search(library[0]), f"{heading}: its Library line names no code"


@pytest.mark.parametrize(
    "path",
    sorted(set(CODE_PATH.findall(GLOSSARY.read_text(encoding="utf-8")))),
)
def test_named_code_exists(path: str) -> None:
    _resolve(path)


def test_resolve_refuses_code_that_does_not_exist() -> None:
    with pytest.raises(AttributeError, match="no 'Nope'"):
        _resolve("streamforge_nb.workflow.batch.Nope")
    with pytest.raises(AttributeError, match="no 'nope'"):
        _resolve("streamforge_nb.workflow.steps.Plan.nope")


def test_readme_links_the_glossary_and_its_anchors_exist() -> None:
    links = README_LINK.findall(README.read_text(encoding="utf-8"))
    assert links, "README.md does not link docs/glossary.md"
    top = README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert README_LINK.search(top), "README.md links the glossary only below its first section"
    anchors = {_slug(h) for h in _headings()}
    broken = sorted({a for a in links if a and a not in anchors})
    assert not broken, f"README links to glossary anchors that do not exist: {broken}"


def test_readme_uses_queue_as_settled() -> None:
    # The settled meaning: a queue is a whole queue id, never one step of a workflow.
    text = README.read_text(encoding="utf-8")
    assert not re.search(r"queue is (?:one|a) (?:workflow )?step", text, flags=re.I)
