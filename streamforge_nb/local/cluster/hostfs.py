"""What a real node leaves on a machine, and how to take it away again (for `testing.node`).

The kubelet, containerd and runc hard-code a few paths outside any directory we give them
(`/run/containerd/{s,fifo,runc}`, `/var/lib/kubelet/device-plugins`, `/var/log/containers`,
`/run/netns`, cgroups under `/sys/fs/cgroup/<controller>/<cgroupRoot>`). `HostState` records
what exists before the node starts; `cleanup` removes what appeared since, in the safe order:
processes, mounts, cgroups, files. `host_snapshot` is what the teardown test compares.

Also here: a one-layer OCI image archive from a static binary (the sandbox's pause image),
made without any image tool.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamforge_nb.local.cluster.podnet import POD_BRIDGE
from streamforge_nb.process import pid_alive, pids_mentioning, signal_group

__all__ = ["HOST_PATHS", "HostState", "cgroup_dirs", "host_snapshot", "mount_points", "oci_archive"]

# Hard-coded by containerd 1.6 / runc / the kubelet / CNI, whatever we configure.
HOST_PATHS = (
    Path("/run/containerd"),
    Path("/run/containerd/s"),
    Path("/run/containerd/fifo"),
    Path("/run/containerd/runc"),
    Path("/run/netns"),
    Path("/var/run/netns"),
    Path("/var/lib/kubelet"),
    Path("/var/lib/kubelet/device-plugins"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/var/lib/cni"),
    Path("/etc/cni"),
    Path("/opt/cni"),
)
CGROUP_BASE = Path("/sys/fs/cgroup")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace (from /proc/self/mountinfo, octal-unescaped)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        raw = line.split()[4]
        points.append(raw.encode().decode("unicode_escape"))
    return points


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """Every cgroup directory at or below `cgroup_root` in every hierarchy, deepest first."""
    found: list[Path] = []
    if not CGROUP_BASE.is_dir():
        return found
    for hierarchy in CGROUP_BASE.iterdir():
        top = hierarchy / cgroup_root.strip("/")
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _iptables() -> str:
    rules = []
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool) is None:
            continue
        done = subprocess.run([tool], capture_output=True, text=True, check=False)
        rules += [
            ln.split(" [", 1)[0] if ln.startswith(":") else ln
            for ln in done.stdout.splitlines()
            if not ln.startswith("#")
        ]
    return "\n".join(rules)


def host_snapshot(cgroup_root: str) -> dict[str, object]:
    """What a node may change on the host: mounts, its cgroups, iptables, the hard-coded paths,
    the Pod network's bridge.

    Two snapshots, before start and after teardown, must be equal.
    """
    entries: dict[str, list[str]] = {}
    for path in HOST_PATHS:
        if path.is_dir() and not path.is_symlink():
            entries[str(path)] = sorted(p.name for p in path.iterdir())
        elif path.exists():
            entries[str(path)] = ["(file)"]
    return {
        "mounts": sorted(mount_points()),
        "cgroups": sorted(str(p) for p in cgroup_dirs(cgroup_root)),
        "iptables": _iptables(),
        "paths": entries,
        "pod_bridge": Path("/sys/class/net", POD_BRIDGE).exists(),
    }


@dataclass
class HostState:
    """What existed before the node started, so teardown removes only what it added."""

    directory: Path
    cgroup_root: str
    mounts: set[str] = field(default_factory=set)
    entries: dict[Path, set[str] | None] = field(default_factory=dict)

    @classmethod
    def record(cls, directory: Path, cgroup_root: str) -> HostState:
        state = cls(directory.resolve(), cgroup_root, set(mount_points()))
        for path in HOST_PATHS:
            state.entries[path] = (
                {p.name for p in path.iterdir()}
                if path.is_dir() and not path.is_symlink()
                else None
            )
        return state

    def _ours(self, mount: str) -> bool:
        roots = [str(self.directory), *(str(p) for p in HOST_PATHS)]
        return any(mount == r or mount.startswith(r.rstrip("/") + "/") for r in roots)

    def cleanup(self, marker: str) -> list[str]:
        """Remove what the node left; return what had to be removed (for the log).

        `marker` is a string every process of the node has on its command line (the node's
        directory): shims and containers that outlived containerd are killed first.
        """
        removed: list[str] = []
        # 1. processes: containerd shims (their command line names our socket) and whatever
        #    they still run.
        for _round in range(3):
            pids = {p for p in pids_mentioning(marker) if p != os.getpid()}
            if not pids:
                break
            for pid in pids:
                signal_group(pid, 9, leader_only=True)
                removed.append(f"process {pid}")
            deadline = time.monotonic() + 5
            while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
        # Container processes are children of shims, in the node's cgroups: kill them there.
        for directory in cgroup_dirs(self.cgroup_root):
            procs = directory / "cgroup.procs"
            with contextlib.suppress(OSError):
                for member in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(member), 9)
                        removed.append(f"process {member}")
        # 2. mounts: the node's own and those under the hard-coded paths, deepest first.
        for _round in range(3):
            new = [m for m in mount_points() if m not in self.mounts and self._ours(m)]
            if not new:
                break
            for mount in sorted(set(new), key=len, reverse=True):
                done = subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
                if done.returncode == 0:
                    removed.append(f"mount {mount}")
        # 3. cgroups, deepest first, once their processes are gone.
        for _round in range(50):
            left = cgroup_dirs(self.cgroup_root)
            if not left:
                break
            for directory in left:
                with contextlib.suppress(OSError):
                    directory.rmdir()
                    removed.append(f"cgroup {directory}")
            if cgroup_dirs(self.cgroup_root):
                time.sleep(0.1)
        # 4. files under the hard-coded paths that were not there before, deepest first.
        for path in sorted(HOST_PATHS, key=lambda p: len(p.parts), reverse=True):
            before = self.entries.get(path)
            if not path.exists() and not path.is_symlink():
                continue
            if before is None:
                _remove(path)
                removed.append(f"path {path}")
                continue
            if not path.is_dir():
                continue
            for entry in path.iterdir():
                if entry.name not in before and entry not in HOST_PATHS:
                    _remove(entry)
                    removed.append(f"path {entry}")
        return removed


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


# --- a one-layer OCI image --------------------------------------------------------------------


def _blob(layout: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest.split(':')[1]}")
    info.size = len(data)
    layout.addfile(info, io.BytesIO(data))
    return digest, len(data)


def oci_archive(binary: Path, name: str, archive: Path) -> Path:
    """Write an OCI image archive of one static binary at `/<binary name>`, its entrypoint.

    `name` (e.g. `streamforge.local/pause:3.10`) is recorded as `io.containerd.image.name`,
    which `ctr images import` takes as the image's name.
    """
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        info = tarfile.TarInfo(binary.name)
        data = binary.read_bytes()
        info.size = len(data)
        info.mode = 0o755
        layer.addfile(info, io.BytesIO(data))
    layer_tar = layer_buffer.getvalue()
    layer_gz = gzip.compress(layer_tar, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [f"/{binary.name}"], "User": "65535:65535"},
        "rootfs": {
            "type": "layers",
            "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
        },
    }
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as out:
        config_digest, config_size = _blob(out, json.dumps(config).encode())
        layer_digest, layer_size = _blob(out, layer_gz)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }],
        }  # fmt: skip
        manifest_digest, manifest_size = _blob(out, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }],
        }  # fmt: skip
        for file_name, content in (
            ("index.json", json.dumps(index).encode()),
            ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
        ):
            info = tarfile.TarInfo(file_name)
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))
    return archive
