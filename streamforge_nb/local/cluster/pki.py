"""The files a test kube-apiserver needs: its PKI (a CA, the serving certificate, the
ServiceAccount signing key) and an admin kubeconfig."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from streamforge_nb.local.tls import make_server_certificate, pkcs8_pem
from streamforge_nb.process import LOOPBACK

__all__: list[str] = []  # the harness's own business: nothing for the `testing` face


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def write_pki(directory: Path) -> Path:
    """CA, serving certificate and ServiceAccount signing key; return the CA's path."""
    directory.mkdir(parents=True, exist_ok=True)
    made = make_server_certificate(
        organization="streamforge-nb kube test",
        common_name="kube-apiserver",
        ip_addresses=[LOOPBACK, "10.0.0.1"],
        dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        validity=dt.timedelta(days=7),
    )
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(made.ca_pem)
    (directory / "apiserver.crt").write_bytes(made.cert_pem + made.ca_pem)
    _write_private(directory / "apiserver.key", made.key_pem)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(directory / "sa.key", pkcs8_pem(sa_key))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ca_path


def write_kubeconfig(path: Path, host: str, ca_path: Path, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "streamforge-test",
                "cluster": {"server": host, "certificate-authority": str(ca_path)},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "streamforge-test",
                "context": {"cluster": "streamforge-test", "user": "admin"},
            }
        ],
        "current-context": "streamforge-test",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path
