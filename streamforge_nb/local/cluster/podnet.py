"""The local node's Pod network: a Linux bridge on the host, Pods on it by the `bridge` CNI.

Pods that do not ask for the host's network get an address of `POD_SUBNET` on the bridge
`POD_BRIDGE`, whose own address `POD_GATEWAY` is the host's side: a broker or an exchange
listening there is what such Pods reach (there is no kube-proxy and no DNS, so no Service
works inside a Pod, and no route leads off the subnet). The bridge plugin enforces no
NetworkPolicy. hostNetwork Pods are not affected (CNI is not called for them).

The node makes the bridge, with its address, before any Pod and before containerd, so a
server can listen on `POD_GATEWAY` from the start; the plugin only attaches Pods to it
(`isGateway: false`: it then changes no host setting such as `ip_forward`, and `ipMasq:
false` adds no iptables rule). The teardown deletes the bridge.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import KubeTestError

__all__ = [
    "POD_BRIDGE",
    "POD_GATEWAY",
    "POD_SUBNET",
    "host_directory_claim",
    "make_pod_bridge",
    "pod_network_conflist",
    "remove_pod_bridge",
]

POD_BRIDGE = "stfpods0"
POD_SUBNET = "10.217.0.0/24"
POD_GATEWAY = "10.217.0.1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise KubeTestError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def make_pod_bridge() -> None:
    """Create the bridge with the gateway address (again, if a killed node left one)."""
    remove_pod_bridge()
    prefix = POD_SUBNET.split("/")[1]
    _ip("link", "add", POD_BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{POD_GATEWAY}/{prefix}", "dev", POD_BRIDGE)
    _ip("link", "set", POD_BRIDGE, "up")


def remove_pod_bridge() -> None:
    """Delete the bridge if it exists (the Pods' veths went with their network namespaces)."""
    if Path("/sys/class/net", POD_BRIDGE).exists():
        _ip("link", "del", POD_BRIDGE, check=False)


def pod_network_conflist(ipam_dir: Path) -> str:
    """The CNI conflist: `bridge` on `POD_BRIDGE`, addresses by `host-local` kept in `ipam_dir`
    (the node's own directory, not /var/lib/cni). containerd adds `loopback` itself."""
    config = {
        "cniVersion": "1.0.0",
        "name": "streamforge-pods",
        "plugins": [{
            "type": "bridge",
            "bridge": POD_BRIDGE,
            "isGateway": False,
            "ipMasq": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                "dataDir": str(ipam_dir),
            },
        }],
    }  # fmt: skip
    return json.dumps(config, indent=2) + "\n"


def host_directory_claim(
    namespace: str, claim: str, path: Path, size: str = "1Gi"
) -> list[dict[str, Any]]:
    """A PersistentVolume of the host directory `path` bound ahead to the claim
    `namespace/claim`, and that PersistentVolumeClaim.

    Pod Security checks a Pod's volume types, not a PersistentVolume's: a Pod in a
    "restricted" namespace may mount the claim where it may not mount the hostPath.
    """
    volume_name = f"{namespace}-{claim}"
    return [
        {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": volume_name, "labels": {"app": "streamforge"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace, "labels": {"app": "streamforge"}},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": volume_name,
                "resources": {"requests": {"storage": size}},
            },
        },
    ]  # fmt: skip
