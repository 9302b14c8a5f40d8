"""zhmcclient/HMC errors map to gRPC codes an operator and the driver can act on."""

from __future__ import annotations

import grpc
import pytest
import zhmcclient

from dpm_backend import errors


def http_error(status: int, reason: int) -> zhmcclient.HTTPError:
    return zhmcclient.HTTPError(
        {
            'http-status': status,
            'reason': reason,
            'message': 'HMC says no',
            'request-method': 'POST',
            'request-uri': '/api/partitions/x/operations/start',
        }
    )


@pytest.mark.parametrize(
    ('exc', 'code', 'reason'),
    [
        (http_error(404, 1), grpc.StatusCode.NOT_FOUND, 'HMC_OBJECT_NOT_FOUND'),
        (http_error(409, 1), grpc.StatusCode.FAILED_PRECONDITION, 'INVALID_PARTITION_STATE'),
        (http_error(409, 2), grpc.StatusCode.ABORTED, 'HMC_ERROR'),
        (http_error(400, 7), grpc.StatusCode.INVALID_ARGUMENT, 'HMC_ERROR'),
        (http_error(403, 1), grpc.StatusCode.FAILED_PRECONDITION, 'HMC_ERROR'),
        (http_error(500, 0), grpc.StatusCode.UNAVAILABLE, 'HMC_UNAVAILABLE'),
        (http_error(503, 0), grpc.StatusCode.UNAVAILABLE, 'HMC_UNAVAILABLE'),
        (
            zhmcclient.ConnectionError('refused', None),
            grpc.StatusCode.UNAVAILABLE,
            'HMC_UNAVAILABLE',
        ),
        (
            zhmcclient.ConnectTimeout('t', None, 10, 2),
            grpc.StatusCode.UNAVAILABLE,
            'HMC_UNAVAILABLE',
        ),
        (
            zhmcclient.ReadTimeout('t', None, 10, 2),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            'HMC_TIMEOUT',
        ),
        (zhmcclient.OperationTimeout('job', 10), grpc.StatusCode.DEADLINE_EXCEEDED, 'HMC_TIMEOUT'),
        (
            zhmcclient.StatusTimeout('st', 'active', ['stopped'], 10),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            'HMC_TIMEOUT',
        ),
        (
            zhmcclient.ServerAuthError('logon failed', http_error(403, 0)),
            grpc.StatusCode.UNAVAILABLE,
            'HMC_UNAVAILABLE',
        ),
        (zhmcclient.ParseError('garbage'), grpc.StatusCode.UNAVAILABLE, 'HMC_UNAVAILABLE'),
    ],
)
def test_hmc_errors_map_to_grpc_codes_never_internal(exc, code, reason):
    error = errors.from_hmc(exc, 'start partition')
    assert error.code == code
    assert error.reason_name == reason
    assert error.message.startswith('start partition')
    assert error.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def test_status_carries_error_info_with_domain_and_metadata():
    from google.rpc import error_details_pb2
    from google.rpc import status_pb2

    error = errors.from_hmc(http_error(409, 1), 'stop partition')
    status = error.to_status()
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION
    details = dict(status.trailing_metadata)['grpc-status-details-bin']
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(info)
    assert info.reason == 'INVALID_PARTITION_STATE' and info.domain == 'dpm_api.v1'
    assert info.metadata['http_status'] == '409' and info.metadata['hmc_reason'] == '1'
