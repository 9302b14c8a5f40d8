"""The storage-group path on a z14-class CPC: prepare, spawn, volumes, destroy, isolation."""

from __future__ import annotations

import grpc
import pytest
import zhmcclient
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import hmc_error
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import rejected

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import boot
from dpm_backend import naming

T = 20
HOST = 'sghost'
TARGET = '5005076810260382'
SG_PROFILES = ('2.14.1', '2.15.0', '2.16.0')
pytestmark = pytest.mark.parametrize('hmc_sim', SG_PROFILES, indirect=True, ids=lambda p: f'hmc{p}')


def _host(**kw) -> HostSpec:
    ports = tuple(f'{a}:0' for a in INVENTORY['fcp_z14'])
    return HostSpec(HOST, INVENTORY['z14'], mappings=ports, **kw)


@pytest.fixture
def sg(backend_factory):
    return backend_factory(
        [_host(), HostSpec('other', INVENTORY['z14'], mappings=_host().mappings)]
    )


def console(running):
    return running.hmc.consoles.lookup_by_oid(None)


def groups(running) -> dict:
    return {g.properties['name']: g for g in console(running).storage_groups.list()}


def volume(wwpns, lun=1, size=10, volume_id=None):
    message = boot_volume(list(wwpns), [TARGET], lun)
    message.volume_id = volume_id or new_uuid()
    message.size_gib = size
    return message


def spawn(running, instance_uuid, host=HOST, data=(), timeout=T):
    prepared = running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=host, instance_uuid=instance_uuid, flavor=flavor()),
        timeout=T,
    )
    request = pb.SpawnRequest(
        host=host,
        instance_uuid=instance_uuid,
        flavor=flavor(),
        nics=[nic(INVENTORY['vswitch_z14'], 'fa:16:3e:00:00:01')],
        boot_volume=volume(prepared.wwpns),
        data_volumes=[volume(prepared.wwpns, lun=2 + i) for i in range(len(data))],
    )
    for message, volume_id in zip(request.data_volumes, data, strict=True):
        message.volume_id = volume_id
    reply = running.stub.Spawn(request, timeout=timeout)
    return prepared, request, reply


def test_a_server_boots_from_its_storage_group_and_destroy_leaves_nothing(sg):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    prepared, request, reply = spawn(sg, instance_uuid)
    assert reply.info.partition_status == 'active'
    # The connector's WWPNs are the storage group's.
    group = groups(sg)[name]
    assert group.properties['description'] == 'OpenStack CPCSubset=sghost'
    assert (group.properties['type'], group.properties['shared']) == ('fcp', False)
    assert group.properties['max-partitions'] == 1 and group.properties['connectivity'] == 2
    vsrs = group.virtual_storage_resources.list()
    assert sorted(v.properties['world-wide-port-name'] for v in vsrs) == sorted(prepared.wwpns)
    # Exactly the boot volume, pinned to Cinder's target and LUN, booted from.
    (boot_sv,) = group.storage_volumes.list()
    assert boot_sv.properties['name'] == f'OpenStack-{request.boot_volume.volume_id}'
    assert boot_sv.properties['usage'] == 'boot' and boot_sv.properties['size'] == 10
    assert boot_sv.properties['fulfillment-state'] == 'complete'
    paths = {
        (p['target-world-wide-port-name'].lower(), p['logical-unit-number'])
        for p in boot_sv.properties['paths']
    }
    assert paths == {(TARGET, boot.lun_property(1))}
    (partition,) = [p for p in sg.cpc('z14').partitions.list() if p.name == name]
    assert partition.properties['boot-device'] == 'storage-volume'
    assert partition.properties['boot-storage-volume'] == boot_sv.uri
    assert partition.properties['storage-group-uris'] == [group.uri]
    assert partition.properties['hba-uris'] == []
    connector = sg.stub.GetVolumeConnector(
        pb.GetVolumeConnectorRequest(host=HOST, instance_uuid=instance_uuid), timeout=T
    )
    assert sorted(connector.wwpns) == sorted(prepared.wwpns)

    ids = {'host': HOST, 'instance_uuid': instance_uuid}
    sg.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    assert sg.stub.PowerOn(pb.PowerOnRequest(**ids), timeout=T).info.partition_status == 'active'
    destroyed = sg.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    # The group's WWPNs, read before its detach: Nova's connector after destroy.
    assert (destroyed.existed, list(destroyed.wwpns)) == (True, sorted(prepared.wwpns))
    assert name not in groups(sg)
    assert name not in {p.name for p in sg.cpc('z14').partitions.list()}
    again = sg.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert (again.existed, list(again.wwpns)) == (False, [])
    assert rejected(sg.sim.requests()) == []


def test_a_destroy_retried_after_the_partition_went_returns_the_groups_wwpns(backend_factory):
    """A destroy that failed between the partition's delete and the group's: its retry
    deletes the group and returns the WWPNs the group still holds."""
    fail_group_delete = FailOnce(
        lambda m, uri: uri.startswith('/api/storage-groups/') and uri.endswith('/operations/delete')
    )
    sg = backend_factory([_host()], interceptors=[fail_group_delete])
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    prepared, _, _ = spawn(sg, instance_uuid)
    ids = {'host': HOST, 'instance_uuid': instance_uuid}
    fail_group_delete.armed = True
    with pytest.raises(grpc.RpcError):
        sg.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert name not in {p.name for p in sg.cpc('z14').partitions.list()}
    assert name in groups(sg)
    reply = sg.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert (reply.existed, list(reply.wwpns)) == (True, sorted(prepared.wwpns))
    assert name not in groups(sg)


class FailOnce:
    """Interceptor: once armed, the first request ``matches`` accepts fails (HTTP 503)."""

    def __init__(self, matches) -> None:
        self.matches = matches
        self.armed = False

    def __call__(self, method, uri, proceed):
        if self.armed and self.matches(method, uri):
            self.armed = False
            raise hmc_error(503, 0, method, uri)
        return proceed()


def test_data_volumes_are_storage_volumes_added_and_removed(sg):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    at_spawn = new_uuid()
    prepared, _, _ = spawn(sg, instance_uuid, data=(at_spawn,))
    later = new_uuid()
    sg.stub.AttachVolume(
        pb.AttachVolumeRequest(
            host=HOST, instance_uuid=instance_uuid, volume=volume(prepared.wwpns, 7, 5, later)
        ),
        timeout=T,
    )
    volumes = {v.properties['name']: v for v in groups(sg)[name].storage_volumes.list()}
    assert volumes[f'OpenStack-{at_spawn}'].properties['usage'] == 'data'
    assert volumes[f'OpenStack-{later}'].properties['fulfillment-state'] == 'complete'
    assert len(volumes) == 3
    detach = pb.DetachVolumeRequest(host=HOST, instance_uuid=instance_uuid, volume_id=later)
    assert sg.stub.DetachVolume(detach, timeout=T).existed
    assert sg.stub.DetachVolume(detach, timeout=T).existed is False
    assert f'OpenStack-{later}' not in {
        v.properties['name'] for v in groups(sg)[name].storage_volumes.list()
    }
    assert rejected(sg.sim.requests()) == []


def test_a_spawn_whose_volume_the_san_does_not_show_fails_and_takes_back_what_it_made(sg):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    sg.sim.set_fabric({'open': False})  # the SAN shows nothing to the group's WWPNs
    with pytest.raises(grpc.RpcError) as caught:
        spawn(sg, instance_uuid, timeout=2)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert 'is not reachable from WWPN' in caught.value.details()
    # The partition and group prepare made stay (Nova destroys them); the volume went.
    assert groups(sg)[name].storage_volumes.list() == []
    partition = next(p for p in sg.cpc('z14').partitions.list() if p.name == name)
    assert partition.properties['storage-group-uris'] == []
    assert partition.properties['status'] == 'stopped'


def test_near_miss_storage_groups_are_never_touched(sg):
    instance_uuid = new_uuid()
    cpc_z14 = sg.cpc('z14').uri
    foreign = {
        'another host': naming.partition_name('other', instance_uuid),
        'prefix host': naming.partition_name(HOST + 'x', instance_uuid),
        'not OpenStack': f'Prod-{instance_uuid}',
    }
    other = zhmcclient.Client(sg.served.session())  # someone else on the same HMC
    for sg_name in foreign.values():
        other.consoles.console.storage_groups.create(
            {'name': sg_name, 'cpc-uri': cpc_z14, 'type': 'fcp', 'shared': False,
             'max-partitions': 1, 'connectivity': 1}
        )  # fmt: skip
    other.session.logoff()
    spawn(sg, instance_uuid)
    ids = {'host': HOST, 'instance_uuid': instance_uuid}
    sg.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert sorted(groups(sg)) == sorted(foreign.values())
    # OpenStack's very name on another CPC (put there directly: the simulator has
    # one storage-management CPC; another HMC user may name groups freely).
    clashing = new_uuid()
    clash = naming.partition_name(HOST, clashing)
    with sg.sim.lock:
        console(sg).storage_groups.add(
            {'name': clash, 'cpc-uri': sg.cpc('classic').uri, 'type': 'fcp', 'shared': False,
             'description': 'OpenStack CPCSubset=sghost'}
        )  # fmt: skip
    # Names are HMC-wide: the instance cannot get its group, and says why...
    with pytest.raises(grpc.RpcError) as caught:
        spawn(sg, clashing)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert 'storage group names are HMC-wide' in caught.value.details()
    # ...and its destroy leaves the other CPC's group alone.
    ids = {'host': HOST, 'instance_uuid': clashing}
    sg.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert groups(sg)[clash].properties['cpc-uri'] == sg.cpc('classic').uri
    assert sorted(groups(sg)) == sorted([*foreign.values(), clash])
