"""A self-signed TLS certificate for a service inside the cluster, from random bytes kept in state.

The key is Ed25519, derived from 32 random bytes (a RandomBytes resource: generated once, secret, stable).
Ed25519 signatures are deterministic, and the validity, serial and names below depend only on the inputs,
so the same seed always gives the same certificate: it changes, and is pushed again, only when the seed
or the names change. The certificate is valid from a fixed date for 100 years; rotating it means
replacing its seed (docs/storage.md).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2125, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class TlsPair:
    key_pem: str  # secret
    cert_pem: str


def self_signed(seed_base64: str, common_name: str, dns_names: tuple[str, ...], addresses: tuple[str, ...]) -> TlsPair:
    """For Output.apply on RandomBytes.base64 (32 bytes)."""
    seed = base64.b64decode(seed_base64)
    key = Ed25519PrivateKey.from_private_bytes(seed[:32])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    serial = int.from_bytes(hashlib.sha256(seed + common_name.encode()).digest()[:16], "big") >> 1
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return TlsPair(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode())
