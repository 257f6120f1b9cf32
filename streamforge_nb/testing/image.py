"""The single-user/worker image (jupyter-image/Dockerfile), built here for real, no registry.

from streamforge_nb.testing.image import build_image

image = build_image()            # cached: rebuilt only when a content hash of its inputs changes
node.import_image(image.archive)
Workflow.candles(..., image=image.ref)

The inputs, all made on this machine: a Debian bookworm base with Python 3.11, kcat, tini,
curl, git (mmdebstrap, imported into podman), a wheelhouse with the library's wheel and every
dependency (pip on the host), kubectl and helm from `scripts/build-kube --node`. The build runs
Debian's podman with `--network none`: the Dockerfile's LOCAL_INPUTS path downloads nothing.
podman here needs runc, cgroupfs and ulimits within the hard limits (../shared/FACTS.md); its
storage lives under the cache (`$STREAMFORGE_IMAGE_CACHE`, default
~/.cache/streamforge-nb/image), never in /var/lib/containers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streamforge_nb.exceptions import KubeTestError
from streamforge_nb.local.cluster.apiserver import cache_dir, kube_cache_dir

__all__ = [
    "BASE_REF",
    "IMAGE_REPOSITORY",
    "LOCK",
    "BuiltImage",
    "build_image",
    "image_cache_dir",
    "podman",
]

IMAGE_REPOSITORY = "localhost/streamforge/jupyter-python311"
BASE_REF = "localhost/streamforge/bookworm-python311"
BASE_PACKAGES = "python3,python-is-python3,python3-pip,ca-certificates,tini,kcat,git,curl"
REPO = Path(__file__).resolve().parents[2]
# The image's own requirements and the lock that pins them and the library's (scripts/lock).
LOCK = REPO / "requirements.lock"
IMAGE_REQUIREMENTS = REPO / "jupyter-image" / "requirements.in"
# Debian bookworm's python3 (the mmdebstrap base): the wheelhouse is resolved for it.
BASE_PYTHON = "3.11.2"
# Every wheel platform glibc 2.36 (bookworm) runs: pip does not expand --platform itself.
_PLATFORMS = [
    arg
    for tag in (
        *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)),
        "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64",
    )
    for arg in ("--platform", tag)
]  # fmt: skip
DEBIAN_MIRROR = os.environ.get("STREAMFORGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@dataclass(frozen=True)
class BuiltImage:
    """A built image: its reference, its docker archive (for `ctr images import`), its size."""

    ref: str
    archive: Path
    size_bytes: int
    seconds: float
    """How long this call took (0 when cached)."""
    cached: bool


def image_cache_dir() -> Path:
    return cache_dir("image", "STREAMFORGE_IMAGE_CACHE")


def podman(*args: str, cache: Path | None = None, timeout: float = 3600) -> str:
    """Run Debian's podman with its storage under the cache and the settings that work here."""
    cache = cache or image_cache_dir()
    store = cache / "podman"
    for sub in ("root", "run", "tmp"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    command = [
        "podman",
        "--root", str(store / "root"),
        "--runroot", str(store / "run"),
        "--tmpdir", str(store / "tmp"),
        "--storage-driver", "overlay",
        "--runtime", "/usr/sbin/runc",
        "--cgroup-manager", "cgroupfs",
        "--events-backend", "none",
        *args,
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(store / "tmp")}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if done.returncode != 0:
        raise KubeTestError(
            f"podman {' '.join(args[:2])} failed ({done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-4000:]}"
        )
    return done.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_files() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "README.md", REPO / "jupyter-image" / "Dockerfile",
             LOCK, IMAGE_REQUIREMENTS]  # fmt: skip
    for path in sorted((REPO / "streamforge_nb").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append(path)
    return files


def _base(cache: Path) -> str:
    """The bookworm base, made once with mmdebstrap and imported into podman's storage."""
    tag = hashlib.sha256(f"{BASE_PACKAGES} {DEBIAN_MIRROR}".encode()).hexdigest()[:12]
    ref = f"{BASE_REF}:{tag}"
    if podman("images", "-q", ref, cache=cache).strip():
        return ref
    if shutil.which("mmdebstrap") is None:
        raise KubeTestError("no mmdebstrap: install it with scripts/install-node-deps")
    tarball = cache / f"bookworm-{tag}.tar"
    if not tarball.is_file():
        partial = tarball.with_suffix(".partial.tar")
        done = subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={BASE_PACKAGES}",
             "--aptopt=Acquire::Retries \"3\"", "bookworm", str(partial), DEBIAN_MIRROR],
            capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise KubeTestError(f"mmdebstrap failed:\n{done.stderr[-3000:]}")
        partial.rename(tarball)
    podman("import", "--change", 'CMD ["/bin/bash"]', str(tarball), ref, cache=cache)
    return ref


def _wheelhouse(cache: Path) -> Path:
    """The library's wheel (rebuilt every time: cheap) and its dependencies (cached on
    pyproject.toml), for `pip install --no-index` inside the build."""
    deps_key = hashlib.sha256(
        (REPO / "pyproject.toml").read_bytes()
        + LOCK.read_bytes()
        + IMAGE_REQUIREMENTS.read_bytes()
        + BASE_PYTHON.encode()
    ).hexdigest()[:12]
    deps = cache / f"wheelhouse-deps-{deps_key}"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    own = cache / "wheel"
    shutil.rmtree(own, ignore_errors=True)
    _run([*pip, "wheel", "--no-deps", "-w", str(own), str(REPO)], "building the library's wheel")
    wheel = next(own.glob("streamforge_nb-*.whl"))
    if not deps.is_dir():
        partial = deps.with_name(deps.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        # Resolved for the base's Python (Debian bookworm's 3.11.2, older than this one may
        # be) and glibc 2.36, wheels only: nothing is built inside the image.
        _run(
            [*pip, "download", "--only-binary=:all:", "--python-version", BASE_PYTHON,
             "--implementation", "cp", *_PLATFORMS, "-d", str(partial), str(wheel),
             "-c", str(LOCK), "-r", str(IMAGE_REQUIREMENTS)],
            "building the wheelhouse",
        )  # fmt: skip
        for stale in partial.glob("streamforge_nb-*.whl"):
            stale.unlink()
        partial.rename(deps)
    os.utime(deps)  # the newest wheelhouse is the one in use: _forget_older keeps it
    return _merge(wheel, deps, cache / "context" / "inputs" / "wheelhouse")


def _merge(wheel: Path, deps: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in [*deps.iterdir(), wheel]:
        os.link(path, target / path.name)
    return target


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise KubeTestError(f"{what} failed:\n{(done.stdout + done.stderr)[-3000:]}")


def build_image(*, cache: Path | None = None, force: bool = False) -> BuiltImage:
    """Build jupyter-image/Dockerfile offline if its inputs changed; return the image.

    The tag is a content hash of every input (Dockerfile, the package's files, the base's
    recipe, kubectl, helm): unchanged inputs mean no build, only the archive's path.
    """
    started = time.monotonic()
    cache = cache or image_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tools = {name: kube_cache_dir() / "bin" / name for name in ("kubectl", "helm")}
    missing = [str(p) for p in tools.values() if not os.access(p, os.X_OK)]
    if missing:
        raise KubeTestError(
            f"{', '.join(missing)} missing: build them with scripts/build-kube --node"
        )
    digest = hashlib.sha256(f"base {BASE_PACKAGES} {DEBIAN_MIRROR}\n".encode())
    for path in [*_source_files(), *tools.values()]:
        digest.update(f"{path.name} {_sha256(path)}\n".encode())
    tag = digest.hexdigest()[:16]
    ref = f"{IMAGE_REPOSITORY}:{tag}"
    archive = cache / f"jupyter-python311-{tag}.docker.tar"
    if archive.is_file() and not force:
        return BuiltImage(ref, archive, _image_size(ref, cache, archive), 0.0, True)
    base = _base(cache)
    context = cache / "context"
    _wheelhouse(cache)
    bin_dir = context / "inputs" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, path in tools.items():
        shutil.copy2(path, bin_dir / name)
    # The files the Dockerfile reads from a repository checkout, at the same paths.
    (context / "jupyter-image").mkdir(exist_ok=True)
    shutil.copy2(LOCK, context / LOCK.name)
    shutil.copy2(IMAGE_REQUIREMENTS, context / "jupyter-image" / IMAGE_REQUIREMENTS.name)
    # --no-cache: the inputs come in through RUN --mount=type=bind, which a layer cache does not
    # see; the content hash above already decides whether to build at all.
    podman(
        "build", "--network", "none", "--pull=never", "--no-cache",
        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        "--build-arg", f"BASE={base}", "--build-arg", "LOCAL_INPUTS=inputs",
        "--build-arg", f"KUBECTL_SHA256={_sha256(tools['kubectl'])}",
        "--build-arg", f"HELM_SHA256={_sha256(tools['helm'])}",
        "-f", str(REPO / "jupyter-image" / "Dockerfile"), "-t", ref, str(context),
        cache=cache,
    )  # fmt: skip
    for old in cache.glob("jupyter-python311-*.docker.tar"):
        old.unlink()
    partial = archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    podman("save", "--format", "docker-archive", "-o", str(partial), ref, cache=cache)
    partial.rename(archive)
    _forget_older(ref, cache)
    return BuiltImage(
        ref, archive, _image_size(ref, cache, archive), time.monotonic() - started, False
    )


def _forget_older(ref: str, cache: Path) -> None:
    """Remove the older builds' images and dependency wheelhouses: each image is about 1.4 GB,
    and a developer rebuilds after every change (a day's work filled 40 GB)."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", cache=cache).split()
    for old in listed:
        if old.startswith(f"{IMAGE_REPOSITORY}:") and old != ref:
            podman("rmi", old, cache=cache)
    podman("image", "prune", "-f", cache=cache)  # the untagged layers those builds left
    keep = max(cache.glob("wheelhouse-deps-*"), key=lambda p: p.stat().st_mtime, default=None)
    for deps in cache.glob("wheelhouse-deps-*"):
        if deps != keep:
            shutil.rmtree(deps, ignore_errors=True)


def _image_size(ref: str, cache: Path, archive: Path) -> int:
    try:
        return int(podman("image", "inspect", "--format", "{{.Size}}", ref, cache=cache).strip())
    except (KubeTestError, ValueError):
        return archive.stat().st_size


def main() -> int:
    """Build the image unless cached and say so: scripts/test runs this before the suite,
    so the node tests find it built (the build is set-up, like the node's binaries)."""
    from streamforge_nb.local.cluster.node import node_unavailable

    reason = node_unavailable()
    if reason:  # the node tests skip, saying why; nothing to build for
        print(f"no image built: no real node here ({reason})")
        return 0
    try:
        image = build_image()
    except KubeTestError as exc:
        print(f"the image did not build: {exc}", file=sys.stderr)
        return 1
    how = "cached" if image.cached else f"built in {image.seconds:.0f} s"
    print(f"{image.ref} ({how}, {image.size_bytes / 1e6:.0f} MB): {image.archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
