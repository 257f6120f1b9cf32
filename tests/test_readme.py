"""The README is what a newcomer needs, and the docs stand on their own.

The README keeps what it is, install, the two commands, a short example, the exit codes and
links; the rest is in docs/ (built by tests/test_docs_site.py). Nothing cites a document
that does not ship with the project: the platform's contract is told in the docs themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Documents of the platform's authors that are not part of this project.
UNSHIPPED = re.compile(
    r"PLATFORM\.md|shared/|platform document|seed document|the seed\b|seed's|Appendix \w\b"
)


def test_the_readme_is_short_and_links_every_guide() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)[^)]*\)", text)
    assert {f"docs/{page}" for page in ("local-broker.md", "control.md", "store.md")} <= set(links)
    assert {"docs/workflows.md", "docs/benchmarks.md", "docs/operations.md"} <= set(links)
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []


def test_nothing_cites_a_document_that_does_not_ship() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    cited = [
        f"{page.relative_to(ROOT)}:{number}: {line.strip()}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if UNSHIPPED.search(line)
    ]
    assert cited == []
