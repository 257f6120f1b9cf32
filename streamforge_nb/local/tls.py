"""Certificates for the local broker's SASL_SSL listener.

A throwaway CA signs a broker certificate with an IP SAN for 127.0.0.1, so clients verify the
hostname exactly as they do against the cluster's Strimzi CA. Keys are PKCS#8 PEM because
Kafka's PEM keystore reads nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "BrokerCertificates",
    "ServerCertificate",
    "make_certificates",
    "make_server_certificate",
    "pkcs8_pem",
]

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class BrokerCertificates:
    """Paths of the generated CA certificate and the broker's PEM keystore."""

    ca_path: Path
    keystore_path: Path


@dataclass(frozen=True)
class ServerCertificate:
    """A CA and a serving certificate it signed, as PEM bytes (the key is PKCS#8)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def pkcs8_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """Return `key` as unencrypted PKCS#8 PEM (what Kafka and kube-apiserver read)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_server_certificate(
    *,
    organization: str,
    common_name: str,
    ip_addresses: list[str],
    dns_names: list[str],
    validity: dt.timedelta = _VALIDITY,
) -> ServerCertificate:
    """Make a throwaway CA and a server certificate for the given SANs, signed by it."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + validity
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(organization, f"{organization} CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    sans += [x509.DNSName(name) for name in dns_names]
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(organization, common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ServerCertificate(ca_cert.public_bytes(pem), cert.public_bytes(pem), pkcs8_pem(key))


def make_certificates(
    directory: Path, host: str = "127.0.0.1", also: tuple[str, ...] = ()
) -> BrokerCertificates:
    """Write `ca.crt` and `broker.pem` (PKCS#8 key + chain) into `directory`; the certificate
    names `host` and the IP addresses `also`."""
    directory.mkdir(parents=True, exist_ok=True)
    made = make_server_certificate(
        organization="streamforge-nb local",
        common_name=host,
        ip_addresses=[host, *also],
        dns_names=["localhost"],
    )
    ca_path = directory / "ca.crt"
    keystore_path = directory / "broker.pem"
    ca_path.write_bytes(made.ca_pem)
    keystore_path.write_bytes(made.key_pem + made.cert_pem + made.ca_pem)
    keystore_path.chmod(0o600)
    return BrokerCertificates(ca_path=ca_path, keystore_path=keystore_path)
