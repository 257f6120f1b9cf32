"""What a worker Job's Pod carries to pass Pod Security "restricted".

The image's user (jupyter-image/Dockerfile: uid 1001, gid 100), no privilege escalation, no
capabilities, the runtime's seccomp profile and a read-only root filesystem. What papermill
and the kernel write goes to emptyDir volumes: HOME (the kernel's connection file under
~/.local/share/jupyter/runtime, ~/.ipython, caches, and the executed notebook when its path
is relative, as the default `runs` is) and /tmp. A runs volume, when settings name one, is
mounted after these, so notebooks written there outlive the Pod.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CONTAINER_SECURITY_CONTEXT",
    "NB_GID",
    "NB_HOME",
    "NB_UID",
    "POD_SECURITY_CONTEXT",
    "WRITABLE_SIZE_LIMIT",
    "writable_volumes",
]

NB_UID = 1001
NB_GID = 100
NB_HOME = "/home/jovyan"
# An emptyDir grows on the node's disk; past this the kubelet evicts the Pod rather than let
# a runaway cell fill the node.
WRITABLE_SIZE_LIMIT = "1Gi"

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": NB_UID,
    "runAsGroup": NB_GID,
    # The emptyDirs (and a runs volume that supports it) are group-writable by gid 100.
    "fsGroup": NB_GID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def writable_volumes() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the emptyDir volumes and their mounts for HOME and /tmp."""
    places = (("home", NB_HOME), ("tmp", "/tmp"))
    volumes = [{"name": n, "emptyDir": {"sizeLimit": WRITABLE_SIZE_LIMIT}} for n, _ in places]
    mounts = [{"name": n, "mountPath": p} for n, p in places]
    return volumes, mounts
