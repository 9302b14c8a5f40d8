"""Upgrade in place: partitions the original nova-dpm created are adopted by the backend.

The original's partitions are built request by request as its driver made them
(tests/original_nova_dpm.py, which cites its source), through a real
zhmcclient Session to the simulator; then the backend, serving the same host
names on the same HMC, lists them, reports their power state, stops, starts,
destroys them (returning their vHBAs' WWPNs, which Nova needs after destroy)
and, on a retried spawn, rewrites their command line and boot LUN in this
project's form.
"""

from __future__ import annotations

import copy

import original_nova_dpm as original
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import rejected

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming

HOST = 'cpc1'
TARGET = '500507680B2142E5'
LUN = 3
T = 10
MACS = ('fa:16:3e:0a:00:01', 'fa:16:3e:0a:00:02')
# OSA-A port 1 (a port the original wrote as 0) and HiperSockets (port 0).
VSWITCHES = (INVENTORY['vswitch_osa1'], INVENTORY['vswitch_hs'])


def build_original(served, instance_uuid: str, launch: bool = True) -> list[original.Port]:
    """The instance as the original nova-dpm left it on host cpc1 (2 IFLs, 2048 MiB)."""
    ports = [original.Port(new_uuid(), mac, vs) for mac, vs in zip(MACS, VSWITCHES, strict=True)]
    with original.logged_on(served) as client:
        original.build(
            client,
            INVENTORY['z13'],
            HOST,
            instance_uuid,
            vcpus=2,
            memory_mb=2048,
            adapter_ports=[(adapter, 0) for adapter in INVENTORY['fcp']],
            ports=ports,
            boot=original.Boot(TARGET, LUN),
            launch=launch,
        )
    # Only the backend's requests are judged (zhmcclient's own wait after the
    # original's start asks for ?properties=status, which HMC 2.14.1 refuses once).
    served.sim.clear_requests()
    return ports


def hmc_partition(running, instance_uuid: str):
    return running.partitions().get(naming.partition_name(HOST, instance_uuid))


def devices(partition) -> dict:
    """NICs and vHBAs by name with their URIs and properties (deep-copied)."""

    def by_name(elements) -> dict:
        return {e.properties['name']: copy.deepcopy(dict(e.properties)) for e in elements}

    return {'nics': by_name(partition.nics.list()), 'hbas': by_name(partition.hbas.list())}


def others(running, instance_uuid: str) -> dict:
    mine = naming.partition_name(HOST, instance_uuid)
    return {
        name: copy.deepcopy(dict(p.properties))
        for name, p in running.partitions().items()
        if name != mine
    }


def test_original_partition_has_the_original_contracts(running):
    """The helper builds what the original wrote: port 0 in every token, its LUN form."""
    instance_uuid = new_uuid()
    ports = build_original(running.served, instance_uuid)
    partition = hmc_partition(running, instance_uuid)
    props = partition.properties
    found = devices(partition)
    assert props['description'] == 'OpenStack CPCSubset=cpc1'
    assert (props['ifl-processors'], props['initial-memory'], props['maximum-memory']) == (
        2,
        2048,
        2048,
    )
    assert props['status'] == 'active'
    assert {n: h['description'] for n, h in found['hbas'].items()} == {
        f'OpenStack_Port_{a}_0': 'OpenStack CPCSubset= cpc1' for a in INVENTORY['fcp']
    }
    nics = [found['nics'][f'OpenStack_Port_{p.port_id}'] for p in ports]
    assert [n['description'] for n in nics] == [
        f'OpenStack mac={mac}, CPCSubset=cpc1' for mac in MACS
    ]
    assert props['boot-os-specific-parameters'] == (
        f' {nics[0]["device-number"]},0,fa163e0a0001; {nics[1]["device-number"]},0,fa163e0a0002;'
    )
    assert props['boot-logical-unit-number'] == '3'


def test_adopted_instance_is_listed_powered_and_destroyed_with_its_wwpns(running):
    instance_uuid = new_uuid()
    build_original(running.served, instance_uuid)
    untouched = others(running, instance_uuid)
    ids = {'host': HOST, 'instance_uuid': instance_uuid}
    partition = hmc_partition(running, instance_uuid)

    listed = running.stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=T).instances
    assert [(i.instance_uuid, i.power_state) for i in listed] == [
        (instance_uuid, pb.POWER_STATE_RUNNING)
    ]
    info = running.stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=T).info
    assert (info.power_state, info.vcpus, info.memory_mb, info.partition_name) == (
        pb.POWER_STATE_RUNNING,
        2,
        2048,
        partition.properties['name'],
    )

    off = running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T).info
    assert off.power_state == pb.POWER_STATE_SHUTDOWN
    assert hmc_partition(running, instance_uuid).properties['status'] == 'stopped'
    on = running.stub.PowerOn(pb.PowerOnRequest(**ids), timeout=T).info
    assert on.power_state == pb.POWER_STATE_RUNNING
    assert hmc_partition(running, instance_uuid).properties['status'] == 'active'
    # Power operations leave the original's configuration as it was.
    assert hmc_partition(running, instance_uuid).properties['boot-logical-unit-number'] == '3'

    wwpns = sorted(h.properties['wwpn'].lower() for h in partition.hbas.list())
    assert len(wwpns) == len(INVENTORY['fcp'])
    running.log.clear()
    reply = running.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert reply.existed is True
    assert list(reply.wwpns) == wwpns
    # Read before the delete: one GET of each vHBA, none after the partition's DELETE.
    requests = running.log.requests
    hba_gets = [i for i, (m, uri) in enumerate(requests) if m == 'GET' and '/hbas/' in uri]
    (delete,) = [i for i, (m, uri) in enumerate(requests) if (m, uri) == ('DELETE', partition.uri)]
    assert len(hba_gets) == len(wwpns) and max(hba_gets) < delete
    assert hmc_partition(running, instance_uuid) is None
    # NICs and vHBAs went with the partition; nothing else changed.
    assert others(running, instance_uuid) == untouched
    # A retried destroy finds nothing, so it has no WWPNs to return.
    again = running.stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    assert (again.existed, list(again.wwpns)) == (False, [])
    assert rejected(running.sim.requests()) == []


def test_destroy_reads_no_wwpns_the_caller_already_holds(running):
    instance_uuid = new_uuid()
    build_original(running.served, instance_uuid)
    running.log.clear()
    request = pb.DestroyRequest(host=HOST, instance_uuid=instance_uuid, wwpns_known=True)
    reply = running.stub.Destroy(request, timeout=T)
    assert (reply.existed, list(reply.wwpns)) == (True, [])
    assert not [uri for m, uri in running.log.requests if '/hbas/' in uri]
    # No GET of the partition either: its vHBA list was not needed.
    assert not [uri for m, uri in running.log.requests if m == 'GET' and '/partitions/' in uri]
    assert hmc_partition(running, instance_uuid) is None


def test_retried_spawn_rewrites_the_command_line_port_and_the_boot_lun(running):
    """A partition the original configured but never started (its spawn failed at
    launch): a retried spawn reuses its NICs and vHBAs and rewrites the command
    line with each virtual switch's real adapter port and the LUN in this
    project's form."""
    instance_uuid = new_uuid()
    ports = build_original(running.served, instance_uuid, launch=False)
    partition = hmc_partition(running, instance_uuid)
    before = devices(partition)
    nic_devnos = [before['nics'][f'OpenStack_Port_{p.port_id}']['device-number'] for p in ports]
    assert partition.properties['status'] == 'stopped'
    assert partition.properties['boot-os-specific-parameters'] == (
        f' {nic_devnos[0]},0,fa163e0a0001; {nic_devnos[1]},0,fa163e0a0002;'
    )
    wwpns = sorted(h['wwpn'].lower() for h in before['hbas'].values())

    reply = running.stub.Spawn(
        pb.SpawnRequest(
            host=HOST,
            instance_uuid=instance_uuid,
            flavor=flavor(2, 2048),
            nics=[nic(p.vswitch_object_id, p.mac, port_id=p.port_id) for p in ports],
            boot_volume=boot_volume(wwpns, [TARGET], LUN),
        ),
        timeout=T,
    )

    props = hmc_partition(running, instance_uuid).properties
    # OSA-A port 1 is port 1 now (the original wrote 0), HiperSockets stays 0;
    # no leading space; device numbers in lower case.
    expected = f'{nic_devnos[0].lower()},1,fa163e0a0001; {nic_devnos[1].lower()},0,fa163e0a0002;'
    assert props['boot-os-specific-parameters'] == expected
    assert reply.boot_os_specific_parameters == expected
    # Cinder's LUN 3 as the 8-byte FCP LUN (the original wrote "3").
    assert props['boot-logical-unit-number'] == '0003000000000000'
    boot_hba = before['hbas'][naming.hba_name(INVENTORY['fcp'][0], 0)]
    assert (props['boot-device'], props['boot-storage-device']) == (
        'storage-adapter',
        boot_hba['element-uri'],
    )
    assert props['boot-world-wide-port-name'] == TARGET.lower()
    assert (props['status'], reply.info.power_state) == ('active', pb.POWER_STATE_RUNNING)
    # The original's NICs and vHBAs were reused, none added or changed.
    assert devices(hmc_partition(running, instance_uuid)) == before

    reply = running.stub.Destroy(
        pb.DestroyRequest(host=HOST, instance_uuid=instance_uuid), timeout=T
    )
    assert list(reply.wwpns) == wwpns
    assert hmc_partition(running, instance_uuid) is None
    assert rejected(running.sim.requests()) == []
