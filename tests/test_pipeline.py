"""The GitLab pipeline (.gitlab-ci.yml): the README's test command, its stages, no secrets.

Static checks only (fast): scripts/check-pipeline runs the runnable jobs with gitlab-ci-local.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / ".gitlab-ci.yml"
README = ROOT / "README.md"

STAGES = ["lint", "test", "build", "image", "manifests"]
# job -> stage
JOBS = {
    "lint": "lint",
    "test": "test",
    "wheel": "build",
    "sbom": "build",
    "push-image": "image",
    "manifests": "manifests",
}
# GitLab's top-level keywords: everything else not starting with "." is a job.
KEYWORDS = {
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
}


@pytest.fixture(scope="module")
def pipeline() -> dict[str, Any]:
    loaded = yaml.safe_load(PIPELINE.read_text())
    assert isinstance(loaded, dict), ".gitlab-ci.yml must be a mapping"
    return loaded


def jobs(pipeline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in pipeline.items() if k not in KEYWORDS and not k.startswith(".")}


def job_field(pipeline: dict[str, Any], name: str, field: str) -> Any:
    """Return a job's field, following `extends` like GitLab does (one level is all we use)."""
    job = pipeline[name]
    if field in job:
        return job[field]
    parent = job.get("extends")
    return pipeline[parent].get(field) if isinstance(parent, str) else None


def readme_test_command() -> str:
    """Return the test command of the README's "Two commands on a fresh machine"."""
    section = README.read_text().split("## Two commands on a fresh machine", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    (line,) = (ln for ln in block.splitlines() if "scripts/test" in ln)
    return line.split("#", 1)[0].strip()


def test_the_test_job_runs_exactly_the_readme_test_command(pipeline: dict[str, Any]) -> None:
    assert readme_test_command() == "./scripts/test"
    assert pipeline["test"]["script"] == [readme_test_command()]


def test_lint_job_runs_the_same_checks_as_scripts_test(pipeline: dict[str, Any]) -> None:
    checks = [
        ln.strip()
        for ln in (ROOT / "scripts" / "test").read_text().splitlines()
        if ln.startswith((".venv/bin/ruff", ".venv/bin/mypy"))
    ]
    assert checks, "scripts/test lost its ruff/mypy lines"
    assert pipeline["lint"]["script"] == checks


def test_stages_and_jobs(pipeline: dict[str, Any]) -> None:
    assert pipeline["stages"] == STAGES
    assert {name: job["stage"] for name, job in jobs(pipeline).items()} == JOBS
    for name in JOBS:
        image = job_field(pipeline, name, "image")
        assert isinstance(image, str), f"{name} states no image"
        assert "bookworm" in image, f"{name}: {image} is not a Debian bookworm image"


def test_wheel_and_manifests_are_artifacts(pipeline: dict[str, Any]) -> None:
    assert any("pip wheel" in s and "--no-deps -w dist" in s for s in pipeline["wheel"]["script"])
    assert pipeline["wheel"]["artifacts"]["paths"] == ["dist/streamforge_nb-*.whl"]
    script = "\n".join(pipeline["manifests"]["script"])
    assert "streamforge-nb manifests $MANIFEST_OPTIONS build/manifests" in script
    assert 'diff -u "manifests/' in script and "exit 1" in script
    assert pipeline["manifests"]["artifacts"]["paths"] == ["build/manifests/"]


def test_image_job_pushes_the_single_user_image_only_from_default_branch_or_tags(
    pipeline: dict[str, Any],
) -> None:
    values = yaml.safe_load((ROOT / "manifests" / "jupyterhub-values.yaml").read_text())
    name = values["singleuser"]["image"]["name"]
    assert name == "registry.dmz.home/streamforge/core-modules/jupyter-python311"
    assert pipeline["variables"]["IMAGE_NAME"] == name
    job = pipeline["push-image"]
    script = job["script"]
    assert 'IMAGE_TAG="${CI_COMMIT_TAG:-$CI_COMMIT_SHORT_SHA}"' in script
    assert 'buildah push "$IMAGE_NAME:$IMAGE_TAG"' in script
    assert any(s.startswith("buildah build -f jupyter-image/Dockerfile") for s in script)
    # Every rule has a condition, and the conditions are exactly: a tag, the default branch.
    assert all(set(rule) == {"if"} for rule in job["rules"])
    assert {rule["if"] for rule in job["rules"]} == {
        "$CI_COMMIT_TAG",
        "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
    }


def test_no_secret_literals_in_the_pipeline(pipeline: dict[str, Any]) -> None:
    text = PIPELINE.read_text()
    # Credentials appear only as CI variables, and the password only on stdin.
    secretish = r"(?i)\b\w*(password|passwd|token|secret)\w*\s*[:=]\s*(\S+)"
    for match in re.finditer(secretish, text):
        value = match.group(2)
        assert re.fullmatch(r'"?\$\{?\w+\}?"?', value), f"secret-looking: {match.group(0)}"
    assert "printf '%s' \"$REGISTRY_PASSWORD\" | buildah login" in text
    assert "--password-stdin" in text
    assert not re.search(r"login\b.*\s(-p|--password)[ =]", text), "password on a command line"
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "credentials in a URL"
    variables = pipeline["variables"] | pipeline["push-image"]["variables"]
    for key in variables:
        assert not re.search(r"PASSWORD|TOKEN|SECRET|USER", key), f"{key} belongs in CI settings"


def test_check_pipeline_runs_the_runnable_jobs(pipeline: dict[str, Any]) -> None:
    script = (ROOT / "scripts" / "check-pipeline").read_text()
    match = re.search(r"^for job in ([\w -]+); do$", script, re.MULTILINE)
    assert match, "scripts/check-pipeline lost its job loop"
    assert match.group(1).split() == ["lint", "wheel", "manifests"]
    assert set(match.group(1).split()) <= set(jobs(pipeline))


# --- the lock file ------------------------------------------------------------------------------

LOCK = ROOT / "requirements.lock"
# Where the lock is resolved (scripts/lock): the image's Python and platform.
LOCK_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.2",
                    "sys_platform": "linux", "platform_system": "Linux",
                    "platform_machine": "x86_64", "os_name": "posix",
                    "implementation_name": "cpython",
                    "platform_python_implementation": "CPython"}  # fmt: skip


def lock_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a lock, by canonical name."""
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and ";" not in version, f"not a plain pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def pyproject_requirements() -> list[str]:
    """Every requirement the lock must satisfy: the library's, its extras', the image's."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        found.extend(extra)
    image = (ROOT / "jupyter-image" / "requirements.in").read_text().splitlines()
    return found + [ln for ln in (ln.split("#", 1)[0].strip() for ln in image) if ln]


def lock_problems(pins: dict[str, str], requirements: list[str]) -> list[str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    problems = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(LOCK_ENVIRONMENT):
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{text}: not in requirements.lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{text}: requirements.lock pins {pinned}")
    return problems


def test_the_lock_satisfies_every_requirement_of_pyproject_and_the_image() -> None:
    problems = lock_problems(lock_pins(LOCK.read_text()), pyproject_requirements())
    assert problems == [], "requirements.lock is stale; run scripts/lock:\n" + "\n".join(problems)


def test_the_lock_check_names_a_missing_or_out_of_bounds_pin() -> None:
    pins = lock_pins("click==8.0.0\n    # via x\n")
    assert lock_problems(
        pins, ["click>=8.1", "orjson>=3.10", "tomli; python_version < '3.11'"]
    ) == [
        "click>=8.1: requirements.lock pins 8.0.0",
        "orjson>=3.10: not in requirements.lock",
    ]


def test_the_release_image_pins_the_tool_versions_the_tests_build() -> None:
    """One image path: the Dockerfile's kubectl and helm are those scripts/build-kube builds
    for the image the tests run (the Dockerfile checks the versions either way)."""
    dockerfile = (ROOT / "jupyter-image" / "Dockerfile").read_text()
    build_kube = (ROOT / "scripts" / "build-kube").read_text()
    for tool in ("KUBE", "HELM"):
        tested = re.search(rf"^{tool}_VERSION=\$\{{\w+:-(v[\d.]+)\}}$", build_kube, re.MULTILINE)
        arg = "KUBECTL" if tool == "KUBE" else tool
        shipped = re.search(rf"^ARG {arg}_VERSION=(v[\d.]+)$", dockerfile, re.MULTILINE)
        assert tested and shipped and tested.group(1) == shipped.group(1), tool


def test_one_pipeline_per_change_and_newer_pipelines_cancel_older_ones(
    pipeline: dict[str, Any],
) -> None:
    rules = pipeline["workflow"]["rules"]
    assert rules[0] == {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}
    assert {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"} in rules
    assert pipeline["default"]["interruptible"] is True
    assert pipeline["push-image"]["interruptible"] is False


def test_caches_are_keyed_on_the_lock_and_the_pinned_versions(pipeline: dict[str, Any]) -> None:
    keys = {
        cache["key"]["prefix"]: (cache["key"]["files"], cache["paths"])
        for name in ("lint", "test", "sbom")
        for cache in job_field(pipeline, name, "cache")
    }
    assert keys["pip"] == (["requirements.lock"], [".cache/pip"])
    assert keys["kube"] == (["scripts/build-kube"], [".cache/streamforge-nb/kube"])
    assert keys["kafka"] == (["streamforge_nb/local/maven.py"], [".cache/streamforge-nb/kafka"])
    variables = pipeline["variables"]
    assert variables["PIP_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/pip"
    assert variables["STREAMFORGE_KUBE_CACHE"].endswith("/.cache/streamforge-nb/kube")
    assert variables["STREAMFORGE_KAFKA_JARS"].endswith("/.cache/streamforge-nb/kafka")


def test_jobs_install_from_the_lock_and_lint_without_the_test_extras(
    pipeline: dict[str, Any],
) -> None:
    for name in ("lint", "manifests"):
        (install,) = job_field(pipeline, name, "before_script")
        assert "-c requirements.lock" in install
    (lint,) = pipeline["lint"]["before_script"]
    assert "[test]" not in lint and "ruff mypy" in lint


def test_privileged_tests_report_junit_and_the_image_uses_the_wheel_and_has_an_sbom(
    pipeline: dict[str, Any],
) -> None:
    test = pipeline["test"]
    assert test["tags"] == ["privileged"]
    assert test["variables"]["PYTEST_ADDOPTS"] == "--junitxml=test-artifacts/junit.xml"
    assert test["artifacts"]["reports"]["junit"] == "test-artifacts/junit.xml"
    assert pipeline["push-image"]["needs"] == [{"job": "wheel", "artifacts": True}]
    assert pipeline["sbom"]["artifacts"]["reports"]["cyclonedx"] == "sbom.cdx.json"
    assert any("cyclonedx-py requirements requirements.lock" in s
               for s in pipeline["sbom"]["script"])  # fmt: skip
