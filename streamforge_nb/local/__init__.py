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
    "KAFKA_VERSION": "streamforge_nb.local.maven",
    "LocalBroker": "streamforge_nb.local.broker",
    "ServerCertificate": "streamforge_nb.local.tls",
    "fetch_jars": "streamforge_nb.local.maven",
    "jars_dir": "streamforge_nb.local.maven",
    "make_certificates": "streamforge_nb.local.tls",
    "make_server_certificate": "streamforge_nb.local.tls",
    "pkcs8_pem": "streamforge_nb.local.tls",
    "pom_path": "streamforge_nb.local.maven",
}
__getattr__, __dir__ = attach(__name__, _EXPORTS)

__all__ = [
    "KAFKA_VERSION",
    "BrokerCertificates",
    "BrokerStatus",
    "LocalBroker",
    "ServerCertificate",
    "fetch_jars",
    "jars_dir",
    "make_certificates",
    "make_server_certificate",
    "pkcs8_pem",
    "pom_path",
]

