"""The channel to a dpm-backend, as the ``[dpm]`` options describe it, and its token.

A unix socket is plaintext (the socket file is the access control); TCP uses
mutual TLS, or plaintext to a loopback address only when
``allow_insecure_loopback`` says so: the bearer token never crosses a network
in clear text. Imports no nova: the driver (:mod:`dpm_frontend.client`) and
``dpm-backend-ctl`` (also run on backend hosts, where nova is not installed)
share these rules.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable
from typing import Protocol

import grpc

LOG = logging.getLogger(__name__)

UNIX_SCHEME = 'unix:'
TLS_OPTIONS = ('tls_ca_file', 'tls_cert_file', 'tls_key_file')
METADATA_KEY = 'authorization'

# How an option is spelled in messages: nova.conf's "[dpm] backend" by default.
Spelling = Callable[[str], str]


def nova_conf(option: str) -> str:
    return f'[dpm] {option}'


class Options(Protocol):
    """The ``[dpm]`` options this module reads (an oslo.config group fits)."""

    @property
    def backend(self) -> str: ...
    @property
    def allow_insecure_loopback(self) -> bool: ...
    @property
    def tls_ca_file(self) -> str | None: ...
    @property
    def tls_cert_file(self) -> str | None: ...
    @property
    def tls_key_file(self) -> str | None: ...
    @property
    def token_file(self) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class Transport:
    """The options of :class:`Options`, read once (an :class:`Options` itself).

    Several compute services can run in one process (Nova's functional
    tests start one per host and change the configuration between them):
    each driver keeps the backend and credentials it was started with.
    """

    backend: str
    allow_insecure_loopback: bool
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    token_file: str | None

    @classmethod
    def of(cls, options: Options) -> Transport:
        return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(cls)})


class TransportRefused(Exception):
    """The options describe no usable, safe connection to the backend."""


def safe_transports(name: Spelling = nova_conf) -> str:
    """How to reach a backend safely; every refusal of a transport says it."""
    return (
        f'set {name("tls_ca_file")}, {name("tls_cert_file")} and {name("tls_key_file")} '
        f'(the backend requires mutual TLS on TCP), or point {name("backend")} at the '
        'unix socket of a backend on this node'
    )


def read_file(options: Options, option: str, name: Spelling = nova_conf) -> bytes | None:
    """The content of the file ``option`` names, or None if unset."""
    path = getattr(options, option)
    if not path:
        return None
    try:
        with open(path, 'rb') as stream:
            return stream.read()
    except OSError as exc:
        raise TransportRefused(f'{name(option)}: cannot read {path}: {exc.strerror}') from None


def token_metadata(options: Options, name: Spelling = nova_conf) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries the token of ``token_file``; empty without one."""
    token = read_file(options, 'token_file', name)
    if not token:
        return ()
    try:
        text = token.decode().strip()
    except UnicodeDecodeError:
        raise TransportRefused(f'{name("token_file")}: the token is not UTF-8 text') from None
    return ((METADATA_KEY, 'Bearer ' + text),)


def _host_of(address: str) -> str | None:
    """The host of ``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port``; None if malformed."""
    if address.startswith('['):
        host, closed, rest = address[1:].partition(']')
        if not closed or (rest and not (rest[0] == ':' and rest[1:].isdigit())):
            return None
        return host
    try:
        ipaddress.ip_address(address)  # an IPv6 address without brackets or port
    except ValueError:
        pass
    else:
        return address
    host, colon, port = address.rpartition(':')
    if not colon:
        return address or None
    return host if host and port.isdigit() else None


def _target_hosts(target: str) -> list[str] | None:
    """The hosts a TCP gRPC target names, or None if this cannot tell.

    Forms: ``host:port``, ``[ipv6]:port``, ``ipv4:a.b.c.d:port[,...]``,
    ``ipv6:[addr]:port[,...]`` and ``dns:[//authority/]host:port`` (gRPC's
    naming; a name without a known scheme is resolved by DNS).
    """
    scheme, colon, rest = target.partition(':')
    if colon and scheme in ('ipv4', 'ipv6'):
        addresses = rest.split(',')
    elif colon and scheme == 'dns':
        if rest.startswith('//'):
            _authority, slash, rest = rest[2:].partition('/')
            if not slash:
                return None
        addresses = [rest]
    else:
        addresses = [target]
    hosts = []
    for address in addresses:
        host = _host_of(address)
        if host is None:
            return None
        hosts.append(host)
    return hosts


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is localhost, 127.0.0.0/8 or ::1 (also IPv4-mapped)."""
    if host.lower().rstrip('.') == 'localhost':
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, 'ipv4_mapped', None)
    return (mapped or address).is_loopback


def _refuse_plaintext(options: Options, name: Spelling) -> None:
    """Raise unless plaintext TCP to ``backend`` is loopback and allowed."""
    target = options.backend
    hosts = _target_hosts(target)
    if not hosts or not all(_is_loopback(host) for host in hosts):
        raise TransportRefused(
            f'{name("backend")} = {target} is neither a unix socket nor a loopback '
            'address, and TLS is not configured: the bearer token and every request '
            f'would cross the network in clear text. To fix, {safe_transports(name)}. '
            f'({name("allow_insecure_loopback")} allows plaintext TCP to 127.0.0.0/8, ::1 '
            'and localhost only.)'
        )
    if not options.allow_insecure_loopback:
        raise TransportRefused(
            f'{name("backend")} = {target} is plaintext TCP to loopback, which needs '
            f'{name("allow_insecure_loopback")} = true (local tools and tests only). '
            f'Otherwise, {safe_transports(name)}.'
        )


def open_channel(options: Options, name: Spelling = nova_conf) -> grpc.Channel:
    """A channel to the backend the options name.

    ``unix:`` targets are plaintext; TCP uses TLS with the three ``tls_*`` files,
    or plaintext to a loopback address with ``allow_insecure_loopback``. Creating
    a channel sends nothing: gRPC connects on the first call.

    Raises:
        TransportRefused: plaintext TCP that is not allowed, some but not all
            of the TLS files, or a TLS file that cannot be read.
    """
    target = options.backend
    if target.startswith(UNIX_SCHEME):
        return grpc.insecure_channel(target)
    given = [option for option in TLS_OPTIONS if getattr(options, option)]
    if given and len(given) != len(TLS_OPTIONS):
        names = [name(option) for option in TLS_OPTIONS]
        raise TransportRefused(
            f'{", ".join(names[:-1])} and {names[-1]} go together '
            f'(only {", ".join(name(option) for option in given)} set for '
            f'{name("backend")} = {target}). To fix, {safe_transports(name)}.'
        )
    if not given:
        _refuse_plaintext(options, name)
        LOG.warning(
            'Plaintext TCP to dpm-backend at %(target)s on loopback (%(flag)s = true)',
            {'target': target, 'flag': name('allow_insecure_loopback')},
        )
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_file(options, 'tls_ca_file', name),
        private_key=read_file(options, 'tls_key_file', name),
        certificate_chain=read_file(options, 'tls_cert_file', name),
    )
    return grpc.secure_channel(target, credentials)
