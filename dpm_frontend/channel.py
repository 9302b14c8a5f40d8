"""The channel to a dpm-backend, as the ``[dpm]`` options describe it, and its token.

A unix socket is plaintext (the socket file is the access control); TCP uses
mutual TLS, or plaintext to a loopback address only when
``allow_insecure_loopback`` says so: the bearer token never crosses a network
in clear text. Imports no nova: the driver (:mod:`dpm_frontend.client`) and
``dpm-backend-ctl`` (also run on backend hosts, where nova is not installed)
share these rules.

Several backends of one HMC (one active, the others standby) are one channel
over all their addresses: gRPC follows each backend's health (``Health.Watch``
of service ``""``) and sends calls only to a SERVING one, the active backend;
a call of an idempotent RPC that a backend refused with UNAVAILABLE as it went
standby is sent again at once, to the backend that is SERVING then.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from typing import Protocol

import grpc
from google.protobuf import descriptor_pb2

from dpm_api.v1 import dpm_host_pb2 as pb

LOG = logging.getLogger(__name__)

UNIX_SCHEME = 'unix:'
# Separates the addresses of several backends in [dpm] backend.
LIST_SEPARATOR = ','
# One backend's address in such a list: "<ipv4>:<port>" or "[<ipv6>]:<port>".
LISTED_ADDRESS = re.compile(r'(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\[\]]+)):(?P<port>[0-9]{1,5})')
SERVICE = pb.DESCRIPTOR.services_by_name['DPMHost']
SAFE_TO_REPEAT = frozenset(
    {descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS, descriptor_pb2.MethodOptions.IDEMPOTENT}
)
# gRPC's own retry of an idempotent call that a backend refused with
# UNAVAILABLE (it went standby, or stops, as the call came): within the
# call's deadline, at most two more attempts after 0-0.2 s and 0-0.4 s, each
# sent to a backend that is SERVING then. The driver's paced retries
# ([dpm] unavailable_retries) come on top.
RETRY_POLICY = {
    'maxAttempts': 3,
    'initialBackoff': '0.2s',
    'maxBackoff': '1s',
    'backoffMultiplier': 2,
    'retryableStatusCodes': ['UNAVAILABLE'],
}
# No retry storm while no backend serves: each failed attempt takes a token
# and each successful call gives one back; gRPC retries only while more than
# half of the ten are left (after five failures more than successes, none).
# A takeover costs a failed attempt per call and a success: retries go on.
# (tokenRatio needs its decimal point: grpc core reads "tokenRatio": 1 as
# 0.001, so that after five failures gRPC would hardly ever retry again.)
RETRY_THROTTLING = {'maxTokens': 10, 'tokenRatio': 1.0}
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

    # Also read, where present: tls_server_name (str | None).


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
    tls_server_name: str | None = None

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


@dataclasses.dataclass(frozen=True)
class Target:
    """``[dpm] backend`` as one gRPC target.

    ``failover``: the target names a set of backends (several addresses, or a
    ``dns:`` name, which may resolve to several), followed by their health.
    ``listed``: several addresses, so no one name to check the certificates
    against: TLS needs ``tls_server_name``.
    """

    uri: str
    failover: bool = False
    listed: bool = False


def _listed_address(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of ``<ipv4>:<port>`` or ``[<ipv6>]:<port>``; None for anything else."""
    match = LISTED_ADDRESS.fullmatch(entry)
    if match is None or not 0 < int(match['port']) <= 65535:
        return None
    try:
        address = ipaddress.ip_address(match['v6'] or match['v4'])
    except ValueError:
        return None
    return address if (address.version == 6) == bool(match['v6']) else None


def _listed_addresses(option: str, entries: list[str], name: Spelling) -> Target:
    """``<ip>:<port>,<ip>:<port>`` as an ``ipv4:`` or ``ipv6:`` target."""
    how = (
        'Several backends of one HMC are given as IP addresses and ports '
        '("10.0.0.11:50051,10.0.0.12:50051", IPv6 as "[fd00::11]:50051,[fd00::12]:50051"), '
        'or as one DNS name with an address for each: "dns:///<name>:<port>".'
    )
    if any(entry.startswith(UNIX_SCHEME) for entry in entries):
        raise TransportRefused(
            f'{name("backend")} = {option}: several backends need TCP addresses (with TLS): a '
            'unix socket reaches only a backend on this node, and one gRPC channel cannot '
            f'follow several sockets. Give one unix socket, or TCP addresses only. {how}'
        )
    families = set()
    for entry in entries:
        address = _listed_address(entry)
        if address is None:
            raise TransportRefused(
                f'{name("backend")} = {option}: {entry!r} is not "<IP address>:<port>". {how}'
            )
        families.add(address.version)
    if len(families) > 1:
        raise TransportRefused(
            f'{name("backend")} = {option} mixes IPv4 and IPv6 addresses, which one gRPC '
            f'target cannot. {how}'
        )
    if len(set(entries)) < len(entries):
        raise TransportRefused(f'{name("backend")} = {option} names an address twice.')
    scheme = 'ipv6' if 6 in families else 'ipv4'
    return Target(f'{scheme}:{LIST_SEPARATOR.join(entries)}', failover=True, listed=True)


def backend_target(options: Options, name: Spelling = nova_conf) -> Target:
    """The gRPC target of ``backend``: one backend, or several of one HMC.

    One address (a unix socket, ``<host>:<port>``, ``ipv4:``/``ipv6:`` with
    one address) is used as given. Several (``<ip>:<port>,<ip>:<port>``, or
    ``ipv4:``/``ipv6:`` with several) and ``dns:`` names are followed by health.

    Raises:
        TransportRefused: a list with a unix socket, a host name or anything but
            ``<ip>:<port>``, or IPv4 and IPv6 mixed.
    """
    option = options.backend
    scheme, colon, rest = option.partition(':')
    if colon and scheme in ('ipv4', 'ipv6'):
        several = LIST_SEPARATOR in rest
        return Target(option, failover=several, listed=several)
    if colon and scheme == 'dns':
        return Target(option, failover=True)
    if LIST_SEPARATOR not in option:
        return Target(option)
    return _listed_addresses(option, [e.strip() for e in option.split(LIST_SEPARATOR)], name)


def failover_service_config() -> dict[str, Any]:
    """gRPC's service config for a set of backends of which one is SERVING.

    round_robin over the backends whose health (service ``""``) is SERVING:
    pick_first would ignore health and stay with a standby. The RPCs the
    proto marks NO_SIDE_EFFECTS or IDEMPOTENT are retried on UNAVAILABLE
    (RETRY_POLICY, throttled by RETRY_THROTTLING); the others (Reboot) are
    not: a second backend could repeat what the first one began.
    """
    return {
        'loadBalancingConfig': [{'round_robin': {}}],
        'healthCheckConfig': {'serviceName': ''},
        'retryThrottling': RETRY_THROTTLING,
        'methodConfig': [
            {
                'name': [
                    {'service': SERVICE.full_name, 'method': method.name}
                    for method in SERVICE.methods
                    if method.GetOptions().idempotency_level in SAFE_TO_REPEAT
                ],
                'retryPolicy': RETRY_POLICY,
            }
        ],
    }


def _channel_options(target: Target, server_name: str | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = []
    if target.failover:
        options += [
            ('grpc.service_config', json.dumps(failover_service_config())),
            ('grpc.enable_retries', 1),
        ]
    if server_name:
        options.append(('grpc.ssl_target_name_override', server_name))
    return options


def _server_name(options: Options, target: Target, name: Spelling) -> str | None:
    """The name every backend certificate must carry (None: the target's host, gRPC's default)."""
    server_name = getattr(options, 'tls_server_name', None)
    if not server_name and target.listed:
        raise TransportRefused(
            f'{name("backend")} = {options.backend} names several backends, and TLS checks one '
            f'name against each of their certificates: set {name("tls_server_name")} to a name '
            '(DNS name or IP address) that is a subjectAltName of every backend certificate.'
        )
    return server_name or None


def _refuse_plaintext(options: Options, target: Target, name: Spelling) -> None:
    """Raise unless plaintext TCP to ``backend`` is loopback and allowed."""
    hosts = _target_hosts(target.uri)
    if not hosts or not all(_is_loopback(host) for host in hosts):
        raise TransportRefused(
            f'{name("backend")} = {options.backend} is neither a unix socket nor a loopback '
            'address, and TLS is not configured: the bearer token and every request '
            f'would cross the network in clear text. To fix, {safe_transports(name)}. '
            f'({name("allow_insecure_loopback")} allows plaintext TCP to 127.0.0.0/8, ::1 '
            'and localhost only.)'
        )
    if not options.allow_insecure_loopback:
        raise TransportRefused(
            f'{name("backend")} = {options.backend} is plaintext TCP to loopback, which needs '
            f'{name("allow_insecure_loopback")} = true (local tools and tests only). '
            f'Otherwise, {safe_transports(name)}.'
        )


def open_channel(options: Options, name: Spelling = nova_conf) -> grpc.Channel:
    """A channel to the backend (or the backends of one HMC) the options name.

    ``unix:`` targets are plaintext; TCP uses TLS with the three ``tls_*`` files,
    or plaintext to a loopback address with ``allow_insecure_loopback``. Over
    several backends, calls go to the one whose health is SERVING
    (:func:`failover_service_config`). Creating a channel sends nothing: gRPC
    connects on the first call.

    Raises:
        TransportRefused: plaintext TCP that is not allowed, some but not all
            of the TLS files, a TLS file that cannot be read, a list of
            backends gRPC cannot follow as one, or several backends over TLS
            without ``tls_server_name``.
    """
    target = backend_target(options, name)
    if target.uri.startswith(UNIX_SCHEME):
        return grpc.insecure_channel(target.uri)
    given = [option for option in TLS_OPTIONS if getattr(options, option)]
    if given and len(given) != len(TLS_OPTIONS):
        names = [name(option) for option in TLS_OPTIONS]
        raise TransportRefused(
            f'{", ".join(names[:-1])} and {names[-1]} go together '
            f'(only {", ".join(name(option) for option in given)} set for '
            f'{name("backend")} = {options.backend}). To fix, {safe_transports(name)}.'
        )
    if not given:
        _refuse_plaintext(options, target, name)
        LOG.warning(
            'Plaintext TCP to dpm-backend at %(target)s on loopback (%(flag)s = true)',
            {'target': target.uri, 'flag': name('allow_insecure_loopback')},
        )
        extra = _channel_options(target, None)
        return grpc.insecure_channel(target.uri, **({'options': extra} if extra else {}))
    extra = _channel_options(target, _server_name(options, target, name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_file(options, 'tls_ca_file', name),
        private_key=read_file(options, 'tls_key_file', name),
        certificate_chain=read_file(options, 'tls_cert_file', name),
    )
    return grpc.secure_channel(target.uri, credentials, **({'options': extra} if extra else {}))
