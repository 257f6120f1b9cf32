"""The laptop's own platform: the local broker, its jars (Maven), TLS, process helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamforge_nb._lazy import attach

if TYPE_CHECKING:
    from streamforge_nb.local.broker import BrokerStatus as BrokerStatus
    from streamforge_nb.local.broker import LocalBroker as LocalBroker
    from streamforge_nb.local.maven import KAFKA_VERSION as KAFKA_VERSION
    from streamforge_nb.local.maven import fetch_jars as fetch_jars
    from streamforge_nb.local.maven import jars_dir as jars_dir
    from streamforge_nb.local.maven import pom_path as pom_path
    from streamforge_nb.local.tls import BrokerCertificates as BrokerCertificates
    from streamforge_nb.local.tls import ServerCertificate as ServerCertificate
    from streamforge_nb.local.tls import make_certificates as make_certificates
    from streamforge_nb.local.tls import make_server_certificate as make_server_certificate
    from streamforge_nb.local.tls import pkcs8_pem as pkcs8_pem
    from streamforge_nb.process import HttpProbe as HttpProbe
    from streamforge_nb.process import LogFile as LogFile
    from streamforge_nb.process import free_port as free_port
    from streamforge_nb.process import pid_alive as pid_alive
    from streamforge_nb.process import pids_mentioning as pids_mentioning
    from streamforge_nb.process import port_open as port_open
    from streamforge_nb.process import signal_group as signal_group
    from streamforge_nb.process import spawn as spawn
    from streamforge_nb.process import terminate_group as terminate_group
    from streamforge_nb.process import wait_pids_gone as wait_pids_gone
    from streamforge_nb.process import wait_ready as wait_ready

_EXPORTS = {
    "BrokerCertificates": "streamforge_nb.local.tls",
    "BrokerStatus": "streamforge_nb.local.broker",
    "HttpProbe": "streamforge_nb.process",
    "KAFKA_VERSION": "streamforge_nb.local.maven",
    "LocalBroker": "streamforge_nb.local.broker",
    "LogFile": "streamforge_nb.process",
    "ServerCertificate": "streamforge_nb.local.tls",
    "fetch_jars": "streamforge_nb.local.maven",
    "free_port": "streamforge_nb.process",
    "jars_dir": "streamforge_nb.local.maven",
    "make_certificates": "streamforge_nb.local.tls",
    "make_server_certificate": "streamforge_nb.local.tls",
    "pid_alive": "streamforge_nb.process",
    "pids_mentioning": "streamforge_nb.process",
    "pkcs8_pem": "streamforge_nb.local.tls",
    "pom_path": "streamforge_nb.local.maven",
    "port_open": "streamforge_nb.process",
    "signal_group": "streamforge_nb.process",
    "spawn": "streamforge_nb.process",
    "terminate_group": "streamforge_nb.process",
    "wait_pids_gone": "streamforge_nb.process",
    "wait_ready": "streamforge_nb.process",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)
__all__ = [*_EXPORTS]
