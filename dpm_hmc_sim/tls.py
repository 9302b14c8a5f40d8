"""A private CA and a server certificate for the simulator's HTTPS listener.

A client verifies the simulator as it would an HMC with a private CA: it passes
the CA file as ``verify_cert`` (the backend's ``[hmc] ca_file``). The server
certificate names ``localhost``, ``127.0.0.1`` and ``::1``. The CA's key is never
written: the files are made together, and made again together if one is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

LOG = logging.getLogger(__name__)

CA_FILE = 'hmc-sim-ca.pem'
CERT_FILE = 'hmc-sim-cert.pem'
KEY_FILE = 'hmc-sim-key.pem'
LOCK_FILE = '.hmc-sim-certs.lock'
VALIDITY = datetime.timedelta(days=825)  # the longest server certificate lifetime clients accept
HANDSHAKE_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class CertFiles:
    ca: Path
    cert: Path
    key: Path


class ServerConnections:
    """TLS on each connection a socketserver accepts, and the ones open, to end at stop.

    The handshake runs in the connection's own thread (socketserver's
    finish_request), never in the accepting one. Both of the simulator's
    listeners (HTTPS and STOMP) serve through one of these.
    """

    def __init__(self, files: CertFiles, *, session_tickets: bool = True) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(files.cert, files.key)
        if not session_tickets:
            self.context.num_tickets = 0
        self._open: set[ssl.SSLSocket] = set()
        self._lock = threading.Lock()

    def serve(
        self, request: socket.socket, client_address: Any, handle: Callable[[Any, Any], None]
    ) -> None:
        """Wrap ``request``, let ``handle`` serve it, then close it."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except OSError as exc:
            LOG.debug('TLS handshake with %s failed: %s', client_address, exc)
            return
        with self._lock:
            self._open.add(connection)
        try:
            handle(connection, client_address)
        except OSError as exc:  # the client went away
            LOG.debug('connection from %s: %s', client_address, exc)
        finally:
            with self._lock:
                self._open.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def end_all(self) -> None:
        """End every open connection (its handler sees the end of the stream)."""
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def cert_files(cert_dir: str | Path) -> CertFiles:
    """The three files in ``cert_dir``, created first if any is missing."""
    directory = Path(cert_dir)
    files = CertFiles(directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE)
    if not _complete(files):
        directory.mkdir(parents=True, exist_ok=True)
        # Simulators starting together with one directory make one set of files.
        with open(directory / LOCK_FILE, 'a', encoding='utf-8') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _complete(files):
                _create(files)
    return files


def _complete(files: CertFiles) -> bool:
    return files.ca.exists() and files.cert.exists() and files.key.exists()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates; the server signs its TLS handshakes (ECDSA)."""
    usage = dict.fromkeys(
        ('content_commitment', 'key_encipherment', 'data_encipherment', 'key_agreement'), False
    )
    return x509.KeyUsage(
        digital_signature=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
        **usage,
    )


def _create(files: CertFiles) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name('dpm-hmc-sim CA')
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name('localhost'))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName('localhost'),
                    x509.IPAddress(ipaddress.ip_address('127.0.0.1')),
                    x509.IPAddress(ipaddress.ip_address('::1')),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(files.key, key_pem, 0o600)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically, created with ``mode`` (never wider, even briefly)."""
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.chmod(temporary, mode)  # exactly mode, whatever the umask
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
