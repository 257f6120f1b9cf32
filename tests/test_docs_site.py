"""The docs site builds strictly: a broken link, anchor or API reference fails the suite."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import missing_prerequisite  # tests/ is on sys.path (rootdir, no package)

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 240  # about 10 s on a quiet 2-core machine; the suite's load slows it


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of `config` into `site`, with its output kept for the message."""
    if importlib.util.find_spec("mkdocs") is None:  # `pip install -e '.[docs]'` (scripts/setup)
        missing_prerequisite("the docs extra is not installed: pip install -e '.[docs]'")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HOME": str(site.parent)},
    )  # fmt: skip


def test_the_site_builds_strictly_with_reference_and_tutorials(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = build(ROOT / "mkdocs.yml", site)
    assert done.returncode == 0, done.stderr[-3000:]
    # The API reference comes from the docstrings, the tutorials from notebooks/.
    control = (site / "reference" / "control" / "index.html").read_text()
    assert "dead_letters" in control and "Return the sinks" in control
    assert "CandleStore" in (site / "reference" / "index.html").read_text()
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = site / "tutorials" / notebook.stem / "index.html"
        assert page.is_file(), f"{notebook.name} is not in the site's nav"
    assert (site / "glossary" / "index.html").is_file()
    assert (site / "operations" / "index.html").is_file()


def project_copy(tmp_path: Path) -> Path:
    """The docs, the config and the tutorials copied (the package linked) for planting faults."""
    copy = tmp_path / "project"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy)
    shutil.copytree(ROOT / "docs", copy / "docs", symlinks=True)
    shutil.copytree(ROOT / "notebooks", copy / "notebooks")
    (copy / "streamforge_nb").symlink_to(ROOT / "streamforge_nb")
    return copy


def test_broken_links_fail_the_build(tmp_path: Path) -> None:
    """The same config over a copy of the docs with bad links: the build refuses, naming each."""
    copy = project_copy(tmp_path)
    planted = ["glossary.md#no-such-term", "no-such-page.md", "reference/control.md#no-such-anchor"]
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text() + "".join(f"\nSee [this]({link}).\n" for link in planted))
    done = build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0, "a site with broken links built"
    for link in planted:
        assert f"'{link}'" in done.stderr, link


def test_an_api_reference_to_a_missing_module_fails_the_build(tmp_path: Path) -> None:
    """A reference page naming a module that is gone (renamed, say) stops the build."""
    copy = project_copy(tmp_path)
    control = copy / "docs" / "reference" / "control.md"
    control.write_text(control.read_text() + "\n::: streamforge_nb.control.no_such_module\n")
    done = build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0, "a site with a missing module built"
    assert "Could not collect 'streamforge_nb.control.no_such_module'" in done.stderr
