"""`streamforge-nb local cluster up|status|down` run as a user runs them: a whole node, then
nothing left of it. A `node` test: tests/conftest.py keeps these files in one worker."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import missing_prerequisite
from test_cli_commands import cli

from streamforge_nb.settings import Settings


@pytest.mark.node
@pytest.mark.timeout(600)
def test_local_cluster_up_status_down_leaves_no_process(settings: Settings) -> None:
    from streamforge_nb.local.cluster.node import node_unavailable
    from streamforge_nb.local.process import pids_mentioning

    reason = node_unavailable()
    if reason:
        missing_prerequisite(f"no real node here: {reason}")
    # containerd's sockets (<home>/cluster/run/containerd/containerd.sock.ttrpc) must fit a
    # Unix socket path's 104 bytes: pytest's tmp_path is too deep for that.
    tmp_path = Path(tempfile.mkdtemp(prefix="sf-", dir="/tmp"))
    home = str(tmp_path)
    kubeconfig = tmp_path / "cluster" / "kubeconfig"
    up = cli(settings, "local", "cluster", "up", timeout=400, STREAMFORGE_HOME=home)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.splitlines()[0] == f"KUBECONFIG={kubeconfig}"
        # Idempotent: the same cluster.
        again = cli(settings, "local", "cluster", "up", STREAMFORGE_HOME=home)
        assert again.returncode == 0 and again.stdout == up.stdout
        status = cli(settings, "local", "cluster", "status", "--json", STREAMFORGE_HOME=home)
        assert status.returncode == 0, status.stderr
        running = json.loads(status.stdout)
        assert running["running"] is True and running["kubeconfig"] == str(kubeconfig)
        assert running["nodes"]["streamforge-node"]["Ready"] == "True", running
    finally:
        down = cli(settings, "local", "cluster", "down", timeout=300, STREAMFORGE_HOME=home)
    assert (down.returncode, down.stdout) == (0, "stopped\n"), down.stderr
    assert pids_mentioning(str(tmp_path / "cluster")) == set()
    stopped = cli(settings, "local", "cluster", "status", "--json", STREAMFORGE_HOME=home)
    assert stopped.returncode == 3 and json.loads(stopped.stdout)["running"] is False
    again = cli(settings, "local", "cluster", "down", STREAMFORGE_HOME=home)
    assert again.stdout == "not running\n"
    shutil.rmtree(tmp_path)
