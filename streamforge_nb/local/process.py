"""The process helpers' former home: they are `streamforge_nb.process` now.

They moved below the workflow layer, whose local launcher uses them as the local platform does;
this module keeps `from streamforge_nb.local.process import ...` working.
"""

from __future__ import annotations

from streamforge_nb.process import (
    LOOPBACK,
    HttpProbe,
    LogFile,
    free_port,
    pid_alive,
    pids_mentioning,
    port_open,
    read_state,
    signal_group,
    spawn,
    terminate_group,
    wait_pids_gone,
    wait_ready,
)

__all__ = [
    "LOOPBACK",
    "HttpProbe",
    "LogFile",
    "free_port",
    "pid_alive",
    "pids_mentioning",
    "port_open",
    "read_state",
    "signal_group",
    "spawn",
    "terminate_group",
    "wait_pids_gone",
    "wait_ready",
]
