"""Metrics building blocks: URI classes, HMC codes, and the status each kind of RPC ends with."""

from __future__ import annotations

import threading
from concurrent import futures

import grpc
import pytest
import zhmcclient
from dpmtest import hmc_error
from dpmtest import wait_for

from dpm_backend import metrics as metrics_mod

T = 10


@pytest.mark.parametrize(
    ('uri', 'expected'),
    [
        ('/api/version', '/api/version'),
        ('/api/sessions/this-session', '/api/sessions/this-session'),
        (
            '/api/partitions/3e8f1b2c-5a6d-4c7e-8f90-1a2b3c4d5e01/operations/start',
            '/api/partitions/{id}/operations/start',
        ),
        (
            '/api/cpcs/1d7c0a6e-4b2f-4f1a-8e3d-5a6b7c8d9e01/partitions?name=OpenStack-cpc1-x',
            '/api/cpcs/{id}/partitions',
        ),
        (
            '/api/adapters/5a9b2c3d-7e8f-4a1b-9c2d-3e4f5a6b7c01/storage-ports/0',
            '/api/adapters/{id}/storage-ports/{id}',
        ),
        ('/api/jobs/abcdefab-cdef-abcd-efab-cdefabcdefab', '/api/jobs/{id}'),
        ('/api/partitions/0123abcd/nics/ffffffffffff', '/api/partitions/{id}/nics/{id}'),
    ],
)
def test_uri_class_replaces_object_ids_and_drops_the_query(uri, expected):
    assert metrics_mod.uri_class(uri) == expected


def test_hmc_code_is_the_http_status_or_the_name_of_the_failure():
    assert metrics_mod.hmc_code(hmc_error(404, 1)) == '404'
    refused = zhmcclient.ServerAuthError('logon refused', hmc_error(403, 0))
    assert metrics_mod.hmc_code(refused) == '403'
    assert metrics_mod.hmc_code(zhmcclient.ConnectTimeout('x', None, 1, 0)) == 'ConnectTimeout'
    assert metrics_mod.hmc_code(zhmcclient.ReadTimeout('x', None, 1, 0)) == 'ReadTimeout'


def test_hmc_requests_are_counted_by_class_and_code_including_failures():
    metrics = metrics_mod.Metrics('1.2.3')
    uri = '/api/partitions/3e8f1b2c-5a6d-4c7e-8f90-1a2b3c4d5e01'
    assert metrics.hmc_request('GET', uri, lambda: {'name': 'p'}) == {'name': 'p'}

    def gone():
        raise hmc_error(404, 1, 'GET', uri)

    with pytest.raises(zhmcclient.HTTPError):
        metrics.hmc_request('GET', uri + '?properties=status', gone)
    value = metrics.registry.get_sample_value
    cls = '/api/partitions/{id}'
    labels = {'method': 'GET', 'uri_class': cls}
    assert value('dpm_backend_hmc_requests_total', {**labels, 'code': '2xx'}) == 1
    assert value('dpm_backend_hmc_requests_total', {**labels, 'code': '404'}) == 1
    assert value('dpm_backend_hmc_request_seconds_count', labels) == 2
    assert value('dpm_backend_info', {'version': '1.2.3'}) == 1


# --- the gRPC interceptor, on a toy service of every RPC kind ------------------------------


def _abort_not_found(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, 'no such thing')


def _raise(request, context):
    raise ValueError('a bug')


def _set_code(request, context):
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    context.set_details('not now')
    return b''


def _stream_then_abort(request, context):
    yield b'1'
    yield b'2'
    context.abort(grpc.StatusCode.ABORTED, 'changed meanwhile')


def _stream(request, context):
    yield b'1'
    yield b'2'


def _count(requests, context):
    return str(sum(1 for _ in requests)).encode()


class Toy:
    """A server with the metrics interceptor in front of one method of each kind."""

    def __init__(self, tmp_path) -> None:
        self.release = threading.Event()
        self.metrics = metrics_mod.Metrics('test')
        handlers = {
            'Ok': grpc.unary_unary_rpc_method_handler(lambda request, context: request),
            'Abort': grpc.unary_unary_rpc_method_handler(_abort_not_found),
            'Raise': grpc.unary_unary_rpc_method_handler(_raise),
            'SetCode': grpc.unary_unary_rpc_method_handler(_set_code),
            'StreamAbort': grpc.unary_stream_rpc_method_handler(_stream_then_abort),
            'Stream': grpc.unary_stream_rpc_method_handler(_stream),
            'Forever': grpc.unary_stream_rpc_method_handler(self._forever),
            'Count': grpc.stream_unary_rpc_method_handler(_count),
            'Echo': grpc.stream_stream_rpc_method_handler(lambda requests, context: requests),
        }
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            handlers=[grpc.method_handlers_generic_handler('toy.v1.Toy', handlers)],
            interceptors=[metrics_mod.ServerInterceptor(self.metrics)],
        )
        target = f'unix:{tmp_path}/toy.sock'
        self.server.add_insecure_port(target)
        self.server.start()
        self.channel = grpc.insecure_channel(target)

    def _forever(self, request, context):
        yield b'first'
        self.release.wait(T)

    def handled(self, kind: str, method: str, code: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            'grpc_server_handled_total',
            {
                'grpc_type': kind,
                'grpc_service': 'toy.v1.Toy',
                'grpc_method': method,
                'grpc_code': code,
            },
        )

    def close(self) -> None:
        self.release.set()
        self.channel.close()
        self.server.stop(None).wait()


@pytest.fixture
def toy(tmp_path):
    served = Toy(tmp_path)
    yield served
    served.close()


def test_unary_calls_are_counted_with_the_status_the_caller_gets(toy):
    call = toy.channel.unary_unary
    assert call('/toy.v1.Toy/Ok')(b'x', timeout=T) == b'x'
    for method, code in (
        ('Abort', grpc.StatusCode.NOT_FOUND),
        ('Raise', grpc.StatusCode.UNKNOWN),
        ('SetCode', grpc.StatusCode.FAILED_PRECONDITION),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(f'/toy.v1.Toy/{method}')(b'x', timeout=T)
        assert caught.value.code() == code
        assert toy.handled('unary', method, code.name) == 1
    assert toy.handled('unary', 'Ok', 'OK') == 1
    # Every started call ended once: nothing counted twice.
    started = toy.metrics.registry.get_sample_value(
        'grpc_server_started_total',
        {'grpc_type': 'unary', 'grpc_service': 'toy.v1.Toy', 'grpc_method': 'Raise'},
    )
    assert started == 1


def test_streams_are_counted_when_they_end_however_they_end(toy):
    assert list(toy.channel.unary_stream('/toy.v1.Toy/Stream')(b'x', timeout=T)) == [b'1', b'2']
    assert toy.handled('server_stream', 'Stream', 'OK') == 1

    responses = toy.channel.unary_stream('/toy.v1.Toy/StreamAbort')(b'x', timeout=T)
    with pytest.raises(grpc.RpcError) as caught:
        list(responses)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert toy.handled('server_stream', 'StreamAbort', 'ABORTED') == 1

    count = toy.channel.stream_unary('/toy.v1.Toy/Count')(iter([b'a', b'b', b'c']), timeout=T)
    assert count == b'3'
    assert toy.handled('client_stream', 'Count', 'OK') == 1

    echoed = toy.channel.stream_stream('/toy.v1.Toy/Echo')(iter([b'a', b'b']), timeout=T)
    assert list(echoed) == [b'a', b'b']
    assert toy.handled('bidi_stream', 'Echo', 'OK') == 1


def test_a_stream_the_caller_cancels_is_counted_once_as_cancelled(toy):
    responses = toy.channel.unary_stream('/toy.v1.Toy/Forever')(b'x', timeout=T)
    assert next(responses) == b'first'
    responses.cancel()
    wait_for(lambda: toy.handled('server_stream', 'Forever', 'CANCELLED') == 1)
    toy.release.set()  # the handler's generator ends; nothing more is counted
    labels = {'grpc_type': 'server_stream', 'grpc_service': 'toy.v1.Toy'}
    count = toy.metrics.registry.get_sample_value(
        'grpc_server_handling_seconds_count', {**labels, 'grpc_method': 'Forever'}
    )
    assert count == 1


def test_calls_to_methods_the_server_lacks_get_no_labels(toy):
    with pytest.raises(grpc.RpcError) as caught:
        toy.channel.unary_unary('/toy.v1.Toy/Nope')(b'x', timeout=T)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    names = {
        sample.labels.get('grpc_method')
        for family in toy.metrics.registry.collect()
        for sample in family.samples
    }
    assert 'Nope' not in names
