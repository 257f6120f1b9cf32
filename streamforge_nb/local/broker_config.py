"""What the local broker's home holds before the broker starts: its configuration (KRaft,
listeners, SCRAM, ACL authorizer), its logging setup, its formatted storage with the SCRAM
users, and the env files that point every other command at it.

`LocalBroker` (in `broker.py`) decides when to write these; this module only says what.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import uuid
from pathlib import Path

from streamforge_nb.exceptions import LocalBrokerError
from streamforge_nb.platform.topics import PLATFORM_USER

__all__: list[str] = []  # the broker's own business: nothing for the `local` face

ADMIN_USER = "admin"
_PARTITION_DIR = re.compile(r"(.+)-(\d+)")

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.coordinator.name = org.apache.kafka.coordinator
logger.coordinator.level = WARN
"""


def stored_topics(log_dir: Path) -> list[str]:
    """Name the topics whose partitions live in `log_dir` (Kafka's internal `__` ones left out).

    A partition's directory is `<topic>-<partition>`; one being deleted or moved has a suffix
    after its number (`.<id>-delete`, `-future`, `-stray`) and is not counted.
    """
    if not log_dir.is_dir():
        return []
    names = {
        match.group(1)
        for entry in log_dir.iterdir()
        if entry.is_dir() and (match := _PARTITION_DIR.fullmatch(entry.name))
    }
    return sorted(n for n in names if not n.startswith("__"))


def is_formatted(log_dir: Path) -> bool:
    """Tell whether `log_dir` holds formatted storage: the broker refuses to start without it."""
    return (log_dir / "meta.properties").is_file()


def kafka_uuid() -> str:
    """A new cluster id, as `kafka-storage random-uuid` makes them."""
    while True:  # Kafka refuses ids whose text starts with '-'
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(
    home: Path, ports: dict[str, int], keystore: Path, pods_address: str | None = None
) -> str:
    """The broker's `server.properties`: one KRaft node, PLAINTEXT and SASL_SSL listeners.

    With `pods_address` (the local node's Pod network gateway) a third listener, PODS, serves
    SASL_SSL there on `ports["pods"]`, advertised with that address: Pods that are not on
    the host's network reach the broker only so.
    """
    p, s, c = ports["plaintext"], ports["sasl_ssl"], ports["controller"]
    pods = f",PODS://{pods_address}:{ports['pods']}" if pods_address else ""
    pods_login = [
        "listener.name.pods.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    ] if pods_address else []  # fmt: skip
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{c}",
            f"listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s},CONTROLLER://127.0.0.1:{c}"
            + pods,
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{p},SASL_SSL://127.0.0.1:{s}" + pods,
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
            + (",PODS:SASL_SSL" if pods_address else ""),
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={home / 'data'}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            # One node: every internal topic has one replica, and a small offsets topic keeps
            # the first consumer-group join fast.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # A restart must wait out the previous incarnation's session before it registers
            # again (9 s by default); one node has no one to fail over to, so keep it short.
            "broker.session.timeout.ms=2000",
            "broker.heartbeat.interval.ms=500",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            *pods_login,
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # Controller and inter-broker traffic is ANONYMOUS over PLAINTEXT: it must be super.
            f"super.users=User:ANONYMOUS;User:{ADMIN_USER}",
            "allow.everyone.if.no.acl.found=false",
            "",
        ]
    )


def format_storage(
    java: str, jars: Path, props: Path, cluster_id: str, creds: dict[str, str]
) -> None:
    """Format the data directory (`kafka-storage format`) with a SCRAM user per credential.

    The passwords never reach a command line (any local user reads /proc/*/cmdline): the
    tool's arguments go in a 0600 argument file that Java's launcher expands (`@file`, JDK 9+),
    deleted when the tool ends. A failure raises `LocalBrokerError` with the
    tool's output, passwords masked.
    """
    scram = []
    for user, password in creds.items():
        scram += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
    arguments = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), *scram]
    argfile = props.parent / "storage-format.args"
    argfile.unlink(missing_ok=True)  # one left by a killed run: O_EXCL below must not fail
    try:
        # Created 0600 before anything is written: no moment where others may read it.
        descriptor = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write("\n".join(_argfile_quote(a) for a in arguments) + "\n")
        command = [
            java,
            "-cp",
            f"{jars}/*",
            f"-Dlog4j2.configurationFile={props.parent / 'log4j2.properties'}",
            f"@{argfile}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        argfile.unlink(missing_ok=True)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        for password in creds.values():
            output = output.replace(password, "***")
        raise LocalBrokerError(f"formatting Kafka storage failed:\n{output.strip()[-2000:]}")


def _argfile_quote(argument: str) -> str:
    """Quote one argument for a Java launcher argument file (backslash escapes in quotes)."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_env_files(
    env_file: Path, sasl_env_file: Path, ports: dict[str, int], ca: Path, password: str
) -> None:
    """Write the PLAINTEXT env file and the private SASL_SSL one (the platform user's)."""
    header = "# Written by `streamforge-nb local up`; read by every streamforge-nb command.\n"
    env_file.write_text(header + f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{ports['plaintext']}\n")
    sasl_env_file.touch(mode=0o600)
    sasl_env_file.write_text(
        header
        + "# The platform's own setup: SASL_SSL, SCRAM-SHA-512, ACLs enforced.\n"
        + f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{ports['sasl_ssl']}\n"
        + f"KAFKA_USER={PLATFORM_USER}\nKAFKA_PASSWORD={password}\nCA_PATH={ca}\n"
    )
