"""The Kubernetes test bed's certificates, service-account key and component kubeconfigs.

Made once under `.state/kubernetes/pki/` by `devstack.cluster.up` and reused afterwards, so
a second `up` changes nothing and the kubeconfigs handed out stay valid. One CA signs
every serving and client certificate; a client's identity is its certificate's CN (user)
and O (groups), which is how the bootstrap RBAC roles of each component find it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Identity:
    """A certificate to issue: who it names, and where it may serve."""

    name: str  # file stem under pki/
    cn: str
    groups: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    server: bool = False
    client: bool = True


def _write_private(file: Path, data: bytes) -> None:
    file.touch(mode=0o600)
    file.write_bytes(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key, ca: bool):
    """What every certificate here has: validity, basic constraints and key usage (a CA
    signs certificates; the others sign TLS handshakes, EC keys encipher nothing)."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=ca, crl_sign=ca,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )


def _ca(pki: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_file, cert_file = pki / "ca.key", pki / "ca.crt"
    if key_file.exists() and cert_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        return key, x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ferryman test bed CA")])
    cert = (
        _builder(name, name, key.public_key(), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, _pem_key(key))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _issue(pki: Path, ca_key, ca_cert: x509.Certificate, who: Identity) -> None:
    key_file, cert_file = pki / f"{who.name}.key", pki / f"{who.name}.crt"
    if key_file.exists() and cert_file.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in who.groups]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, who.cn))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if who.client else []
    if who.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        _builder(x509.Name(subject), ca_cert.subject, key.public_key(), ca=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    names = [x509.DNSName(d) for d in who.dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in who.ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_file, _pem_key(key))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(pki: Path, identities: list[Identity]) -> None:
    """The CA, one key pair per identity, and the service-account signing key (RSA)."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca_key, ca_cert = _ca(pki)
    for who in identities:
        _issue(pki, ca_key, ca_cert, who)
    if not (pki / "sa.key").exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (pki / "sa.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ))
        _write_private(pki / "sa.key", _pem_key(key))


def kubeconfig(server: str, ca: str, user: dict, namespace: str | None = None) -> str:
    """A kubeconfig with one cluster, one user (cert files or a token) and one context."""
    context = {"cluster": "ferryman", "user": "ferryman-user"}
    if namespace:
        context["namespace"] = namespace
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "ferryman", "cluster": {"server": server, **_ca_field(ca)}}],
        "users": [{"name": "ferryman-user", "user": user}],
        "contexts": [{"name": "ferryman", "context": context}],
        "current-context": "ferryman",
    }, sort_keys=False)


def _ca_field(ca: str) -> dict:
    """A path for the stack's own components, the certificate itself for a handed-out file."""
    if ca.startswith("-----BEGIN"):
        return {"certificate-authority-data": base64.b64encode(ca.encode()).decode()}
    return {"certificate-authority": ca}


def write_kubeconfig(file: Path, text: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    if not file.exists() or file.read_text() != text:
        _write_private(file, text.encode())
