"""Errors of the DPMHost service and their gRPC status.

Operations raise :class:`DPMError`; zhmcclient exceptions are translated here
and nowhere else. Messages name the HMC object involved and never contain
credentials.
"""

from __future__ import annotations

import grpc
import zhmcclient
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import correlation

DOMAIN = 'dpm_api.v1'
# HMC reason code of HTTP 409: the object's status does not allow the operation.
HMC_REASON_INVALID_STATE = 1
# HMC reason codes of HTTP 403: the session id is invalid (4) or expired (5).
HMC_REASONS_SESSION_GONE = frozenset({4, 5})


def is_session_gone(exc: BaseException) -> bool:
    """True if the HMC no longer knows the session the request used.

    zhmcclient logs on again and repeats the request once by itself; one that
    still fails this way (ServerAuthError, or a 403 seen at the session seam)
    is retryable with a fresh session.
    """
    if isinstance(exc, zhmcclient.ServerAuthError):
        # What zhmcclient raises when its own re-logon failed (zc _session.py).
        return True
    return (
        isinstance(exc, zhmcclient.HTTPError)
        and exc.http_status == 403
        and exc.reason in HMC_REASONS_SESSION_GONE
    )


class DPMError(Exception):
    """A failed DPMHost operation with its gRPC code and ErrorInfo reason."""

    def __init__(
        self, code: grpc.StatusCode, reason: int, message: str, **metadata: object
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = {key: str(value) for key, value in metadata.items()}

    @property
    def reason_name(self) -> str:
        return pb.ErrorReason.Name(self.reason).removeprefix('ERROR_REASON_')

    def to_status(self) -> grpc.Status:
        """The status to answer; inside a call, its ErrorInfo names the call's request id."""
        metadata = dict(self.metadata)
        request_id = correlation.current()
        if request_id is not None:
            metadata['request_id'] = request_id
        info = error_details_pb2.ErrorInfo(
            reason=self.reason_name, domain=DOMAIN, metadata=metadata
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        return rpc_status.to_status(
            status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        )


def invalid_field(field: str, message: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.INVALID_ARGUMENT,
        pb.ERROR_REASON_INVALID_FIELD,
        f'{field}: {message}',
        field=field,
    )


def host_not_found(host: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.NOT_FOUND,
        pb.ERROR_REASON_HOST_NOT_FOUND,
        f'host {host!r} is not served by this backend',
        host=host,
    )


def instance_not_found(host: str, instance_uuid: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.NOT_FOUND,
        pb.ERROR_REASON_INSTANCE_NOT_FOUND,
        f'instance {instance_uuid} has no partition on host {host}',
        host=host,
        instance_uuid=instance_uuid,
    )


def cpc_not_usable(host: str, why: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_CPC_NOT_USABLE,
        f'host {host}: {why}',
        host=host,
    )


def hmc_object_not_found(what: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.NOT_FOUND, pb.ERROR_REASON_HMC_OBJECT_NOT_FOUND, f'{what} does not exist'
    )


def boot_volume_unusable(why: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_BOOT_VOLUME_UNUSABLE,
        f'boot volume: {why}',
    )


def cmdline_too_long(length: int, limit: int) -> DPMError:
    return DPMError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.ERROR_REASON_CMDLINE_TOO_LONG,
        f'the kernel command line would be {length} characters; the HMC allows {limit}',
    )


def capacity_exceeded(host: str, why: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.ERROR_REASON_HOST_CAPACITY_EXCEEDED,
        f'host {host}: {why}',
        host=host,
    )


def partition_not_stopped(name: str, status: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_INVALID_PARTITION_STATE,
        f'partition {name} is {status} after Stop Partition',
        partition_status=status,
    )


def partition_running(
    name: str, status: str, sizes: tuple[int, int], flavor: tuple[int, int]
) -> DPMError:
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_PARTITION_RUNNING,
        f'partition {name} has {sizes[0]} processors and {sizes[1]} MiB, the flavor asks '
        f'for {flavor[0]} and {flavor[1]} MiB; it is {status}, and its sizes change only '
        'while it is stopped',
        partition_status=status,
    )


def partition_not_started(name: str, status: str) -> DPMError:
    why = {
        'paused': 'the boot failed (see the operating system messages of the partition)',
        'reservation-error': 'its resources could not be reserved on the CPC',
    }.get(status, 'it is not running')
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_PARTITION_NOT_STARTED,
        f'partition {name} is {status} after Start Partition: {why}',
        partition_status=status,
    )


def host_not_ready(host: str, why: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_HOST_NOT_READY,
        f'host {host} is not served: {why}',
        host=host,
    )


def backend_busy(limit: int) -> DPMError:
    return DPMError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.ERROR_REASON_BACKEND_BUSY,
        f'the backend is running its limit of {limit} operations; retry later',
    )


def watcher_too_slow(host: str, buffer: int) -> DPMError:
    return DPMError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.ERROR_REASON_WATCHER_TOO_SLOW,
        f'the stream of host {host!r} fell {buffer} changes behind; reconnect for the '
        'current state',
    )


def too_many_watchers(why: str) -> DPMError:
    return DPMError(grpc.StatusCode.RESOURCE_EXHAUSTED, pb.ERROR_REASON_BACKEND_BUSY, why)


def sessions_busy(action: str, why: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        pb.ERROR_REASON_BACKEND_BUSY,
        f'{action}: {why}; retry later',
    )


def hmc_timeout(action: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        pb.ERROR_REASON_HMC_TIMEOUT,
        f'{action}: the HMC did not finish in time',
    )


def no_time_for(action: str, remaining: float, needs: float) -> DPMError:
    return DPMError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        pb.ERROR_REASON_HMC_TIMEOUT,
        f'{action}: not begun with {max(remaining, 0):.1f} s of the deadline left; '
        f'it takes about {needs:.1f} s',
    )


def call_cancelled(action: str) -> DPMError:
    """The caller went away (cancelled, or its deadline passed on the way)."""
    return DPMError(
        grpc.StatusCode.CANCELLED, pb.ERROR_REASON_UNSPECIFIED, f'{action}: the call was cancelled'
    )


def backend_stopping(action: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.UNAVAILABLE,
        pb.ERROR_REASON_HMC_UNAVAILABLE,
        f'{action}: the backend is stopping; no further HMC request is made',
    )


def backend_standby(action: str, why: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.UNAVAILABLE,
        pb.ERROR_REASON_BACKEND_STANDBY,
        f'{action}: this backend is a standby ({why}); another backend of the HMC serves',
    )


def instance_busy(host: str, instance_uuid: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        pb.ERROR_REASON_INSTANCE_BUSY,
        f'another call for instance {instance_uuid} on host {host} was still waiting '
        'for the HMC when the deadline passed',
        host=host,
        instance_uuid=instance_uuid,
    )


# ErrorInfo reasons of the caller checks in the server (not HMC facts).
REASON_UNAUTHENTICATED = pb.ERROR_REASON_UNAUTHENTICATED
REASON_PERMISSION_DENIED = pb.ERROR_REASON_PERMISSION_DENIED


def unauthenticated(why: str) -> DPMError:
    return DPMError(grpc.StatusCode.UNAUTHENTICATED, REASON_UNAUTHENTICATED, why)


def permission_denied(host: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.PERMISSION_DENIED,
        REASON_PERMISSION_DENIED,
        f'the token presented does not grant access to host {host!r}',
        host=host,
    )


def internal(action: str) -> DPMError:
    return DPMError(
        grpc.StatusCode.INTERNAL,
        pb.ERROR_REASON_UNSPECIFIED,
        f'{action}: unexpected error in the backend; see its log',
    )


class BackendStopping(zhmcclient.Error):
    """An HMC request refused before it was sent: the backend is stopping."""


class BackendStandby(zhmcclient.Error):
    """An HMC request refused before it was sent: this backend does not hold the HMC's lease."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def from_hmc(exc: zhmcclient.Error, action: str) -> DPMError:
    """Translate a zhmcclient exception raised while doing ``action``."""
    if isinstance(exc, BackendStopping):
        return backend_stopping(action)
    if isinstance(exc, BackendStandby):
        return backend_standby(action, exc.why)
    if isinstance(exc, zhmcclient.HTTPError):
        return _from_http(exc, action)
    if isinstance(
        exc, (zhmcclient.ReadTimeout, zhmcclient.OperationTimeout, zhmcclient.StatusTimeout)
    ):
        return hmc_timeout(action)
    return _from_other(exc, action)


def _from_http(exc: zhmcclient.HTTPError, action: str) -> DPMError:
    meta = {'http_status': exc.http_status, 'hmc_reason': exc.reason}
    text = f'{action}: HMC {exc.http_status},{exc.reason}: {exc.message}'
    if is_session_gone(exc):
        return DPMError(
            grpc.StatusCode.UNAVAILABLE,
            pb.ERROR_REASON_HMC_UNAVAILABLE,
            f'{action}: the HMC session expired; the next call logs on again',
            **meta,
        )
    if exc.http_status == 404:
        return DPMError(
            grpc.StatusCode.NOT_FOUND, pb.ERROR_REASON_HMC_OBJECT_NOT_FOUND, text, **meta
        )
    if exc.http_status == 409 and exc.reason == HMC_REASON_INVALID_STATE:
        return DPMError(
            grpc.StatusCode.FAILED_PRECONDITION,
            pb.ERROR_REASON_INVALID_PARTITION_STATE,
            text,
            **meta,
        )
    if exc.http_status == 409:
        return DPMError(grpc.StatusCode.ABORTED, pb.ERROR_REASON_HMC_ERROR, text, **meta)
    if exc.http_status == 400:
        return DPMError(grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_REASON_HMC_ERROR, text, **meta)
    if exc.http_status >= 500:
        return DPMError(grpc.StatusCode.UNAVAILABLE, pb.ERROR_REASON_HMC_UNAVAILABLE, text, **meta)
    return DPMError(grpc.StatusCode.FAILED_PRECONDITION, pb.ERROR_REASON_HMC_ERROR, text, **meta)


def _from_other(exc: zhmcclient.Error, action: str) -> DPMError:
    if isinstance(exc, zhmcclient.AuthError):
        return DPMError(
            grpc.StatusCode.UNAVAILABLE,
            pb.ERROR_REASON_HMC_UNAVAILABLE,
            f'{action}: cannot log on to the HMC ({type(exc).__name__})',
        )
    if isinstance(exc, (zhmcclient.ConnectionError, zhmcclient.ParseError)):
        return DPMError(
            grpc.StatusCode.UNAVAILABLE,
            pb.ERROR_REASON_HMC_UNAVAILABLE,
            f'{action}: the HMC cannot be reached ({type(exc).__name__})',
        )
    if isinstance(exc, (zhmcclient.NotFound, zhmcclient.CeasedExistence)):
        return DPMError(
            grpc.StatusCode.NOT_FOUND, pb.ERROR_REASON_HMC_OBJECT_NOT_FOUND, f'{action}: {exc}'
        )
    return DPMError(
        grpc.StatusCode.FAILED_PRECONDITION,
        pb.ERROR_REASON_HMC_ERROR,
        f'{action}: {type(exc).__name__}: {exc}',
    )
