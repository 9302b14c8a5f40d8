"""The driver's one connection to dpm-backend: channel, deadlines, retries, errors.

The channel is a unix socket (the socket file is the access control) or TCP
with TLS; plaintext TCP only to a loopback address, and only when
``[dpm] allow_insecure_loopback`` says so: the bearer token never crosses a
network in clear text. Every call has a deadline, the budget of the whole call.
Idempotent calls are retried a bounded number of times within it while the
backend answers UNAVAILABLE (or sheds load); then the driver reports itself not
ready. gRPC statuses become the Nova exceptions the compute manager knows how
to handle; no other module of the driver sees grpc.RpcError. Each call carries
Nova's request id, and a failure names the request id the backend logged it
under, so one grep finds the call in the backend's log.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from oslo_context import context as oslo_context
from oslo_log import log as logging

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_frontend.conf import MIN_ATTEMPT_SECONDS
from nova import exception

LOG = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
RETRYABLE_REASONS = frozenset({'BACKEND_BUSY'})
# Reasons that another host might not have: Nova reschedules on these.
RESCHEDULE_REASONS = frozenset(
    {'HOST_CAPACITY_EXCEEDED', 'CPC_NOT_USABLE', 'HOST_NOT_READY', 'STORAGE_PATH_UNSUPPORTED'}
)
# Reasons no retry or other host can fix: Nova aborts the build.
REFUSAL_REASONS = frozenset(
    {
        'INVALID_FIELD',
        'IMAGE_BOOT_UNSUPPORTED',
        'VIF_UNSUPPORTED',
        'TOO_MANY_NICS',
        'CMDLINE_TOO_LONG',
        'BOOT_VOLUME_UNUSABLE',
    }
)


UNIX_SCHEME = 'unix:'
TLS_OPTIONS = ('tls_ca_file', 'tls_cert_file', 'tls_key_file')
# How to reach a backend safely; every refusal of a transport says it.
SAFE_TRANSPORTS = (
    'set [dpm] tls_ca_file, tls_cert_file and tls_key_file (the backend requires '
    'mutual TLS on TCP), or point [dpm] backend at the unix socket of a backend on '
    'this node'
)


class DPMBackendError(exception.NovaException):
    msg_fmt = 'dpm-backend: %(reason)s'


class DPMConfigError(DPMBackendError):
    """The [dpm] options do not describe a usable, safe connection to the backend."""

    msg_fmt = 'DPM driver configuration: %(reason)s'


def request_id_of(context=None) -> str | None:
    """Nova's request id for a call: ``context``'s, else that of the thread's current context.

    Nova makes the current context of each operation it handles (and passes
    one to some driver methods); its request id is what Nova's log lines and
    instance actions show. Only the ``req-<uuid>`` form Nova makes is sent:
    anything else is left out, and the backend makes up an id of its own.
    """
    if context is None:
        context = oslo_context.get_current()
    request_id = getattr(context, 'request_id', None)
    if isinstance(request_id, str) and contract.REQUEST_ID.fullmatch(request_id):
        return request_id
    return None


class BackendFailure:
    """What the backend said about a failed call, decoded once."""

    def __init__(self, error: grpc.RpcError) -> None:
        self.code = error.code() if hasattr(error, 'code') else grpc.StatusCode.UNKNOWN
        self.details = (error.details() if hasattr(error, 'details') else None) or str(error)
        self.reason = ''
        self.metadata: dict[str, str] = {}
        trailers: Any = ()
        status = None
        if hasattr(error, 'trailing_metadata'):
            trailers = error.trailing_metadata() or ()
            status = rpc_status.from_call(error)
        for detail in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                self.reason = info.reason
                self.metadata = dict(info.metadata)
        returned = [v for k, v in trailers if k == contract.REQUEST_ID_METADATA_KEY]
        returned.append(self.metadata.get('request_id', ''))
        # The backend's log names the call by this id; None if it never answered.
        self.request_id = next(
            (v for v in returned if isinstance(v, str) and contract.REQUEST_ID.fullmatch(v)), None
        )

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES or self.reason in RETRYABLE_REASONS

    @property
    def message(self) -> str:
        """The backend's message, with the request id to look for in its log."""
        if self.request_id is None:
            return self.details
        return f'{self.details} (backend request {self.request_id})'


def to_nova_exception(
    failure: BackendFailure,
    instance_uuid: str | None,
    failure_type: Callable[..., Exception] | None = None,
) -> Exception:
    """The Nova exception for a failed call (``failure_type`` for the rest)."""
    message = failure.message
    if failure.reason == 'INSTANCE_NOT_FOUND' and instance_uuid:
        return exception.InstanceNotFound(instance_id=instance_uuid)
    if failure.retryable:
        return exception.VirtDriverNotReady()
    if failure.reason in RESCHEDULE_REASONS:
        return exception.ComputeResourcesUnavailable(reason=message)
    if failure.reason in REFUSAL_REASONS or failure.code == grpc.StatusCode.INVALID_ARGUMENT:
        return exception.InvalidInput(reason=message)
    if failure.reason == 'HOST_NOT_FOUND':
        return DPMBackendError(
            reason=f'{message}; [DEFAULT]host must be one of the hosts in the '
            "backend's [backend] hosts"
        )
    if failure.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return DPMBackendError(reason=f'{message} (check [dpm] token_file and TLS files)')
    if failure_type is not None:
        return failure_type(message)
    return DPMBackendError(reason=f'{failure.code.name}: {message}')


def _read(conf, option: str) -> bytes | None:
    """The content of the file ``[dpm] <option>`` names, or None if unset."""
    path = getattr(conf.dpm, option)
    if not path:
        return None
    try:
        with open(path, 'rb') as stream:
            return stream.read()
    except OSError as exc:
        raise DPMConfigError(reason=f'[dpm] {option}: cannot read {path}: {exc.strerror}') from None


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


def _refuse_plaintext(conf) -> None:
    """Raise unless plaintext TCP to ``[dpm] backend`` is loopback and allowed."""
    target = conf.dpm.backend
    hosts = _target_hosts(target)
    if not hosts or not all(_is_loopback(host) for host in hosts):
        raise DPMConfigError(
            reason=f'[dpm] backend = {target} is neither a unix socket nor a loopback '
            'address, and TLS is not configured: the bearer token and every request '
            f'would cross the network in clear text. To fix, {SAFE_TRANSPORTS}. '
            '([dpm] allow_insecure_loopback allows plaintext TCP to 127.0.0.0/8, ::1 '
            'and localhost only.)'
        )
    if not conf.dpm.allow_insecure_loopback:
        raise DPMConfigError(
            reason=f'[dpm] backend = {target} is plaintext TCP to loopback, which needs '
            '[dpm] allow_insecure_loopback = true (local tools and tests only). '
            f'Otherwise, {SAFE_TRANSPORTS}.'
        )


def open_channel(conf) -> grpc.Channel:
    """A channel to the backend as ``[dpm]`` describes it.

    ``unix:`` targets are plaintext; TCP uses TLS with the three ``tls_*`` files,
    or plaintext to a loopback address with ``allow_insecure_loopback``. Creating
    a channel sends nothing: gRPC connects on the first call.

    Raises:
        DPMConfigError: plaintext TCP that is not allowed, some but not all of
            the TLS files, or a TLS file that cannot be read.
    """
    target = conf.dpm.backend
    if target.startswith(UNIX_SCHEME):
        return grpc.insecure_channel(target)
    given = [option for option in TLS_OPTIONS if getattr(conf.dpm, option)]
    if given and len(given) != len(TLS_OPTIONS):
        raise DPMConfigError(
            reason=f'[dpm] tls_ca_file, tls_cert_file and tls_key_file go together '
            f'(only {", ".join(given)} set for [dpm] backend = {target}). To fix, '
            f'{SAFE_TRANSPORTS}.'
        )
    if not given:
        _refuse_plaintext(conf)
        LOG.warning(
            'Plaintext TCP to dpm-backend at %(target)s on loopback '
            '([dpm] allow_insecure_loopback = true)',
            {'target': target},
        )
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(conf, 'tls_ca_file'),
        private_key=_read(conf, 'tls_key_file'),
        certificate_chain=_read(conf, 'tls_cert_file'),
    )
    return grpc.secure_channel(target, credentials)


class BackendClient:
    """DPMHost calls within one deadline each, bounded retries, Nova exceptions."""

    def __init__(
        self,
        channel: grpc.Channel,
        conf,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._channel = channel
        self._stub = pb_grpc.DPMHostStub(channel)
        self._conf = conf
        self._sleep = sleep
        self._clock = clock
        token = _read(conf, 'token_file')
        self._metadata: tuple[tuple[str, str], ...] = (
            (('authorization', 'Bearer ' + token.decode().strip()),) if token else ()
        )

    def close(self) -> None:
        self._channel.close()

    def call(
        self,
        method: str,
        request: Any,
        deadline: float,
        idempotent: bool,
        instance_uuid: str | None = None,
        failure_type: Callable[..., Exception] | None = None,
        context=None,
    ) -> Any:
        """Call ``method`` within ``deadline`` seconds; retry while retryable and idempotent.

        The deadline is the budget of the whole call: each attempt gets what is
        left of it, and a retry starts only if at least MIN_ATTEMPT_SECONDS are
        left after the pause before it. A failure becomes a Nova exception.
        Each attempt carries the request id of ``context`` (a Nova
        RequestContext; by default the thread's current one).
        """
        rpc = getattr(self._stub, method)
        request_id = request_id_of(context)
        metadata = self._metadata
        if request_id is not None:
            metadata += ((contract.REQUEST_ID_METADATA_KEY, request_id),)
        retries = self._conf.dpm.unavailable_retries if idempotent else 0
        interval = self._conf.dpm.retry_interval
        end = self._clock() + deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                return rpc(request, timeout=end - self._clock(), metadata=metadata)
            except grpc.RpcError as error:
                failure = BackendFailure(error)
            left = end - self._clock()
            if failure.retryable and attempt <= retries and left - interval >= MIN_ATTEMPT_SECONDS:
                LOG.warning(
                    'dpm-backend %(method)s: %(code)s (%(details)s); retry %(n)d of %(max)d '
                    'in %(interval)s s, %(left).1f s of the deadline left',
                    {
                        'method': method,
                        'code': failure.code.name,
                        'details': failure.message,
                        'n': attempt,
                        'max': retries,
                        'interval': interval,
                        'left': left,
                    },
                )
                self._sleep(interval)
                if end - self._clock() >= MIN_ATTEMPT_SECONDS:
                    continue
            LOG.debug(
                'dpm-backend %(method)s failed after %(n)d attempt(s): %(code)s %(reason)s '
                '%(details)s',
                {
                    'method': method,
                    'n': attempt,
                    'code': failure.code.name,
                    'reason': failure.reason,
                    'details': failure.message,
                },
            )
            raise to_nova_exception(failure, instance_uuid, failure_type)
