"""Nova's request id in every backend log line of the call, and back in each reply.

The driver sends ``x-openstack-request-id: req-<uuid>`` (its RequestContext's
id); the backend binds it to the call: each record logged while handling the
call carries it, the reply's trailers and an error's ErrorInfo return it, and
the driver names it in the exception of a failed call. A call without a
well-formed id gets one of its own; a malformed one is never logged.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import wait_for
from dpmtest import write_config
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from nova.conf import CONF

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_frontend import client as client_mod
from dpm_frontend import conf as dpm_conf
from dpm_frontend import driver as driver_mod
from nova import context as nova_context
from nova import objects
from nova.virt import fake

objects.register_all()
dpm_conf.register_opts(CONF)
T = 10
KEY = 'x-openstack-request-id'
TOKEN = 'token-of-cpc1-0123456789abcdef'


def request_id() -> str:
    return f'req-{uuid.uuid4()}'


def returned(call) -> str:
    """The request id in a reply's (or an error's) trailing metadata."""
    (value,) = [v for k, v in call.trailing_metadata() if k == KEY]
    return value


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    trailing = dict(exc.trailing_metadata())
    status = status_pb2.Status.FromString(trailing['grpc-status-details-bin'])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def call_records(caplog) -> list[logging.LogRecord]:
    """The records logged by the backend's gRPC worker threads, that is, by calls."""
    return [r for r in caplog.records if r.threadName.startswith('grpc_')]


def test_every_record_of_a_call_carries_the_id_it_was_sent(running, caplog):
    caplog.set_level(logging.DEBUG)
    sent = request_id()
    metadata = [(KEY, sent)]
    _, call = running.stub.ListInstances.with_call(
        pb.ListInstancesRequest(host='cpc1'), timeout=T, metadata=metadata
    )
    assert returned(call) == sent
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.GetInstanceInfo(
            pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=new_uuid()),
            timeout=T,
            metadata=metadata,
        )
    assert error_info(caught.value).reason == 'INSTANCE_NOT_FOUND'
    assert error_info(caught.value).metadata['request_id'] == sent
    assert returned(caught.value) == sent
    records = call_records(caplog)
    # The HMC requests (zhmcclient, urllib3) and the backend's own lines.
    assert {'zhmcclient.hmc', 'dpm_backend.service'} <= {r.name for r in records}
    assert {getattr(r, 'request_id', None) for r in records} == {sent}


def test_concurrent_calls_each_log_under_their_own_id(running, caplog):
    caplog.set_level(logging.INFO)
    ids = {new_uuid(): request_id() for _ in range(2)}
    calls = [
        running.stub.PrepareInstance.future(
            pb.PrepareInstanceRequest(host='cpc1', instance_uuid=instance, flavor=flavor(1, 512)),
            timeout=T,
            metadata=[(KEY, sent)],
        )
        for instance, sent in ids.items()
    ]
    for call in calls:
        call.result()
    for instance, sent in ids.items():
        created = [r for r in call_records(caplog) if instance in r.getMessage()]
        assert created, instance
        assert {r.request_id for r in created} == {sent}


@pytest.mark.parametrize(
    'metadata',
    [
        [],
        [(KEY, 'req-not-a-uuid %(message)s [forged]')],
        [(KEY, 'req-' + 'f' * 4000)],
        [(KEY, request_id()), (KEY, request_id())],
    ],
    ids=['none', 'malformed', 'long', 'two'],
)
def test_a_call_without_one_well_formed_id_gets_its_own(running, caplog, metadata):
    caplog.set_level(logging.DEBUG)
    _, call = running.stub.ListInstances.with_call(
        pb.ListInstancesRequest(host='cpc1'), timeout=T, metadata=metadata
    )
    made = returned(call)
    assert contract.REQUEST_ID.fullmatch(made)
    assert made not in [value for _, value in metadata]
    records = call_records(caplog)
    assert records and {r.request_id for r in records} == {made}
    for _, value in metadata:
        assert value not in caplog.text
    assert 'forged' not in caplog.text and 'f' * 100 not in caplog.text


def test_a_token_refusal_carries_the_id(backend_factory, tmp_path, caplog):
    token_file = tmp_path / 'cpc1.token'
    token_file.write_text(TOKEN + '\n')
    guarded = backend_factory(extra={'host:cpc1': {'token_file': str(token_file)}})
    caplog.set_level(logging.INFO)
    sent = request_id()
    with pytest.raises(grpc.RpcError) as caught:
        guarded.stub.ListInstances(
            pb.ListInstancesRequest(host='cpc1'), timeout=T, metadata=[(KEY, sent)]
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).metadata['request_id'] == sent
    assert returned(caught.value) == sent
    (refused,) = [r for r in call_records(caplog) if 'refused' in r.getMessage()]
    assert refused.request_id == sent


@pytest.fixture
def nova_driver(running):
    CONF.set_override('host', 'cpc1')
    CONF.set_override('backend', running.backend.address, group='dpm')
    drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    yield drv
    drv.cleanup_host('cpc1')
    CONF.clear_override('host')
    CONF.clear_override('backend', group='dpm')


def in_nova_operation(function):
    """Run ``function(context)`` in a thread of its own with a RequestContext current."""

    def operation():
        context = nova_context.RequestContext('user', 'project', is_admin=False)
        return function(context)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(operation).result(T)


def test_novas_request_id_reaches_the_backends_log_and_a_failure_names_it(nova_driver, caplog):
    caplog.set_level(logging.INFO)

    CONF.set_override('host', 'cpc9')  # a host the backend does not serve
    try:
        elsewhere = driver_mod.DPMDriver(fake.FakeVirtAPI())
    finally:
        CONF.set_override('host', 'cpc1')

    def list_then_power_on_elsewhere(context):
        nova_driver.list_instance_uuids()  # no context passed: the current one's id
        with pytest.raises(client_mod.DPMBackendError) as caught:
            elsewhere.power_on(context, objects.Instance(uuid=new_uuid()), None)
        elsewhere.cleanup_host('cpc9')
        return context.request_id, str(caught.value)

    sent, message = in_nova_operation(list_then_power_on_elsewhere)
    assert f'(backend request {sent})' in message
    records = call_records(caplog)
    assert any(r.getMessage().startswith("power on for host 'cpc9' failed") for r in records)
    assert {r.request_id for r in records} == {sent}


def test_the_backend_process_prints_the_id_on_the_lines_of_the_call(tmp_path, hmc_sim):
    socket_path = tmp_path / 'p.sock'
    config = write_config(tmp_path / 'p.conf', socket_path, hmc=hmc_sim)
    log_path = tmp_path / 'p.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
            cwd=Path(__file__).resolve().parents[2],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sent = request_id()
    try:
        wait_for(socket_path.exists, timeout=30)
        with grpc.insecure_channel(f'unix:{socket_path}') as channel:
            stub = pb_grpc.DPMHostStub(channel)
            with pytest.raises(grpc.RpcError):
                stub.GetInstanceInfo(
                    pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=new_uuid()),
                    timeout=T,
                    metadata=[(KEY, sent)],
                    wait_for_ready=True,
                )
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = log_path.read_text().splitlines()
    (failed,) = [line for line in lines if 'get instance info' in line]
    assert f' INFO dpm_backend.service [{sent}] get instance info' in failed
    # Lines outside calls format as ever.
    (serving,) = [line for line in lines if 'Serving DPMHost' in line]
    assert ' INFO __main__ [-] Serving DPMHost' in serving
    assert all(f'[{sent}]' in line for line in lines if sent in line)
