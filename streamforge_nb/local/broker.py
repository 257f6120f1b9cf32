"""A real single-node Apache Kafka broker (KRaft) for laptops and tests.

Everything lives under one home directory the user can see and delete: config, TLS material,
SCRAM credentials, data, logs, and the env files that point every other command at the broker.
Two client listeners on 127.0.0.1: PLAINTEXT (anonymous, a super user: the local default) and
SASL_SSL with SCRAM-SHA-512, the platform's production setup, where ACLs are enforced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from streamforge_nb.exceptions import (
    LocalBrokerError,
    ProcessExited,
    StartTimeout,
    StreamForgeError,
)
from streamforge_nb.local import maven
from streamforge_nb.local.broker_config import (
    ADMIN_USER,
    LOG4J2,
    format_storage,
    is_formatted,
    kafka_uuid,
    server_properties,
    stored_topics,
    write_env_files,
)
from streamforge_nb.local.tls import make_certificates
from streamforge_nb.platform.topics import PLATFORM_ACLS, PLATFORM_USER, VIEWER_ACLS, VIEWER_USER
from streamforge_nb.process import (
    LogFile,
    free_port,
    port_open,
    spawn,
    terminate_group,
    wait_ready,
)
from streamforge_nb.settings import Settings

__all__ = ["BrokerStatus", "LocalBroker"]

DEFAULT_PORT = 9092
_READY_LINE = "Kafka Server started"
_JAVA_FRAMES = ("at ", "... ")  # stack frames bury the one line that says what went wrong
_JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)


@dataclass(frozen=True)
class BrokerStatus:
    """What `local status` reports. Holds no secret."""

    home: Path
    running: bool
    pid: int | None = None
    plaintext: str | None = None
    sasl_ssl: str | None = None
    ca_path: Path | None = None
    env_file: Path | None = None
    kafka_version: str = maven.KAFKA_VERSION
    uptime_s: float | None = None

    def lines(self) -> list[str]:
        """Render as `key: value` lines for the CLI."""
        state = f"running (pid {self.pid})" if self.running else "stopped"
        rows = [("state", state), ("home", str(self.home)), ("kafka", self.kafka_version)]
        if self.running:
            rows += [
                ("PLAINTEXT", self.plaintext or "-"),
                ("SASL_SSL", f"{self.sasl_ssl} (SCRAM-SHA-512, CA {self.ca_path})"),
                ("env file", str(self.env_file)),
                ("uptime", f"{self.uptime_s:.0f} s" if self.uptime_s is not None else "-"),
            ]
        return [f"{k:>9}: {v}" for k, v in rows]


class LocalBroker:
    """Start, stop and describe the local broker living in `home`."""

    def __init__(
        self, home: Path, *, java: str | None = None, pods_address: str | None = None
    ) -> None:
        """`pods_address`: also serve SASL_SSL there (listener PODS, advertised with that
        address), for Pods of the local node's Pod network (its `pod_gateway`); opt-in, as
        the address exists only while that node runs."""
        self.home = Path(home).expanduser().resolve()
        self.java = java or shutil.which("java") or "java"
        self.pods_address = pods_address
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = self.home / "logs" / "broker.log"
        self.env_file = self.home / "local.env"
        self.sasl_env_file = self.home / "local-sasl.env"
        self._state_path = self.home / "broker.json"
        self._credentials_path = self.home / "credentials.json"

    def __repr__(self) -> str:
        return f"LocalBroker(home={str(self.home)!r})"

    # -- public API --------------------------------------------------------------------------
    def up(
        self,
        *,
        port: int | None = None,
        reset: bool = False,
        timeout: float = 90.0,
        progress: Callable[[str], None] | None = None,
    ) -> BrokerStatus:
        """Start the broker unless it runs already; return its status.

        `port` is the PLAINTEXT port (SASL_SSL and the controller take the next two); 0 picks
        free ports (the previous ones while they are free); None reuses the previous ports, or
        9092 on a first start. The data of earlier runs (topics, messages, SCRAM users, ACLs)
        is kept whatever the ports; `reset=True` deletes it and formats the storage anew.
        """
        say = progress or (lambda _msg: None)
        data = self.home / "data"
        with self._lock():
            status = self.status()
            if status.running and reset:
                raise LocalBrokerError(
                    f"cannot reset the local broker in {self.home} while it runs "
                    f"(pid {status.pid}): run `streamforge-nb local down` first"
                )
            if status.running:
                say(f"already running (pid {status.pid})")
                return status
            state = self._read_state()
            if state is None and is_formatted(data) and not reset:
                # Without broker.json the SCRAM passwords and ports are unknown: refuse rather
                # than format over topics nobody asked to delete.
                raise LocalBrokerError(
                    f"{data} holds a formatted broker but {self._state_path.name} is missing; "
                    f"`streamforge-nb local up --reset` deletes that data and starts afresh"
                )
            previous = state["ports"] if state else None
            if reset or state is None or not is_formatted(data):
                if reset:
                    self._reset(say)
                state = self._prepare(self._ports(port, previous), say)
            else:
                self._keep(state, self._ports(port, previous), say)
            jars = maven.fetch_jars()
            self._start(state, jars, timeout, say)
            self._grant(state)
            return self.status()

    def down(self, *, timeout: float = 30.0) -> bool:
        """Stop the broker; return whether one was running. Leaves data in place."""
        with self._lock():
            state = self._read_state()
            pid = state.get("pid") if state else None
            if not pid or not self._is_broker(pid):
                return False
            self._stop_process(pid, timeout)
            if state is not None:
                state["pid"] = None
                self._write_state(state)
            return True

    def status(self) -> BrokerStatus:
        """Describe the broker without changing anything."""
        state = self._read_state()
        if not state or not state.get("pid") or not self._is_broker(state["pid"]):
            return BrokerStatus(home=self.home, running=False)
        ports = state["ports"]
        return BrokerStatus(
            home=self.home,
            running=True,
            pid=state["pid"],
            plaintext=f"127.0.0.1:{ports['plaintext']}",
            sasl_ssl=f"127.0.0.1:{ports['sasl_ssl']}",
            ca_path=self.home / "tls" / "ca.crt",
            env_file=self.env_file,
            kafka_version=state.get("kafka_version", maven.KAFKA_VERSION),
            uptime_s=time.time() - state["started_at"] if state.get("started_at") else None,
        )

    def settings(self, user: str | None = None) -> Settings:
        """Return Settings for the PLAINTEXT listener, or for `user` over SASL_SSL."""
        state = self._read_state()
        if state is None:
            raise LocalBrokerError(f"no local broker in {self.home}; run `streamforge-nb local up`")
        if user is None:
            return Settings(
                kafka_bootstrap_servers=f"127.0.0.1:{state['ports']['plaintext']}",
                source=str(self.env_file),
            )
        return Settings(
            kafka_bootstrap_servers=f"127.0.0.1:{state['ports']['sasl_ssl']}",
            kafka_user=user,
            kafka_password=SecretStr(self.password(user)),
            kafka_ca_path=str(self.home / "tls" / "ca.crt"),
            source=str(self.sasl_env_file),
        )

    def pods_bootstrap(self) -> str:
        """The PODS listener's address (SASL_SSL, the same users and CA as `settings(user)`)."""
        state = self._read_state()
        if state is None or not state.get("pods_address"):
            raise LocalBrokerError(f"the local broker in {self.home} has no listener for Pods")
        return f"{state['pods_address']}:{state['ports']['pods']}"

    def password(self, user: str) -> str:
        """Return the SCRAM password created for `user` at format time."""
        credentials: dict[str, str] = json.loads(self._credentials_path.read_text())
        if user not in credentials:
            raise LocalBrokerError(f"the local broker has no SCRAM user {user!r}")
        return credentials[user]

    def log_tail(self, lines: int = 25) -> str:
        """Return the last `lines` lines of the broker's log, Java stack frames left out."""
        return LogFile(self.log_path, skip=_JAVA_FRAMES).tail(lines, missing="(no broker log)")

    # -- preparation -------------------------------------------------------------------------
    def _prepare(self, ports: dict[str, int], say: Callable[[str], None]) -> dict[str, Any]:
        """Write config, certificates and credentials, format storage."""
        # Storage never formatted to completion holds nothing the broker could read.
        shutil.rmtree(self.home / "data", ignore_errors=True)
        for sub in ("config", "data", "logs", "tls"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        also = (self.pods_address,) if self.pods_address else ()
        certs = make_certificates(self.home / "tls", also=also)
        credentials = {
            u: secrets.token_urlsafe(18) for u in (ADMIN_USER, PLATFORM_USER, VIEWER_USER)
        }
        self._credentials_path.touch(mode=0o600)
        self._credentials_path.write_text(json.dumps(credentials, indent=2))
        props = self.home / "config" / "server.properties"
        props.write_text(
            server_properties(self.home, ports, certs.keystore_path, self.pods_address)
        )
        (self.home / "config" / "log4j2.properties").write_text(LOG4J2)
        state: dict[str, Any] = {
            "ports": ports,
            "cluster_id": kafka_uuid(),
            "kafka_version": maven.KAFKA_VERSION,
            "pods_address": self.pods_address,
            "pid": None,
            "started_at": None,
        }
        say(f"fetching Kafka {maven.KAFKA_VERSION} jars (Maven Central, cached)")
        jars = maven.fetch_jars()
        say("formatting storage with SCRAM users " + ", ".join(credentials))
        format_storage(self.java, jars, props, state["cluster_id"], credentials)
        write_env_files(
            self.env_file, self.sasl_env_file, ports, certs.ca_path, credentials[PLATFORM_USER]
        )
        self._write_state(state)
        return state

    def _keep(
        self, state: dict[str, Any], ports: dict[str, int], say: Callable[[str], None]
    ) -> None:
        """Reuse the formatted storage; move the listeners to `ports` if they differ.

        KRaft keeps no listener port in its storage: the broker registers its endpoints anew
        at each start, and a single node's static `controller.quorum.voters` may name
        another controller port than the last run's. So new ports only rewrite the config.
        """
        data = self.home / "data"
        if state.get("pods_address") != self.pods_address:
            # The certificate names the address: it was made for the broker's first start.
            raise LocalBrokerError(
                f"the local broker in {self.home} was set up with the Pods' listener address "
                f"{state.get('pods_address')!r}, not {self.pods_address!r}; "
                "`streamforge-nb local up --reset` deletes its data and starts afresh"
            )
        if ports != state["ports"]:
            moved = ", ".join(f"{k} {state['ports'][k]} -> {ports[k]}" for k in ports)
            say(f"ports changed ({moved}): config and env files rewritten")
            props = self.home / "config" / "server.properties"
            keystore = self.home / "tls" / "broker.pem"
            props.write_text(server_properties(self.home, ports, keystore, self.pods_address))
            write_env_files(
                self.env_file,
                self.sasl_env_file,
                ports,
                self.home / "tls" / "ca.crt",
                self.password(PLATFORM_USER),
            )
            state["ports"] = ports
            self._write_state(state)
        topics = stored_topics(data)
        users = json.loads(self._credentials_path.read_text())
        say(
            f"kept data in {data}: {len(topics)} topic{'s' * (len(topics) != 1)}, "
            f"SCRAM users {', '.join(users)} (`local up --reset` deletes it)"
        )

    def _reset(self, say: Callable[[str], None]) -> None:
        """Delete the data, the SCRAM credentials and the state: `_prepare` starts afresh."""
        data = self.home / "data"
        if data.exists():
            topics = stored_topics(data)
            say(
                f"reset: deleting the data in {data} ({len(topics)} topic"
                f"{'s' * (len(topics) != 1)} with their messages, SCRAM users and ACLs)"
            )
            shutil.rmtree(data)
        self._credentials_path.unlink(missing_ok=True)
        self._state_path.unlink(missing_ok=True)

    def _ports(self, port: int | None, previous: dict[str, int] | None) -> dict[str, int]:
        ports = self._choose_ports(port, previous)
        if self.pods_address and "pods" not in ports:
            ports = {**ports, "pods": free_port()}
        return ports

    def _choose_ports(self, port: int | None, previous: dict[str, int] | None) -> dict[str, int]:
        if port is None and previous is not None:
            return previous
        if port == 0 and previous is not None and not any(map(port_open, previous.values())):
            return previous  # free still: the env files and open notebooks stay valid
        if port == 0 or (
            port is None
            and not all(not port_open(p) for p in range(DEFAULT_PORT, DEFAULT_PORT + 3))
        ):
            return {"plaintext": free_port(), "sasl_ssl": free_port(), "controller": free_port()}
        base = port or DEFAULT_PORT
        return {"plaintext": base, "sasl_ssl": base + 1, "controller": base + 2}

    # -- process -----------------------------------------------------------------------------
    def _start(
        self, state: dict[str, Any], jars: Path, timeout: float, say: Callable[[str], None]
    ) -> None:
        ports = state["ports"]
        busy = [f"{name} {port}" for name, port in ports.items() if port_open(port)]
        if busy:
            raise LocalBrokerError(
                f"cannot start the local broker: port(s) {', '.join(busy)} already in use; "
                f"`streamforge-nb local up --port 0` picks free ones and keeps the data"
            )
        config = self.home / "config"
        command = [
            self.java,
            *_JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={config / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{jars}/*",
            "kafka.Kafka",
            str(config / "server.properties"),
        ]
        say(f"starting Kafka {maven.KAFKA_VERSION} (KRaft) in {self.home}")
        started = time.monotonic()
        self._process, log = spawn(command, self.log_path)
        state["pid"] = self._process.pid
        state["started_at"] = time.time()
        self._write_state(state)
        self._wait_ready(self._process, log, ports["plaintext"], timeout)
        say(
            f"ready in {time.monotonic() - started:.1f} s: "
            f"PLAINTEXT 127.0.0.1:{ports['plaintext']}, "
            f"SASL_SSL 127.0.0.1:{ports['sasl_ssl']}"
        )

    def _wait_ready(
        self, process: subprocess.Popen[bytes], log: LogFile, port: int, timeout: float
    ) -> None:
        log = dataclasses.replace(log, skip=_JAVA_FRAMES)
        try:
            wait_ready(
                process,
                lambda: log.contains(_READY_LINE) and port_open(port),
                log=log,
                timeout=timeout,
                what="the Kafka broker",
            )
        except ProcessExited as exc:
            raise LocalBrokerError(str(exc)) from None
        except StartTimeout as exc:
            self._stop_process(process.pid, 10)
            raise LocalBrokerError(str(exc)) from None

    def _grant(self, state: dict[str, Any]) -> None:
        """Create the service topics and the platform users' ACLs (idempotent)."""
        from streamforge_nb.kafka.clients import make_admin
        from streamforge_nb.platform.topics import ensure_acls, ensure_topics

        try:
            admin = make_admin(self.settings())
        except StreamForgeError as exc:
            raise LocalBrokerError(
                f"broker started but refused an admin connection: {exc}"
            ) from exc
        try:
            ensure_topics(admin)
            ensure_acls(admin, PLATFORM_USER, PLATFORM_ACLS)
            ensure_acls(admin, VIEWER_USER, VIEWER_ACLS)
        finally:
            admin.close()
        self._wait_acls_applied()

    def _wait_acls_applied(self, timeout: float = 20.0) -> None:
        """Wait until the authorizer applies the ACLs just created (asynchronously, from the
        metadata log): a client right after `up` must not find its topics invisible."""
        from streamforge_nb.kafka.clients import check_connection

        deadline = time.monotonic() + timeout
        # The viewer's rules were created last: once it sees queue-events, all are applied.
        while "queue-events" not in check_connection(self.settings(VIEWER_USER)):
            if time.monotonic() > deadline:
                raise LocalBrokerError(f"the broker did not apply its ACLs within {timeout:g} s")
            time.sleep(0.1)

    def _is_broker(self, pid: int) -> bool:
        if (
            self._process is not None
            and self._process.pid == pid
            and self._process.poll() is not None
        ):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"kafka.Kafka" in cmdline and str(self.home).encode() in cmdline

    def _stop_process(self, pid: int, timeout: float) -> None:
        """SIGTERM the broker's process group (a clean shutdown), SIGKILL if it lingers."""
        own = self._process if self._process is not None and self._process.pid == pid else None
        terminate_group(own or pid, grace=timeout, gone=lambda: not self._is_broker(pid))

    # -- state -------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return None
        return state

    def _write_state(self, state: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self._state_path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
