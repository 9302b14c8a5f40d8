"""Start-up checks per host, the networking-dpm name-collision warning, untrusted log text."""

from __future__ import annotations

import logging

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import rejected
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_status import rpc_status

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend.server import Backend

T = 10
OSA = '3e8f1b2c-5a6d-4c7e-8f90-1a2b3c4d5e01'  # an OSA adapter of the z13
GOOD = f'{INVENTORY["fcp"][0]}:0'
BAD_MAPPINGS = {
    'otherz': (f'{INVENTORY["fcp_z14"][0]}:0', 'no such adapter on CPC CPCZ13'),
    'osa': (f'{OSA}:0', 'is of type osd, not fcp'),
    'noport': (f'{INVENTORY["fcp"][0]}:3', 'has no port 3'),
}


def _reason(error: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2

    for detail in rpc_status.from_call(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    raise AssertionError('no ErrorInfo')


def _health(running, service: str):
    stub = health_pb2_grpc.HealthStub(running.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=T).status


def test_a_host_mapped_to_an_adapter_it_cannot_use_is_not_served_while_the_others_are(
    backend_factory,
):
    hosts = [HostSpec('good', INVENTORY['z13'], mappings=(GOOD,))] + [
        HostSpec(name, INVENTORY['z13'], mappings=(GOOD, mapping))
        for name, (mapping, _) in BAD_MAPPINGS.items()
    ]
    running = backend_factory(hosts)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(running, Backend.host_service_name('good')) == serving
    assert _health(running, '') == serving  # the backend as a whole serves
    running.sim.clear_requests()
    for name, (mapping, why) in BAD_MAPPINGS.items():
        assert _health(running, Backend.host_service_name(name)) == (
            health_pb2.HealthCheckResponse.NOT_SERVING
        )
        request = pb.PrepareInstanceRequest(
            host=name,
            instance_uuid='9b0c5d2e-3f4a-4b6c-8d7e-0f1a2b3c4d5e',
            flavor=pb.Flavor(vcpus=1, memory_mb=1024),
        )
        with pytest.raises(grpc.RpcError) as caught:
            running.stub.PrepareInstance(request, timeout=T)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _reason(caught.value) == 'HOST_NOT_READY'
        assert mapping in caught.value.details() and why in caught.value.details()
    # Refused before any HMC request: no vHBA on another CPC's adapter, nothing created.
    assert [r for r in running.sim.requests() if r.method != 'GET'] == []
    status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='good'), timeout=T)
    assert status.status.vcpus_total == 8
    assert rejected(running.sim.requests()) == []


def test_hosts_whose_names_collide_in_networking_dpm_are_named_at_start(backend_factory, caplog):
    with caplog.at_level(logging.WARNING, logger='dpm_backend.server'):
        backend_factory(
            [
                HostSpec('cpc1', INVENTORY['z13'], mappings=(GOOD,)),
                HostSpec('cpc10', INVENTORY['z13'], mappings=(GOOD,)),
                # On another CPC the agents never see each other's NICs.
                HostSpec('z14', INVENTORY['z14'], mappings=(f'{INVENTORY["fcp_z14"][0]}:0',)),
                HostSpec('z14b', INVENTORY['z13'], mappings=(GOOD,)),
            ]
        )
    warnings = [r.getMessage() for r in caplog.records if 'networking-dpm' in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert 'for host cpc1 will take the NICs of host cpc10' in warnings[0]


@pytest.mark.parametrize(
    'field', ['host', 'instance_uuid'], ids=['forged-host', 'forged-instance-uuid']
)
def test_a_request_cannot_forge_a_log_line(running, caplog, field):
    forged = 'cpc1\n2026-12-04 00:00:00.000 1 INFO dpm_backend.service [-] forged'
    ids = {'host': 'cpc1', 'instance_uuid': '9b0c5d2e-3f4a-4b6c-8d7e-0f1a2b3c4d5e'}
    ids[field] = forged
    calls = [
        (running.stub.GetInstanceInfo, pb.GetInstanceInfoRequest(**ids)),
        (running.stub.PowerOff, pb.PowerOffRequest(**ids)),
    ]
    if field == 'host':
        calls.append((running.stub.ListInstances, pb.ListInstancesRequest(host=forged)))
    with caplog.at_level(logging.DEBUG):
        for call, request in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call(request, timeout=T)
            assert caught.value.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.NOT_FOUND,
            )
    text = '\n'.join(record.getMessage() for record in caplog.records)
    assert '\\n2026-12-04' in text  # logged, escaped
    assert not any(line.startswith('2026-12-04') for line in text.splitlines())
