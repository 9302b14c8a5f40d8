"""HMC rules beyond the mock: HBAs, read-only properties, deletion, unique ports."""

from __future__ import annotations

import uuid

import pytest
import zhmcclient
from sim.simtest import ACTIVE_PARTITION
from sim.simtest import CPCZ13
from sim.simtest import CPCZ14
from sim.simtest import STOPPED_PARTITION
from sim.simtest import Z14_PARTITION
from sim.simtest import connect
from sim.simtest import partition
from sim.simtest import rejected
from zhmcclient.mock import FakedSession

from dpm_hmc_sim import Simulator

OSA = '3e8f1b2c-5a6d-4c7e-8f90-1a2b3c4d5e01'
FCP_Z13 = '1d7c0a6e-4b2f-4f1a-8e3d-5a6b7c8d9e01'
FCP_Z14 = '1d7c0a6e-4b2f-4f1a-8e3d-5a6b7c8d9e11'
FCP_Z13_PORT = f'/api/adapters/{FCP_Z13}/storage-ports/0'


def new_partition(cpc: zhmcclient.Cpc, name: str) -> zhmcclient.Partition:
    return cpc.partitions.create(
        {'name': name, 'ifl-processors': 1, 'initial-memory': 1024, 'maximum-memory': 1024}
    )


@pytest.mark.parametrize('version', ['2.14.1', '2.15.0'])
def test_networking_dpm_finds_each_port_and_vswitch_once(serve, version):
    hmc = serve(version)
    cpc = connect(hmc).cpcs.find(name=CPCZ13)
    for adapter_name, port in (('OSA-A', 0), ('OSA-A', 1), ('HIPERSOCKETS-1', 0)):
        adapter = cpc.adapters.find(name=adapter_name)
        assert adapter.ports.find(**{'element-id': str(port)}).get_property('index') == port
        vswitch = cpc.virtual_switches.find(**{'backing-adapter-uri': adapter.uri, 'port': port})
        assert vswitch.get_property('port') == port
    fcp = cpc.adapters.find(name='FCP-A')
    assert len(fcp.ports.list()) == 1
    assert rejected(hmc) == []


def test_an_hba_on_a_storage_management_cpc_is_refused(serve):
    client = connect(serve('2.15.0'))
    z14 = new_partition(client.cpcs.find(name=CPCZ14), 'Z14-HBA')
    with pytest.raises(zhmcclient.HTTPError) as refused:
        z14.hbas.create(
            {'name': 'hba', 'adapter-port-uri': f'/api/adapters/{FCP_Z14}/storage-ports/0'}
        )
    assert (refused.value.http_status, refused.value.reason) == (409, 5)
    assert 'dpm-storage-management' in refused.value.message
    # On the z13 (no such feature) the same request creates the HBA.
    z13 = new_partition(client.cpcs.find(name=CPCZ13), 'Z13-HBA')
    hba = z13.hbas.create({'name': 'hba', 'adapter-port-uri': FCP_Z13_PORT})
    assert hba.get_property('wwpn')


@pytest.mark.parametrize('name', ['status', 'object-id', 'nic-uris', 'type'])
def test_read_only_partition_properties_are_refused(hmc, name):
    part = partition(connect(hmc), STOPPED_PARTITION)
    with pytest.raises(zhmcclient.HTTPError) as refused:
        part.update_properties({'description': 'ok', name: 'x'})
    assert (refused.value.http_status, refused.value.reason) == (400, 6)
    part.update_properties({'description': 'writable'})
    part.pull_full_properties()
    assert part.properties['description'] == 'writable'


def test_read_only_nic_properties_are_refused(hmc):
    part = partition(connect(hmc), STOPPED_PARTITION)
    vswitch = '/api/virtual-switches/5a9b2c3d-7e8f-4a1b-9c2d-3e4f5a6b7c01'
    nic = part.nics.create({'name': 'nic', 'virtual-switch-uri': vswitch})
    for name in ('element-id', 'type', 'class'):
        with pytest.raises(zhmcclient.HTTPError) as refused:
            nic.update_properties({name: 'x'})
        assert (refused.value.http_status, refused.value.reason) == (400, 6)
    nic.update_properties({'description': 'writable'})


def test_deleting_a_partition_deletes_its_nics_and_hbas(hmc):
    client = connect(hmc)
    cpc = client.cpcs.find(name=CPCZ13)
    part = new_partition(cpc, 'DOOMED')
    vswitch = cpc.virtual_switches.find(name='OSA-A port 0')
    nic = part.nics.create({'name': 'nic', 'virtual-switch-uri': vswitch.uri})
    hba = part.hbas.create({'name': 'hba', 'adapter-port-uri': FCP_Z13_PORT})
    assert nic.uri in vswitch.get_property('connected-vnic-uris')
    part.delete()
    for uri in (nic.uri, hba.uri, part.uri):
        with pytest.raises(zhmcclient.HTTPError) as gone:
            client.session.get(uri)
        assert (gone.value.http_status, gone.value.reason) == (404, 1)
    vswitch.pull_full_properties()
    assert nic.uri not in vswitch.get_property('connected-vnic-uris')
    with hmc.sim.lock:
        assert nic.uri not in hmc.sim.hmc.all_resources


def test_deleting_a_nic_takes_it_off_its_virtual_switch(hmc):
    client = connect(hmc)
    cpc = client.cpcs.find(name=CPCZ13)
    vswitch = cpc.virtual_switches.find(name='OSA-A port 1')
    nic = partition(client, STOPPED_PARTITION).nics.create(
        {'name': 'nic', 'virtual-switch-uri': vswitch.uri}
    )
    nic.delete()
    assert nic.uri not in vswitch.get_property('connected-vnic-uris')


def test_dump_round_trips_through_zhmcclients_loader(hmc):
    client = connect(hmc)
    cpc = client.cpcs.find(name=CPCZ13)
    part = new_partition(cpc, 'DUMPED')
    vswitch = cpc.virtual_switches.find(name='OSA-A port 0')
    nic = part.nics.create({'name': 'nic', 'virtual-switch-uri': vswitch.uri})
    part.hbas.create({'name': 'hba', 'adapter-port-uri': FCP_Z13_PORT})
    partition(client, STOPPED_PARTITION).start(wait_for_completion=False)

    state = hmc.sim.dump()
    assert [job['operation'] for job in state['jobs']] == ['start']
    loaded = FakedSession.from_hmc_dict(hmc.sim.dump(jobs=False)).hmc
    again = FakedSession.from_hmc_dict({'hmc_definition': state['hmc_definition']}).hmc
    for faked in (loaded, again):
        dumped = faked.lookup_by_uri(part.uri)
        assert dumped.properties['nic-uris'] == [nic.uri]
        assert len(dumped.properties['hba-uris']) == 1
        assert faked.lookup_by_uri(f'/api/adapters/{OSA}').properties['network-port-uris'] == [
            f'/api/adapters/{OSA}/network-ports/0',
            f'/api/adapters/{OSA}/network-ports/1',
        ]
        assert nic.uri in faked.lookup_by_uri(vswitch.uri).properties['connected-vnic-uris']


def test_reset_restores_the_definition_and_keeps_sessions(hmc):
    client = connect(hmc)
    cpc = client.cpcs.find(name=CPCZ14)
    new_partition(cpc, 'GONE-AFTER-RESET')
    hmc.sim.reset()
    assert [p.name for p in cpc.partitions.list()] == [Z14_PARTITION]
    assert hmc.sim.session_counts()['userids']['openstack']['logons'] == 1


def test_dump_carries_console_storage_groups_with_their_volumes():
    with Simulator('2.16.0', userid='u', password='p') as sim:
        with sim.lock:
            cpc = sim.hmc.cpcs.list()[0]
            group = sim.hmc.consoles.console.storage_groups.add(
                {'name': 'SG1', 'cpc-uri': cpc.uri, 'type': 'fcp'}
            )
            group.storage_volumes.add({'name': 'BOOT', 'size': 10, 'usage': 'boot'})
        loaded = FakedSession.from_hmc_dict(sim.dump(jobs=False)).hmc
    (reloaded,) = loaded.consoles.console.storage_groups.list()
    assert [volume.name for volume in reloaded.storage_volumes.list()] == ['BOOT']
    assert len(reloaded.properties['storage-volume-uris']) == 1


def test_new_partitions_get_object_ids_unique_on_the_hmc(hmc):
    client = connect(hmc)
    z13 = client.cpcs.find(name=CPCZ13)
    on_z13 = new_partition(z13, 'NEW-Z13')
    on_z14 = new_partition(client.cpcs.find(name=CPCZ14), 'NEW-Z14')
    # zc's mock alone numbers both /api/partitions/1; an HMC's object IDs are UUIDs.
    assert on_z13.uri != on_z14.uri
    uuid.UUID(on_z13.uri.rsplit('/', 1)[1])
    assert partition(client, 'NEW-Z14', CPCZ14).get_property('name') == 'NEW-Z14'
    body = {'ifl-processors': 1, 'initial-memory': 1024, 'maximum-memory': 1024}
    z13.partitions.create({'name': 'TYPED', 'type': 'linux', **body})
    with pytest.raises(zhmcclient.HTTPError) as refused:
        z13.partitions.create({'name': 'OWN-ID', 'object-id': 'mine', **body})
    assert (refused.value.http_status, refused.value.reason) == (400, 6)


def test_maximum_memory_changes_only_while_the_partition_is_stopped(hmc):
    """As IBM's module: processors and initial memory change on an active partition,
    maximum memory only on a stopped one (it stops the partition first)."""
    active = partition(connect(hmc), ACTIVE_PARTITION)
    active.pull_full_properties()
    maximum = active.properties['maximum-memory']
    with pytest.raises(zhmcclient.HTTPError) as refused:
        active.update_properties({'maximum-memory': maximum * 2})
    assert (refused.value.http_status, refused.value.reason) == (409, 1)
    # The same value is no change; processors and initial memory may change.
    active.update_properties({'maximum-memory': maximum, 'ifl-processors': 3})
    active.update_properties({'initial-memory': maximum})
    active.pull_full_properties()
    assert active.properties['maximum-memory'] == maximum
    assert active.properties['ifl-processors'] == 3

    stopped = partition(connect(hmc), STOPPED_PARTITION)
    stopped.update_properties({'initial-memory': 4096, 'maximum-memory': 4096})
    stopped.pull_full_properties()
    assert stopped.properties['maximum-memory'] == 4096
