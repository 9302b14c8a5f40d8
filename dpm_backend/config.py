"""Configuration of the backend: the HMC, the gRPC listener and the Nova hosts.

One file configures one backend process (one HMC). Each Nova host it serves
(a CPC subset) has its own group ``[host:<name>]``, listed in ``[backend]
hosts``. Every value is read and checked once in :func:`load`, so the process
never starts half configured and every error names the option to fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import ipaddress
import os
import re
import socket
import urllib.parse
from collections.abc import Sequence
from importlib import metadata

from oslo_config import cfg
from oslo_config import types
from oslo_log import log as logging

from dpm_api.v1 import contract
from dpm_backend import naming
from dpm_backend import wwpn as wwpn_mod

# oslo.config searches an option's regex: anchored.
OBJECT_ID_REGEX = f'^{contract.OBJECT_ID_PATTERN}$'
HOST_GROUP_PREFIX = 'host:'
CREDENTIAL_NAME = 'hmc-password'
# systemd credential holding the token of host <name>: LoadCredential=token-<name>:<file>
TOKEN_CREDENTIAL_PREFIX = 'token-'  # noqa: S105 (a file name prefix)
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 1024
# CPC facts change rarely (status, firmware); read again every 5 minutes.
DEFAULT_CPC_CACHE_TTL = 300
# The HMC's STOMP port for notifications (zc _constants.py DEFAULT_STOMP_PORT).
DEFAULT_STOMP_PORT = 61612
# Seconds the HMC's lock lives on the coordination service without a refresh.
DEFAULT_LEASE_TTL = 10
MIN_LEASE_TTL = 3
# The entry point group of tooz's coordination drivers (one name per URL scheme).
TOOZ_DRIVERS = 'tooz.backends'
# The URL option tooz drivers take the lock TTL from; lease_ttl sets it.
TOOZ_LOCK_TIMEOUT = 'lock_timeout'
# oslo.log's line for a record made during a call (logging_context_format_string):
# the default without user and project, which the backend does not know, so the
# line shows [req-<uuid>] where the lines outside calls show [-].
LOG_CONTEXT_FORMAT = (
    '%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [%(request_id)s] '
    '%(instance)s%(message)s'
)

# The unix socket: in the runtime directory systemd gives each instance, else here.
SOCKET_NAME = 'dpm-backend.sock'
FALLBACK_LISTEN_DIR = '/run/dpm-backend'
# Visible ASCII: what an HTTP/2 header value carries unchanged.
_TOKEN = re.compile(r'[\x21-\x7e]+')
# oslo.config's wording around a bad value: "Value for option <name> from
# LocationInfo(...) is not valid: <why>"; only <why> means anything to an operator.
_OSLO_VALUE_ERROR = re.compile(r'^Value for option \S+ from .*? is not valid: ', re.DOTALL)
DISTRIBUTION = 'nova-dpm-grpc'
DESCRIPTION = (
    'dpm-backend serves the DPMHost gRPC service for the Nova hosts (CPC subsets) of '
    'one HMC in DPM mode: every HMC request of OpenStack Nova on IBM Z / LinuxONE '
    'partitions goes through it. One process (systemd unit dpm-backend@<hmc>) per HMC.'
)
EPILOG = (
    'Every option, with its help: dpm-backend.conf.sample (in the source tree under '
    'deploy/, installed by make install under <prefix>/share/dpm-backend/). '
    '--check-config FILE checks FILE and, against the HMC, each host, then exits.'
)


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names it."""

    def __str__(self) -> str:
        # One line whatever a value holds: a message never spans (or forges) log lines.
        return ' '.join(super().__str__().split())


def version() -> str:
    """The installed version of the project (``unknown`` when run from a bare tree)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return 'unknown'


class AdapterPort(types.String):
    """``<adapter-object-id>:<port>`` with port 0-3, normalised to lower case."""

    def __init__(self) -> None:
        super().__init__(type_name='adapter port mapping')

    def __call__(self, value: str) -> tuple[str, int]:  # type: ignore[override]
        if isinstance(value, tuple):
            return value
        text = super().__call__(value).strip().lower()
        adapter_id, sep, port = text.rpartition(':')
        if not sep or not contract.OBJECT_ID.fullmatch(adapter_id):
            raise ValueError(f'{value!r} is not <adapter-object-id>:<port>')
        if port not in ('0', '1', '2', '3'):
            raise ValueError(f'{value!r}: the port must be 0, 1, 2 or 3')
        return adapter_id, int(port)


class Wwpn(types.String):
    """A WWPN of 16 hex digits, optionally ``0x``-prefixed, normalised."""

    def __init__(self) -> None:
        super().__init__(type_name='WWPN')

    def __call__(self, value: str) -> str:  # type: ignore[override]
        normalised = wwpn_mod.normalise(super().__call__(value))
        if normalised is None:
            raise ValueError(f'{value!r} is not a WWPN of 16 hex digits')
        return normalised


def _object_id_opt(name: str, help_text: str, **kwargs) -> cfg.Opt:
    return cfg.StrOpt(name, regex=OBJECT_ID_REGEX, help=help_text, **kwargs)


hmc_group = cfg.OptGroup(
    'hmc',
    help='The HMC this backend manages, and how it talks to it. All timeouts '
    'are in seconds; zhmcclient defaults (up to an hour) are never used.',
)
hmc_opts = [
    cfg.ListOpt(
        'hosts',
        default=[],
        help='Host names or IP addresses of the HMC; more than one means '
        'redundant HMCs, tried in order. Required. Without an HMC at hand, '
        'dpm-hmc-sim serves a simulated one on loopback (see the README).',
    ),
    cfg.PortOpt(
        'port',
        default=6794,
        help='TCP port of the HMC Web Services API on every host (6794 on a real HMC).',
    ),
    cfg.StrOpt('userid', help='HMC user id. Required.'),
    cfg.StrOpt(
        'password',
        secret=True,
        help='HMC password. Prefer password_file, or leave both unset under systemd '
        f'with LoadCredential={CREDENTIAL_NAME}:<file>.',
    ),
    cfg.StrOpt(
        'password_file',
        help='File whose first line is the HMC password; read at start. Default: '
        f'$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} when systemd provides it. '
        'Related options: password (one of the two is required).',
    ),
    cfg.BoolOpt(
        'verify_cert',
        default=True,
        help='Verify the HMC certificate. Turning this off is insecure and '
        'logged as a warning at every start. Related options: ca_file.',
    ),
    cfg.StrOpt('ca_file', help='CA bundle for the HMC certificate; default: the system CAs.'),
    cfg.IntOpt(
        'connect_timeout', default=10, min=1, max=300, help='Seconds to connect to the HMC.'
    ),
    cfg.IntOpt('connect_retries', default=2, min=0, max=10, help='Retries of a failed connect.'),
    cfg.IntOpt(
        'read_timeout',
        default=120,
        min=1,
        max=1800,
        help='Seconds to wait for an HMC response. Related options: read_retries.',
    ),
    cfg.IntOpt(
        'read_retries',
        default=1,
        min=0,
        max=10,
        help='Retries of a timed-out read (GET only; zhmcclient never resends POST/DELETE).',
    ),
    cfg.IntOpt(
        'status_timeout',
        default=120,
        min=1,
        max=3600,
        help='Seconds to wait for a partition to reach a status after start/stop. '
        'A gRPC deadline shorter than this wins.',
    ),
    cfg.IntOpt(
        'operation_timeout',
        default=900,
        min=1,
        max=3600,
        help='Seconds to wait for an HMC job (start/stop). A shorter gRPC deadline wins.',
    ),
    cfg.IntOpt(
        'pool_size',
        default=4,
        min=1,
        max=64,
        help='Number of HMC sessions this backend may hold open; one per operation in flight. '
        'Related options: pool_wait, [backend] max_concurrent_operations.',
    ),
    cfg.IntOpt(
        'pool_wait',
        default=5,
        min=0,
        max=600,
        help='Seconds an operation waits for a free HMC session while all pool_size '
        'sessions are busy (e.g. with long start/stop jobs) before it is refused with '
        "RESOURCE_EXHAUSTED; never longer than the call's deadline. 0: refuse at once.",
    ),
    cfg.FloatOpt(
        'job_poll_interval',
        default=0.2,
        min=0.01,
        max=10,
        help='Seconds between the first checks of an HMC job (start, stop) whose '
        'end is due. The backend learns how long each kind of job takes and '
        'checks it from then on at this interval, then less and less often '
        'up to job_poll_max_interval. zhmcclient alone would sleep 10 s between '
        'checks. Related options: job_poll_max_interval.',
    ),
    cfg.FloatOpt(
        'job_poll_max_interval',
        default=2.0,
        min=0.05,
        max=60,
        help='Longest pause in seconds between two checks of a running HMC job. '
        'Related options: job_poll_interval.',
    ),
    cfg.BoolOpt(
        'log_requests',
        default=False,
        help='Log every HMC request (method, URI, outcome, milliseconds) at INFO; '
        'never bodies, so never credentials.',
    ),
    cfg.IntOpt(
        'probe_interval',
        default=10,
        min=1,
        max=600,
        help='Seconds between reachability probes of the HMC while it is unreachable.',
    ),
    cfg.IntOpt(
        'cpc_cache_ttl',
        default=DEFAULT_CPC_CACHE_TTL,
        min=0,
        max=3600,
        help='Seconds that CPC facts (DPM mode, status, firmware features, version) are '
        "reused. Nova's resource tracker asks for them every minute; each new read is one "
        'more HMC request in that cycle.',
    ),
    cfg.BoolOpt(
        'notifications',
        default=True,
        help="Receive the HMC's notifications (JMS over STOMP with TLS, verified like the "
        "HMC's web services) for the partitions of the served CPCs and for the end of jobs. "
        "While they flow, Nova's periodic reads cost no HMC request, start and stop return "
        'as their job ends, and WatchInstances streams changes as they happen; while the '
        'connection is down the backend reads the HMC as without them. The HMC user needs '
        'the task permission to receive notifications for the objects it manages. Related '
        'options: stomp_port.',
    ),
    cfg.PortOpt(
        'stomp_port',
        default=DEFAULT_STOMP_PORT,
        help="TCP port of the HMC's STOMP broker (the HMC serves it on 61612). Related "
        'options: notifications.',
    ),
]

backend_group = cfg.OptGroup('backend', help='The DPMHost gRPC service.')
backend_opts = [
    cfg.ListOpt(
        'hosts',
        default=[],
        help='Names of the Nova hosts (CPC subsets) served; each needs a '
        '[host:<name>] group. A name is at most '
        f'{naming.MAX_HOST_LENGTH} characters of letters, digits, ".", "_" and "-".',
    ),
    cfg.StrOpt(
        'listen',
        help='Where to serve: "unix:<path>" or "<host>:<port>". Default: '
        f'"unix:$RUNTIME_DIRECTORY/{SOCKET_NAME}" when systemd sets RUNTIME_DIRECTORY '
        '(one socket per HMC: the shipped unit gives instance <hmc> the directory '
        f'/run/dpm-backend/<hmc>), else "unix:{FALLBACK_LISTEN_DIR}/{SOCKET_NAME}". TCP requires '
        'tls_cert_file, tls_key_file and tls_client_ca_file (mutual TLS), '
        'except on a loopback address with allow_insecure_loopback. '
        'Related options: allow_insecure_loopback, socket_mode, socket_group.',
    ),
    cfg.BoolOpt(
        'allow_insecure_loopback',
        default=False,
        help='Allow plaintext TCP (no TLS, no client certificates) when listen '
        'is a loopback address (127.0.0.0/8, ::1, localhost); for local tools '
        'and tests only. Never allows plaintext on any other address. '
        'Related options: listen.',
    ),
    cfg.BoolOpt(
        'require_tokens',
        default=False,
        help='Refuse to start unless every [host:<name>] has a token, so that '
        'every DPMHost call must carry the token of the host it names. '
        'Related options: [host:<name>] token_file, token.',
    ),
    cfg.StrOpt(
        'socket_mode',
        default='0660',
        regex=r'^0?[0-7]{3}$',
        help='Octal file mode of the unix socket; the socket file is the access control.',
    ),
    cfg.StrOpt('socket_group', help='Group owning the unix socket (e.g. nova).'),
    cfg.StrOpt('tls_cert_file', help='Server certificate (PEM) for TCP.'),
    cfg.StrOpt('tls_key_file', help='Server private key (PEM) for TCP.'),
    cfg.StrOpt('tls_client_ca_file', help='CA that signs accepted client certificates.'),
    cfg.IntOpt(
        'max_concurrent_operations',
        default=16,
        min=1,
        max=512,
        help='DPMHost calls executed at once; more are refused with '
        'RESOURCE_EXHAUSTED. Health checks have threads of their own.',
    ),
    cfg.IntOpt(
        'default_deadline',
        default=900,
        min=1,
        max=3600,
        help='Seconds an operation may take when the caller sets no deadline.',
    ),
    cfg.IntOpt(
        'grace_period',
        default=30,
        min=0,
        max=3600,
        help='Seconds that calls in flight may finish after SIGTERM; past them the backend '
        'makes no HMC request but logoffs, and exits.',
    ),
    cfg.StrOpt(
        'metrics_listen',
        help='Where to serve Prometheus metrics over HTTP at /metrics, as '
        '"<host>:<port>" (e.g. 127.0.0.1:9464, or [::]:9464 for every address). '
        'Plain HTTP without authentication: the metrics name the hosts served and count '
        'calls and HMC requests, never instances or HMC objects; bind to loopback or '
        'keep the port behind a firewall. Unset: no metrics are served.',
    ),
]

coordination_group = cfg.OptGroup(
    'coordination',
    help='Active/standby backends of one HMC. Each backend of the HMC names the same '
    "coordination service; the one holding the HMC's lock there serves (ACTIVE), the others "
    'answer health NOT_SERVING, refuse DPMHost calls with UNAVAILABLE (BACKEND_STANDBY) and '
    'make no HMC request until they acquire the lock. Unset backend_url: this backend '
    'serves alone.',
)
coordination_opts = [
    cfg.StrOpt(
        'backend_url',
        secret=True,
        help='tooz URL of the coordination service, e.g. etcd3+http://127.0.0.1:2379 '
        '(etcd 3.4 or later through its gRPC gateway; etcd3+https with the query options '
        'ca_cert, cert_key, cert_cert), redis://..., zookeeper://... (these need the '
        'redis or kazoo package). The lock is named after [hmc] hosts (sorted) and '
        'port: configure them alike on every backend of one HMC. Unset: no coordination. '
        'Related options: lease_ttl.',
    ),
    cfg.IntOpt(
        'lease_ttl',
        default=DEFAULT_LEASE_TTL,
        min=MIN_LEASE_TTL,
        max=300,
        help="Seconds the HMC's lock outlives its holder's last refresh. The active "
        'backend refreshes it every lease_ttl/4 seconds; once no refresh has succeeded for '
        'lease_ttl/2 seconds (the coordination service does not answer, or the process was '
        'paused) it sends no further HMC request but logoffs, reports NOT_SERVING and '
        'serves again only after acquiring the lock anew. A standby takes over about '
        'lease_ttl seconds after the active backend died. Related options: backend_url.',
    ),
    cfg.StrOpt(
        'member_id',
        help='Name of this backend on the coordination service, in its log lines. '
        'Default: <hostname>-<pid>.',
    ),
]

host_opts = [
    _object_id_opt('cpc_object_id', 'Object id of the CPC this host is a subset of. Required.'),
    cfg.IntOpt(
        'max_processors',
        min=1,
        help='Maximum number of shared IFL processors the host may use. '
        "Must not exceed the CPC's processor-count-ifl. Required.",
    ),
    cfg.IntOpt(
        'max_memory',
        min=512,
        help='Maximum memory in MiB the host may use (minimum 512). Must not '
        "exceed the CPC's storage-customer. Required.",
    ),
    cfg.MultiOpt(
        'physical_storage_adapter_mappings',
        item_type=AdapterPort(),
        help='FCP adapter ports, as <adapter-object-id>:<port 0-3>, one per line. '
        'On a CPC with vHBAs: one vHBA per instance on each; the first one holds the '
        'boot vHBA. On a CPC with DPM storage management (storage groups): the first '
        'one is the host port through which the boot volume is reached. Required.',
    ),
    cfg.IntOpt(
        'storage_connectivity',
        default=2,
        min=1,
        max=64,
        help='On a CPC with DPM storage management: the connectivity of each '
        "instance's storage group, i.e. how many adapter paths (and WWPNs) it has.",
    ),
    cfg.ListOpt(
        'target_wwpn_ignore_list',
        item_type=Wwpn(),
        default=[],
        help='Target WWPNs never used to boot (e.g. NAS ports of a unified storage).',
    ),
    cfg.StrOpt(
        'token_file',
        help='File whose first line is the bearer token of this host: a DPMHost '
        'call naming this host must carry the gRPC metadata '
        '"authorization: Bearer <token>" (compared in constant time). '
        f'{MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} visible ASCII characters. '
        f'Default: $CREDENTIALS_DIRECTORY/{TOKEN_CREDENTIAL_PREFIX}<name> when '
        'systemd provides it. Unset (and no credential): calls for this host '
        'need no token. Related options: token, [backend] require_tokens.',
    ),
    cfg.StrOpt(
        'token',
        secret=True,
        help='The bearer token itself; prefer token_file, which keeps the secret '
        'out of the config file. Related options: token_file.',
    ),
]


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """One Nova host: a subset of one CPC."""

    name: str
    cpc_object_id: str
    max_processors: int
    max_memory: int
    adapter_ports: tuple[tuple[str, int], ...]
    target_wwpn_ignore_list: frozenset[str]
    token: str | None = dataclasses.field(default=None, repr=False)
    storage_connectivity: int = 2


@dataclasses.dataclass(frozen=True)
class HmcConfig:
    """How to reach the HMC."""

    hosts: tuple[str, ...]
    userid: str
    password: str = dataclasses.field(repr=False)
    verify_cert: bool | str
    connect_timeout: int
    connect_retries: int
    read_timeout: int
    read_retries: int
    status_timeout: int
    operation_timeout: int
    pool_size: int
    pool_wait: int
    port: int
    job_poll_interval: float
    job_poll_max_interval: float
    log_requests: bool
    probe_interval: int
    cpc_cache_ttl: int
    notifications: bool = True
    stomp_port: int = DEFAULT_STOMP_PORT


@dataclasses.dataclass(frozen=True)
class ListenConfig:
    """Where and how the gRPC service listens."""

    address: str
    unix_path: str | None
    socket_mode: int
    socket_group: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    tls_client_ca_file: str | None


@dataclasses.dataclass(frozen=True)
class CoordinationConfig:
    """The coordination service holding the HMC's lock (active/standby backends)."""

    # May carry credentials (redis://:password@host): never logged whole.
    backend_url: str = dataclasses.field(repr=False)
    lease_ttl: int
    member_id: str

    @property
    def display_url(self) -> str:
        """The URL without credentials and query: what log lines show."""
        parts = urllib.parse.urlsplit(self.backend_url)
        netloc = parts.netloc.rpartition('@')[2]
        return f'{parts.scheme}://{netloc}{parts.path}'


@dataclasses.dataclass(frozen=True)
class BackendConfig:
    """Everything the backend process needs, checked."""

    hmc: HmcConfig
    listen: ListenConfig
    hosts: dict[str, HostConfig]
    max_concurrent_operations: int
    default_deadline: int
    grace_period: int
    # (host, port) of the Prometheus metrics listener; None: not served.
    metrics_listen: tuple[str, int] | None = None
    # None: this backend serves its HMC alone.
    coordination: CoordinationConfig | None = None

    @property
    def tokens(self) -> dict[str, str]:
        """The token of each host that has one."""
        return {name: host.token for name, host in self.hosts.items() if host.token}


check_config_opt = cfg.StrOpt(
    'check-config',
    metavar='FILE',
    help='Check FILE (as --config-file FILE) and, against the HMC, every host it '
    'serves; print one line per finding and per host, then exit: 0 all usable, '
    '1 a host or the HMC is not, 2 the file has errors.',
)


def with_check_config_file(argv: list[str]) -> list[str]:
    """Read the file that --check-config names as a --config-file too."""
    for index, arg in enumerate(argv):
        if arg == '--check-config' and index + 1 < len(argv):
            return [*argv, '--config-file', argv[index + 1]]
        if arg.startswith('--check-config='):
            return [*argv, '--config-file', arg.partition('=')[2]]
    return argv


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_cli_opt(check_config_opt)
    conf.register_group(hmc_group)
    conf.register_opts(hmc_opts, group=hmc_group)
    conf.register_group(backend_group)
    conf.register_opts(backend_opts, group=backend_group)
    conf.register_group(coordination_group)
    conf.register_opts(coordination_opts, group=coordination_group)


def list_opts() -> list[tuple[str | cfg.OptGroup, list[cfg.Opt]]]:
    """Options for oslo-config-generator; ``host:name`` stands for each host."""
    return [
        ('hmc', hmc_opts),
        ('backend', backend_opts),
        (coordination_group, coordination_opts),
        (
            cfg.OptGroup(
                HOST_GROUP_PREFIX + 'name',
                help='One group per Nova host named in [backend] hosts, e.g. '
                '[host:cpc1] for the host cpc1 (write the name as in hosts).',
            ),
            host_opts,
        ),
    ]


def _get(conf: cfg.ConfigOpts, group: str, name: str):
    try:
        return getattr(conf[group], name)
    except (cfg.ConfigFileValueError, ValueError) as exc:
        why = _OSLO_VALUE_ERROR.sub('', str(exc))
        raise ConfigError(f'[{group}] {name}: invalid value: {why}') from None


def _require(conf: cfg.ConfigOpts, group: str, name: str):
    value = _get(conf, group, name)
    if value in (None, '', []):
        raise ConfigError(f'[{group}] {name} is required')
    return value


def _read_secret(path: str, option: str) -> str:
    try:
        with open(path, encoding='utf-8') as stream:
            return stream.readline().rstrip('\r\n')
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else 'not UTF-8 text'
        raise ConfigError(f'{option}: cannot read: {why}') from None


def _load_token(conf: cfg.ConfigOpts, group: str, name: str) -> str | None:
    token = _get(conf, group, 'token')
    token_file = _get(conf, group, 'token_file')
    credentials = os.environ.get('CREDENTIALS_DIRECTORY')
    if not token and not token_file and credentials:
        candidate = os.path.join(credentials, TOKEN_CREDENTIAL_PREFIX + name)
        token_file = candidate if os.path.isfile(candidate) else None
    if token_file:
        token = _read_secret(token_file, f'[{group}] token_file')
        option = f'[{group}] token_file'
    else:
        option = f'[{group}] token'
    if not token:
        return None
    # Never echo the token itself.
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        raise ConfigError(
            f'{option}: a token has {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters'
        )
    if not _TOKEN.fullmatch(token):
        raise ConfigError(f'{option}: a token has visible ASCII characters only')
    return token


def _load_host(conf: cfg.ConfigOpts, name: str) -> HostConfig:
    error = naming.host_name_error(name)
    if error:
        raise ConfigError(f'[backend] hosts: {name!r}: {error}')
    group = HOST_GROUP_PREFIX + name
    conf.register_opts(host_opts, group=group)
    return HostConfig(
        name=name,
        cpc_object_id=_require(conf, group, 'cpc_object_id'),
        max_processors=_require(conf, group, 'max_processors'),
        max_memory=_require(conf, group, 'max_memory'),
        adapter_ports=tuple(_require(conf, group, 'physical_storage_adapter_mappings')),
        target_wwpn_ignore_list=frozenset(_get(conf, group, 'target_wwpn_ignore_list')),
        token=_load_token(conf, group, name),
        storage_connectivity=_get(conf, group, 'storage_connectivity'),
    )


def _load_hmc(conf: cfg.ConfigOpts) -> HmcConfig:
    hosts = tuple(_require(conf, 'hmc', 'hosts'))
    password = _get(conf, 'hmc', 'password')
    password_file = _get(conf, 'hmc', 'password_file')
    credentials = os.environ.get('CREDENTIALS_DIRECTORY')
    if not password and not password_file and credentials:
        # systemd LoadCredential=hmc-password:... puts it here.
        candidate = os.path.join(credentials, CREDENTIAL_NAME)
        password_file = candidate if os.path.isfile(candidate) else None
    if password_file:
        password = _read_secret(password_file, '[hmc] password_file')
    if not password:
        raise ConfigError('[hmc] password or password_file is required')
    ca_file = _get(conf, 'hmc', 'ca_file')
    if ca_file and not os.path.isfile(ca_file):
        raise ConfigError(f'[hmc] ca_file: no such file: {ca_file}')
    verify = _get(conf, 'hmc', 'verify_cert')
    return HmcConfig(
        hosts=hosts,
        userid=_require(conf, 'hmc', 'userid'),
        password=password,
        verify_cert=(ca_file or True) if verify else False,
        connect_timeout=_get(conf, 'hmc', 'connect_timeout'),
        connect_retries=_get(conf, 'hmc', 'connect_retries'),
        read_timeout=_get(conf, 'hmc', 'read_timeout'),
        read_retries=_get(conf, 'hmc', 'read_retries'),
        status_timeout=_get(conf, 'hmc', 'status_timeout'),
        operation_timeout=_get(conf, 'hmc', 'operation_timeout'),
        pool_size=_get(conf, 'hmc', 'pool_size'),
        pool_wait=_get(conf, 'hmc', 'pool_wait'),
        port=_get(conf, 'hmc', 'port'),
        job_poll_interval=_get(conf, 'hmc', 'job_poll_interval'),
        job_poll_max_interval=_get(conf, 'hmc', 'job_poll_max_interval'),
        log_requests=_get(conf, 'hmc', 'log_requests'),
        probe_interval=_get(conf, 'hmc', 'probe_interval'),
        cpc_cache_ttl=_get(conf, 'hmc', 'cpc_cache_ttl'),
        notifications=_get(conf, 'hmc', 'notifications'),
        stomp_port=_get(conf, 'hmc', 'stomp_port'),
    )


def _is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


# What each TLS file must hold (PEM), checked at start rather than at bind.
_PEM_MARKERS = {
    'tls_cert_file': '-----BEGIN CERTIFICATE-----',
    'tls_key_file': 'PRIVATE KEY-----',
    'tls_client_ca_file': '-----BEGIN CERTIFICATE-----',
}


def _check_pem(name: str, path: str) -> None:
    try:
        with open(path, encoding='ascii', errors='replace') as stream:
            text = stream.read(1024 * 1024)
    except OSError as exc:
        raise ConfigError(f'[backend] {name}: cannot read {path}: {exc.strerror}') from None
    if _PEM_MARKERS[name] not in text:
        raise ConfigError(f'[backend] {name}: {path} holds no PEM {name[4:-5].replace("_", " ")}')


def _check_tcp(conf: cfg.ConfigOpts, address: str, files: dict[str, str | None]) -> None:
    """TCP: mutual TLS, or plaintext on loopback with the explicit flag."""
    host, sep, port = address.rpartition(':')
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ConfigError('[backend] listen: expected "unix:<path>" or "<host>:<port>"')
    tls = [name for name, value in files.items() if value]
    if tls and len(tls) != len(files):
        raise ConfigError(
            '[backend] tls_cert_file, tls_key_file and tls_client_ca_file go together'
        )
    if not tls and not _is_loopback(host):
        raise ConfigError(
            '[backend] listen: TCP on a non-loopback address requires mutual TLS '
            '(tls_cert_file, tls_key_file, tls_client_ca_file)'
        )
    if not tls and not _get(conf, 'backend', 'allow_insecure_loopback'):
        raise ConfigError(
            '[backend] listen: plaintext TCP requires allow_insecure_loopback = true '
            '(loopback only); otherwise configure mutual TLS (tls_cert_file, '
            'tls_key_file, tls_client_ca_file)'
        )
    for name, value in files.items():
        if value:
            _check_pem(name, value)


def default_listen() -> str:
    """The socket of this instance: its own systemd runtime directory, so HMCs never share one."""
    # systemd joins several RuntimeDirectory= entries with ':'; the unit lists one.
    runtime = os.environ.get('RUNTIME_DIRECTORY', '').split(':')[0]
    directory = runtime if os.path.isabs(runtime) else FALLBACK_LISTEN_DIR
    return f'unix:{os.path.join(directory, SOCKET_NAME)}'


def _load_listen(conf: cfg.ConfigOpts) -> ListenConfig:
    address = _get(conf, 'backend', 'listen') or default_listen()
    files = {
        name: _get(conf, 'backend', name)
        for name in ('tls_cert_file', 'tls_key_file', 'tls_client_ca_file')
    }
    unix_path = None
    if address.startswith('unix:'):
        unix_path = address[len('unix:') :]
        if unix_path.startswith('//'):
            unix_path = unix_path[2:]
        if not os.path.isabs(unix_path):
            raise ConfigError('[backend] listen: a unix socket path must be absolute')
    else:
        _check_tcp(conf, address, files)
    return ListenConfig(
        address=address,
        unix_path=unix_path,
        socket_mode=int(_get(conf, 'backend', 'socket_mode'), 8),
        socket_group=_get(conf, 'backend', 'socket_group'),
        **files,
    )


# "<host>:<port>": a DNS name or IPv4 address, or an IPv6 address in brackets.
_HOST_PORT = re.compile(
    r'(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*))'
    r':(?P<port>[0-9]{1,5})'
)


def _host_port(value: str) -> tuple[str, int] | None:
    """(host, port) of ``<host>:<port>`` (an IPv6 address without brackets); None if invalid."""
    match = _HOST_PORT.fullmatch(value)
    if match is None or int(match['port']) > 65535:
        return None
    host = match['ipv6'] or match['host']
    try:
        if match['ipv6']:
            ipaddress.IPv6Address(host)
        elif not host.strip('0123456789.'):
            ipaddress.IPv4Address(host)
    except ValueError:
        return None
    return host, int(match['port'])


def _load_metrics_listen(conf: cfg.ConfigOpts) -> tuple[str, int] | None:
    value = _get(conf, 'backend', 'metrics_listen')
    if not value:
        return None
    address = _host_port(value)
    if address is None:
        raise ConfigError(
            '[backend] metrics_listen: expected "<host>:<port>" (e.g. 127.0.0.1:9464 or '
            f'[::]:9464), got {value[:80]!r}'
        )
    return address


def _tooz_drivers() -> list[str]:
    return sorted({entry.name for entry in metadata.entry_points(group=TOOZ_DRIVERS)})


def _load_coordination(conf: cfg.ConfigOpts) -> CoordinationConfig | None:
    url = _get(conf, 'coordination', 'backend_url')
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    drivers = _tooz_drivers()
    if parts.scheme not in drivers:
        # The URL may hold a password: only its scheme is shown.
        raise ConfigError(
            f'[coordination] backend_url: {parts.scheme[:40]!r} is not a tooz driver; '
            f'expected a URL such as etcd3+http://127.0.0.1:2379 (drivers: {", ".join(drivers)})'
        )
    if TOOZ_LOCK_TIMEOUT in urllib.parse.parse_qs(parts.query):
        raise ConfigError(
            f'[coordination] backend_url: leave {TOOZ_LOCK_TIMEOUT} out of the URL; '
            '[coordination] lease_ttl sets it'
        )
    member_id = _get(conf, 'coordination', 'member_id') or f'{socket.gethostname()}-{os.getpid()}'
    if not _TOKEN.fullmatch(member_id) or len(member_id) > 128:
        raise ConfigError('[coordination] member_id: up to 128 visible ASCII characters, no spaces')
    return CoordinationConfig(
        backend_url=url, lease_ttl=_get(conf, 'coordination', 'lease_ttl'), member_id=member_id
    )


def load(argv: Sequence[str], conf: cfg.ConfigOpts | None = None) -> BackendConfig:
    """Parse the command line and config files; raise ConfigError if anything is off."""
    conf = conf if conf is not None else cfg.ConfigOpts()
    register_opts(conf)
    logging.register_options(conf)
    conf.set_default('logging_context_format_string', LOG_CONTEXT_FORMAT)
    try:
        conf(
            list(argv),
            project='dpm-backend',
            prog='dpm-backend',
            version=version(),
            description=DESCRIPTION,
            epilog=EPILOG,
        )
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from None
    names = _require(conf, 'backend', 'hosts')
    lowered = [name.lower() for name in names]
    duplicates = sorted({name for name in lowered if lowered.count(name) > 1})
    if duplicates:
        raise ConfigError(
            f'[backend] hosts: names must be unique (ignoring case): {", ".join(duplicates)}'
        )
    hosts = {name: _load_host(conf, name) for name in names}
    if _get(conf, 'backend', 'require_tokens'):
        missing = [name for name, host in hosts.items() if not host.token]
        if missing:
            raise ConfigError(
                '[backend] require_tokens: no token (token_file, token or the systemd '
                f'credential {TOKEN_CREDENTIAL_PREFIX}<name>) for host(s) {", ".join(missing)}'
            )
    return BackendConfig(
        hmc=_load_hmc(conf),
        listen=_load_listen(conf),
        hosts=hosts,
        max_concurrent_operations=_get(conf, 'backend', 'max_concurrent_operations'),
        default_deadline=_get(conf, 'backend', 'default_deadline'),
        grace_period=_get(conf, 'backend', 'grace_period'),
        metrics_listen=_load_metrics_listen(conf),
        coordination=_load_coordination(conf),
    )


def config_files(conf: cfg.ConfigOpts) -> list[str]:
    """The files oslo.config read, in its order (--config-file, then --config-dir's *.conf)."""
    files = list(conf.config_file or [])
    if conf.config_dir:
        files += sorted(glob.glob(os.path.join(conf.config_dir, '*.conf')))
    return files


def _known_options(conf: cfg.ConfigOpts, section: str, hosts: Sequence[str]) -> set[str] | None:
    """The option names of a section, or None for a section nothing reads."""
    if section == 'DEFAULT':
        return set(conf)  # the options registered without a group (and the group names)
    opts = {
        'hmc': hmc_opts,
        'backend': backend_opts,
        'coordination': coordination_opts,
    }.get(section)
    if opts is None and section.startswith(HOST_GROUP_PREFIX):
        opts = host_opts if section[len(HOST_GROUP_PREFIX) :] in hosts else None
    return None if opts is None else {opt.dest for opt in opts}


def _hint(option: str, known: set[str], section: str) -> str:
    """Where an unknown option probably belongs: a close name, or another section."""
    close = difflib.get_close_matches(option, sorted(known), n=1)
    if close:
        return f' (did you mean {close[0]}?)'
    for group, opts in (
        ('hmc', hmc_opts),
        ('backend', backend_opts),
        ('coordination', coordination_opts),
        ('host:<name>', host_opts),
    ):
        names = sorted(opt.dest for opt in opts)
        close = difflib.get_close_matches(option.replace('-', '_'), names, n=1)
        if close and group != section:
            return f' (did you mean {close[0]} in [{group}]?)'
    return ''


def unknown_settings(conf: cfg.ConfigOpts, hosts: Sequence[str]) -> list[str]:
    """What the config files set that nothing reads: misspelt options, unserved hosts.

    oslo.config ignores both silently; a typo such as ``read_timout`` would
    leave the default in force without a word.
    """
    problems: list[str] = []
    for path in config_files(conf):
        sections: dict[str, dict[str, list[str]]] = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except (OSError, cfg.ParseError):
            continue  # oslo.config itself reported an unreadable file
        for section, values in sections.items():
            known = _known_options(conf, section, hosts)
            if known is None:
                if section.startswith(HOST_GROUP_PREFIX):
                    problems.append(
                        f'{path}: [{section}]: host {section[len(HOST_GROUP_PREFIX) :]!r} is '
                        'not in [backend] hosts, so this group is not used'
                    )
                else:
                    problems.append(f'{path}: [{section}]: unknown section, not used')
                continue
            for option in values:
                if option.replace('-', '_') in known:
                    continue
                hint = _hint(option, known, section)
                problems.append(f'{path}: [{section}] {option}: unknown option, not used{hint}')
    return problems
