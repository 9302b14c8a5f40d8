"""The driver's one connection to dpm-backend: channel, deadlines, retries, errors.

The channel is a unix socket (the socket file is the access control) or TCP
with TLS; plaintext TCP only to a loopback address, and only when
``[dpm] allow_insecure_loopback`` says so: the bearer token never crosses a
network in clear text (dpm_frontend.channel holds these rules). Every call
has a deadline, the budget of the whole call. Idempotent calls are retried a
bounded number of times within it while the backend answers UNAVAILABLE (or
sheds load); then the driver reports itself not ready. gRPC statuses become the
Nova exceptions the compute manager knows how to handle; no other module of the
driver sees grpc.RpcError. Over several backends of one HMC (one active, the
others standby), gRPC sends each call to the active one and repeats an
idempotent call a standby refused (dpm_frontend.channel); a standby's refusal
says the call did not begin, so even Reboot is retried then. Each call carries
Nova's request id, and a failure names the request id the backend logged it
under, so one grep finds the call in the backend's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from oslo_context import context as oslo_context
from oslo_log import log as logging

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_frontend import channel as channel_mod
from dpm_frontend.conf import MIN_ATTEMPT_SECONDS
from nova import exception

LOG = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
RETRYABLE_REASONS = frozenset({'BACKEND_BUSY'})
# Refusals before the call began (a standby backend refuses every call):
# retried even when the call is not idempotent.
NOT_BEGUN_REASONS = frozenset({'BACKEND_STANDBY'})
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
    def not_begun(self) -> bool:
        """The backend refused the call before doing anything: safe to repeat."""
        return self.retryable and self.reason in NOT_BEGUN_REASONS

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
    if failure.reason == 'PARTITION_RUNNING' and instance_uuid:
        # Its sizes change only while it is stopped: Nova's word for "not now".
        return exception.InstanceInvalidState(
            attr='partition status',
            instance_uuid=instance_uuid,
            state=failure.metadata.get('partition_status', 'active'),
            method='change its flavor',
        )
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


class WatchEnded(Exception):
    """A WatchInstances stream failed; ``failure`` says how the backend (or gRPC) ended it."""

    def __init__(self, failure: BackendFailure) -> None:
        super().__init__(failure.code.name)
        self.failure = failure


class InstanceWatch:
    """One WatchInstances stream: iterate its responses; ``cancel()`` ends it from any thread.

    Iteration ends when the backend closes the stream with OK, and raises
    WatchEnded on any other status (CANCELLED after ``cancel()``).
    """

    def __init__(self, call) -> None:
        self._call = call

    def __iter__(self) -> Iterator[pb.WatchInstancesResponse]:
        try:
            yield from self._call
        except grpc.RpcError as error:
            raise WatchEnded(BackendFailure(error)) from None

    def cancel(self) -> None:
        self._call.cancel()


def open_channel(options: channel_mod.Options) -> grpc.Channel:
    """A channel to the backend as ``options`` (the ``[dpm]`` group, or a
    :class:`~dpm_frontend.channel.Transport` read from it) describe it.

    Raises:
        DPMConfigError: plaintext TCP that is not allowed, some but not all of
            the TLS files, or a TLS file that cannot be read.
    """
    try:
        return channel_mod.open_channel(options)
    except channel_mod.TransportRefused as exc:
        raise DPMConfigError(reason=str(exc)) from None


class BackendClient:
    """DPMHost calls within one deadline each, bounded retries, Nova exceptions."""

    def __init__(
        self,
        channel: grpc.Channel,
        conf,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: channel_mod.Options | None = None,
    ):
        """``transport``: where the backend and the token file are named (default: ``conf.dpm``)."""
        self._channel = channel
        self._stub = pb_grpc.DPMHostStub(channel)
        self._conf = conf
        self._sleep = sleep
        self._clock = clock
        try:
            self._metadata = channel_mod.token_metadata(transport or conf.dpm)
            # Several backends: calls go to the one whose health is SERVING.
            self.failover = channel_mod.backend_target(transport or conf.dpm).failover
        except channel_mod.TransportRefused as exc:
            raise DPMConfigError(reason=str(exc)) from None

    def close(self) -> None:
        self._channel.close()

    def wait_for_active(self, timeout: float) -> bool:
        """Whether a backend is SERVING (over several: the active one) within ``timeout`` s.

        With several backends the channel is READY exactly while one of them
        is SERVING; a single backend's channel is READY once connected.
        """
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        finally:
            ready.cancel()
        return True

    def watch_instances(self, host: str) -> InstanceWatch:
        """The backend's stream of ``host``'s instance changes, with the token.

        No deadline: the stream lasts until cancelled or ended by the backend.
        Over several backends it waits for one to be SERVING (a takeover under
        way), so that it opens as soon as the new active backend serves.
        """
        call = self._stub.WatchInstances(
            pb.WatchInstancesRequest(host=host),
            metadata=self._metadata,
            **({'wait_for_ready': True} if self.failover else {}),
        )
        return InstanceWatch(call)

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
        left after the pause before it. A call that is not idempotent is
        retried only when refused before it began (a standby backend). A
        failure becomes a Nova exception. Each attempt carries the request id
        of ``context`` (a Nova RequestContext; by default the thread's current
        one).
        """
        rpc = getattr(self._stub, method)
        request_id = request_id_of(context)
        metadata = self._metadata
        if request_id is not None:
            metadata += ((contract.REQUEST_ID_METADATA_KEY, request_id),)
        retries = self._conf.dpm.unavailable_retries
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
            repeatable = failure.not_begun if not idempotent else failure.retryable
            if repeatable and attempt <= retries and left - interval >= MIN_ATTEMPT_SECONDS:
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
