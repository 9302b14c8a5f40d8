"""A host sees and touches only its own partitions, whatever a request contains."""

from __future__ import annotations

import copy

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming

T = 10
# In the shipped mock HMC: another cloud's partition named for host "cpc10".
CPC10_UUID = '0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'


def state(running) -> dict:
    result = {}
    for key in ('z13', 'z14'):
        for p in running.cpc(key).partitions.list():
            result[p.properties['name']] = (
                copy.deepcopy(dict(p.properties)),
                [copy.deepcopy(dict(n.properties)) for n in p.nics.list()],
                [copy.deepcopy(dict(h.properties)) for h in p.hbas.list()],
            )
    return result


def test_listing_returns_only_exactly_named_partitions_of_the_host(running):
    running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc1', instance_uuid=new_uuid(), flavor=flavor()),
        timeout=T,
    )
    names = {
        host: [
            i.partition_name
            for i in running.stub.ListInstances(
                pb.ListInstancesRequest(host=host), timeout=T
            ).instances
        ]
        for host in ('cpc1', 'cpc10')
    }
    # cpc1 does not see cpc10's partition, "OpenStack-cpc1-backup" or LINUX01.
    assert len(names['cpc1']) == 1 and names['cpc1'][0].startswith('OpenStack-cpc1-')
    assert names['cpc10'] == [f'OpenStack-cpc10-{CPC10_UUID}']


def another_hosts_requests(instance_uuid: str, wwpn: str):
    ids = {'host': 'cpc1', 'instance_uuid': instance_uuid}
    return [
        ('GetInstanceInfo', pb.GetInstanceInfoRequest(**ids), grpc.StatusCode.NOT_FOUND),
        ('GetVolumeConnector', pb.GetVolumeConnectorRequest(**ids), grpc.StatusCode.NOT_FOUND),
        ('PowerOff', pb.PowerOffRequest(**ids), grpc.StatusCode.NOT_FOUND),
        ('PowerOn', pb.PowerOnRequest(**ids), grpc.StatusCode.NOT_FOUND),
        ('Reboot', pb.RebootRequest(**ids), grpc.StatusCode.NOT_FOUND),
        ('Destroy', pb.DestroyRequest(**ids), grpc.StatusCode.OK),
    ]


def test_no_rpc_of_one_host_changes_another_hosts_partition(running):
    # A running instance of cpc10, plus the foreign cpc10 partition of the mock.
    own = new_uuid()
    prepared = running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc10', instance_uuid=own, flavor=flavor(1, 1024)),
        timeout=T,
    )
    running.stub.Spawn(
        pb.SpawnRequest(
            host='cpc10',
            instance_uuid=own,
            flavor=flavor(1, 1024),
            nics=[nic(INVENTORY['vswitch_osa0'])],
            boot_volume=boot_volume(list(prepared.wwpns), ['500507680b2142e5']),
        ),
        timeout=T,
    )
    before = state(running)
    for victim in (own, CPC10_UUID):
        for method, request, code in another_hosts_requests(victim, prepared.wwpns[0]):
            try:
                reply = getattr(running.stub, method)(request, timeout=T)
                assert code == grpc.StatusCode.OK, method
                assert reply.existed is False
            except grpc.RpcError as exc:
                assert exc.code() == code, method
    assert state(running) == before


def test_prepare_and_spawn_for_a_uuid_of_another_host_create_only_an_own_partition(running):
    before = state(running)
    running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc1', instance_uuid=CPC10_UUID, flavor=flavor()),
        timeout=T,
    )
    after = state(running)
    added = set(after) - set(before)
    assert added == {naming.partition_name('cpc1', CPC10_UUID)}
    assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.parametrize(
    'host', ['cpc1-', 'cpc', 'cpc1.*', '.*', 'cpc1|cpc10', 'cpc[0-9]+', 'OpenStack-cpc1']
)
def test_hosts_that_are_patterns_or_prefixes_are_unknown(running, host):
    before = state(running)
    running.log.clear()
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.ListInstances(pb.ListInstancesRequest(host=host), timeout=T)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError):
        running.stub.Destroy(pb.DestroyRequest(host=host, instance_uuid=CPC10_UUID), timeout=T)
    assert running.log.requests == []
    assert state(running) == before


def test_host_status_counts_only_own_partitions(running):
    status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc1'), timeout=T).status
    # LINUX01 (4 IFLs), "OpenStack-cpc1-backup" and cpc10's partition are not cpc1's.
    assert (status.vcpus_used, status.memory_mb_used, status.instance_count) == (0, 0, 0)
