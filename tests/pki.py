"""Throwaway certificates for tests over TCP with mutual TLS: a CA, a backend, a client."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

CA_NAME = 'test-ca'


def _certificate(subject, public_key, ca_key, extensions) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def make_pki(directory: Path, shared_name: str, token: str) -> Path:
    """ca.pem; backend.pem/.key for 127.0.0.1 and ``shared_name`` (every backend's);
    client.pem/.key; and ``token`` in the file token."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = [(x509.BasicConstraints(ca=True, path_length=None), True)]
    (directory / 'ca.pem').write_bytes(_certificate(CA_NAME, ca_key.public_key(), ca_key, ca))
    names = x509.SubjectAlternativeName(
        [x509.DNSName(shared_name), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]
    )
    for name, usage, sans in (
        ('backend', ExtendedKeyUsageOID.SERVER_AUTH, [(names, False)]),
        ('client', ExtendedKeyUsageOID.CLIENT_AUTH, []),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        (directory / f'{name}.key').write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        extensions = [(x509.ExtendedKeyUsage([usage]), False), *sans]
        (directory / f'{name}.pem').write_bytes(
            _certificate(name, key.public_key(), ca_key, extensions)
        )
    (directory / 'token').write_text(token + '\n')
    return directory
