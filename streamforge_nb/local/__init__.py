"""The laptop's own platform: the local broker, its jars (Maven), TLS, process helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.local.broker import (
        BrokerStatus,
        LocalBroker,
    )
    from streamforge_nb.local.maven import (
        KAFKA_VERSION,
        fetch_jars,
        jars_dir,
        pom_path,
    )
    from streamforge_nb.local.process import (
        HttpProbe,
        LogFile,
        NotReady,
        ProcessExited,
        StartTimeout,
        free_port,
        pid_alive,
        pids_mentioning,
        port_open,
        signal_group,
        spawn,
        terminate_group,
        wait_pids_gone,
        wait_ready,
    )
    from streamforge_nb.local.tls import (
        BrokerCertificates,
        ServerCertificate,
        make_certificates,
        make_server_certificate,
        pkcs8_pem,
    )

_EXPORTS = {
    "BrokerCertificates": "streamforge_nb.local.tls",
    "BrokerStatus": "streamforge_nb.local.broker",
    "HttpProbe": "streamforge_nb.local.process",
    "KAFKA_VERSION": "streamforge_nb.local.maven",
    "LocalBroker": "streamforge_nb.local.broker",
    "LogFile": "streamforge_nb.local.process",
    "NotReady": "streamforge_nb.local.process",
    "ProcessExited": "streamforge_nb.local.process",
    "ServerCertificate": "streamforge_nb.local.tls",
    "StartTimeout": "streamforge_nb.local.process",
    "fetch_jars": "streamforge_nb.local.maven",
    "free_port": "streamforge_nb.local.process",
    "jars_dir": "streamforge_nb.local.maven",
    "make_certificates": "streamforge_nb.local.tls",
    "make_server_certificate": "streamforge_nb.local.tls",
    "pid_alive": "streamforge_nb.local.process",
    "pids_mentioning": "streamforge_nb.local.process",
    "pkcs8_pem": "streamforge_nb.local.tls",
    "pom_path": "streamforge_nb.local.maven",
    "port_open": "streamforge_nb.local.process",
    "signal_group": "streamforge_nb.local.process",
    "spawn": "streamforge_nb.local.process",
    "terminate_group": "streamforge_nb.local.process",
    "wait_pids_gone": "streamforge_nb.local.process",
    "wait_ready": "streamforge_nb.local.process",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "KAFKA_VERSION",
    "BrokerCertificates",
    "BrokerStatus",
    "HttpProbe",
    "LocalBroker",
    "LogFile",
    "NotReady",
    "ProcessExited",
    "ServerCertificate",
    "StartTimeout",
    "fetch_jars",
    "free_port",
    "jars_dir",
    "make_certificates",
    "make_server_certificate",
    "pid_alive",
    "pids_mentioning",
    "pkcs8_pem",
    "pom_path",
    "port_open",
    "signal_group",
    "spawn",
    "terminate_group",
    "wait_pids_gone",
    "wait_ready",
]

