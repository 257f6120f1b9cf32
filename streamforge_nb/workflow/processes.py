"""The `local` launcher: each Job's exact command and environment as a process here.

The ConfigMap and Secret a Pod would get come from the current Settings instead; records and
logs live under `~/.streamforge-nb/jobs/`, so another process can list, follow and delete the
Jobs (a pid is checked against its start time before it is signalled).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from streamforge_nb.exceptions import StreamForgeError
from streamforge_nb.process import pid_alive, spawn, terminate_group
from streamforge_nb.settings import Settings, local_home
from streamforge_nb.workflow.launchers import JobStatus, Launcher, _container, _labels, _producer

__all__ = ["LocalLauncher"]


def _exit_reason(code: int) -> str:
    """Return "exit code 1", or "killed by SIGKILL" when a signal ended the process."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), so a reused pid is not ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class LocalLauncher(Launcher):
    """Run Jobs as local processes; their records and logs live in `$STREAMFORGE_HOME/jobs`.

    Each Job's record (`<name>.json`) holds its pid, labels, producer id and, once the
    process ended, its exit code and end time: a watcher thread of the process that
    started it writes them, so any other process reading the record knows how it ended
    ("exit code 1", "killed by SIGKILL"). A process whose starter is gone too is known
    only to have ended.
    """

    name = "local"

    def __init__(self, home: Path | str | None = None, settings: Settings | None = None) -> None:
        self.base = Path(home) if home is not None else local_home()
        self.home = self.base / "jobs"
        self.settings = settings or Settings.from_env()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    def options(self) -> dict[str, Any]:
        return {"home": str(self.base)}

    def submit(self, job: dict[str, Any]) -> str:
        name = job["metadata"]["name"]
        container = _container(job)
        command = list(container["command"])
        if command[0] == "python":  # the image's Python is this environment's
            command[0] = sys.executable
        env = {**os.environ, **self._from_config_and_secret()}
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        log_path = self.home / f"{name}.log"
        process, _ = spawn(command, log_path, env=env)
        self._processes[name] = process
        record = {
            "name": name, "pid": process.pid, "labels": _labels(job), "log": str(log_path),
            "producer": _producer(container), "started": _start_ticks(process.pid),
        }  # fmt: skip
        path = self.home / f"{name}.json"
        path.write_text(json.dumps(record))
        threading.Thread(
            target=self._watch, args=(process, path, record), name=f"job-{name}", daemon=True
        ).start()
        return str(name)

    @staticmethod
    def _watch(process: subprocess.Popen[bytes], path: Path, record: dict[str, Any]) -> None:
        """Record how the process ended, for every process that reads the record."""
        code = process.wait()
        if path.is_file():  # a deleted Job's record stays deleted
            ended = {**record, "exit_code": code, "ended_at": time.time()}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(ended))
            tmp.replace(path)

    def _from_config_and_secret(self) -> dict[str, str]:
        """What the ConfigMap and Secret give a Pod, from this machine's settings."""
        s = self.settings
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "QUEUE_CONTROL_TOPIC": s.queue_control_topic,
            "QUEUE_EVENTS_TOPIC": s.queue_events_topic,
        }
        optional = {
            "KAFKA_USER": s.kafka_user,
            "KAFKA_PASSWORD": s.kafka_password.get_secret_value() if s.kafka_password else None,
            "CA_PATH": s.kafka_ca_path,
            "KAFKA_SECURITY_PROTOCOL": s.kafka_security_protocol,
            "ARANGO_URL": s.arango_url,
            # The Secret's ArangoDB credentials: never in the URL, parameters or commands.
            "ARANGO_USER": s.arango_user,
            "ARANGO_PASSWORD": s.arango_password.get_secret_value() if s.arango_password else None,
        }
        env.update({k: v for k, v in optional.items() if v})
        return env

    def _records(self, queue_id: str) -> builtins.list[dict[str, Any]]:
        records = []
        for path in sorted(self.home.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):  # being replaced or deleted
                record = json.loads(path.read_text())
                if record["labels"].get("queue_id") == queue_id:
                    records.append(record)
        return records

    def _alive(self, record: dict[str, Any]) -> bool:
        """Tell whether the record's pid is still its process (not a reused pid)."""
        pid = int(record["pid"])
        started = record.get("started")
        return pid_alive(pid) and (started is None or _start_ticks(pid) == started)

    def _state(self, record: dict[str, Any]) -> tuple[str, str, float | None]:
        process = self._processes.get(record["name"])
        code: int | None
        ended_at = record.get("ended_at")
        if process is not None:
            code = process.poll()
            if code is not None and ended_at is None:
                ended_at = time.time()  # the watcher is writing it
        elif "exit_code" in record:
            code = record["exit_code"]
        elif self._alive(record):
            code = None
        else:  # its starter is gone too: only the end is known
            return "unknown", "the process ended (its exit code is not known here)", None
        if code is None:
            return "active", "", None
        if code == 0:
            return "succeeded", "exit code 0", ended_at
        return "failed", _exit_reason(code), ended_at

    def list(self, queue_id: str) -> list[JobStatus]:
        jobs = []
        for record in self._records(queue_id):
            state, detail, ended_at = self._state(record)
            labels = record["labels"]
            jobs.append(
                JobStatus(
                    record["name"], queue_id, labels.get("target", ""), state, detail,
                    record.get("producer", ""), ended_at,
                )
            )  # fmt: skip
        return jobs

    def wait(self, job_name: str, timeout: float | None = None) -> int:
        """Wait for a Job started by this launcher; return its exit code."""
        return self._processes[job_name].wait(timeout)

    def delete(self, queue_id: str, *, grace: float = 30.0) -> builtins.list[str]:
        """Terminate each Job's process group; remove its record; return the Jobs' names.

        SIGTERM to the runner only, as the kubelet does to a Pod's main process: it asks
        its worker to stop and lets papermill save the notebook. After `grace` s the whole
        group (the kernel too) gets SIGKILL. Works from any process: a Job started by
        another one is found by its recorded pid (checked against its start time).
        """
        names = []
        for record in self._records(queue_id):
            process = self._processes.pop(record["name"], None)
            path = self.home / f"{record['name']}.json"
            path.unlink(missing_ok=True)  # first: the watcher must not write it back
            if process is not None:
                terminate_group(process, grace=grace, leader_only=True)
            elif "exit_code" not in record and self._alive(record):
                terminate_group(
                    int(record["pid"]), grace=grace, leader_only=True,
                    gone=lambda r=record: not self._alive(r),  # type: ignore[misc]
                )  # fmt: skip
            names.append(record["name"])
        return names

    def logs(self, job_name: str) -> str:
        path = self.home / f"{job_name}.log"
        if not path.is_file():
            raise StreamForgeError(f"no local Job named {job_name} (looked in {self.home})")
        return path.read_text(errors="replace")
