"""Storage groups on a z14 through a real zhmcclient Session: the Nova flow and its refusals."""

from __future__ import annotations

import copy

import pytest
import requests
import yaml
import zhmcclient
from sim.simtest import CPCZ13
from sim.simtest import CPCZ14
from sim.simtest import Z14_PARTITION
from sim.simtest import connect
from sim.simtest import rejected
from sim.simtest import wait_complete
from zhmcclient.mock import FakedSession

from dpm_hmc_sim.definition import shipped
from dpm_hmc_sim.storage import OPEN_TARGET

TARGET = '5005076810260382'  # a storage array port (the Ansible sample's)
LUN1 = '0001000000000000'  # SCSI LUN 1 as os-brick writes it for s390x
LUN2 = '0002000000000000'
SG_NAME = 'OpenStack-z14host-0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'


def error(raised: pytest.ExceptionInfo) -> tuple[int, int]:
    return raised.value.http_status, raised.value.reason


def z14(client: zhmcclient.Client) -> zhmcclient.Cpc:
    return client.cpcs.find(name=CPCZ14)


def new_partition(cpc: zhmcclient.Cpc, name: str = 'OS-SG') -> zhmcclient.Partition:
    return cpc.partitions.create(
        {'name': name, 'ifl-processors': 1, 'initial-memory': 1024, 'maximum-memory': 1024}
    )


def new_group(
    client: zhmcclient.Client, name: str = SG_NAME, *volumes: dict, **props
) -> zhmcclient.StorageGroup:
    body = {
        'name': name,
        'cpc-uri': z14(client).uri,
        'type': 'fcp',
        'shared': False,
        'max-partitions': 1,
        'connectivity': 2,
        'description': 'OpenStack CPCSubset=z14host',
        **props,
    }
    if volumes:
        body['storage-volumes'] = [{'operation': 'create', **volume} for volume in volumes]
    return client.consoles.console.storage_groups.create(body)


BOOT = {'name': 'boot', 'size': 10, 'usage': 'boot'}


def fresh(resource: zhmcclient.BaseResource, name: str):
    """A property as the HMC has it now (get_property answers from the local cache)."""
    resource.pull_full_properties()
    return resource.properties[name]


def wwpns(group: zhmcclient.StorageGroup) -> list[str]:
    group.pull_full_properties()
    return [e['world-wide-port-name'] for e in group.properties['unassigned-world-wide-port-names']]


def port(cpc: zhmcclient.Cpc, adapter: str = 'FCP-Z14') -> zhmcclient.Port:
    return cpc.adapters.find(name=adapter).ports.list()[0]


def discover(group: zhmcclient.StorageGroup) -> None:
    assert wait_complete(group.discover_fcp(wait_for_completion=False)) == ('complete', None)


def test_the_nova_flow_from_create_to_delete(serve):
    hmc = serve('2.16.0')
    client = connect(hmc)
    cpc = z14(client)
    group = new_group(client, SG_NAME, BOOT)

    # WWPNs as soon as the group exists: connectivity x max-partitions, lower case.
    group.pull_full_properties()
    pool = group.properties['unassigned-world-wide-port-names']
    assert [e['status'] for e in pool] == ['not-validated', 'not-validated']
    host_wwpns = [e['world-wide-port-name'] for e in pool]
    assert all(len(w) == 16 and w == w.lower() for w in host_wwpns)
    assert len(set(host_wwpns)) == 2
    assert group.properties['fulfillment-state'] == 'pending'
    assert group.properties['shared'] is False
    (volume,) = group.storage_volumes.list()
    assert volume.properties['fulfillment-state'] == 'pending'
    assert volume.properties['usage'] == 'boot'

    # Cinder masks the LUN to the group's WWPNs; discovery finds it.
    hmc.sim.set_fabric({'open': False})
    hmc.sim.expose_lun(TARGET, LUN1, size=10, host_wwpns=host_wwpns)
    discover(group)
    volume.pull_full_properties()
    assert volume.properties['fulfillment-state'] == 'complete'
    assert volume.properties['paths'] == [
        {
            'device-number': None,
            'partition-uri': None,
            'target-world-wide-port-name': TARGET,
            'logical-unit-number': LUN1,
        }
    ]
    group.pull_full_properties()
    assert group.properties['fulfillment-state'] == 'complete'
    assert {e['status'] for e in group.properties['unassigned-world-wide-port-names']} == {
        'validated'
    }
    ports = [port(cpc, 'FCP-Z14').uri, port(cpc, 'FCP-Z14-B').uri]
    assert group.properties['candidate-adapter-port-uris'] == ports
    report = group.get_connection_report()
    statuses = [
        config['volumes-configuration-status']
        for subsystem in report['fcp-storage-subsystems']
        for config in subsystem['storage-configurations']
    ]
    assert statuses == ['correct-volumes']

    # Pin the boot path, attach, boot.
    volume.indicate_fulfillment_fcp(TARGET.upper(), '1000000000000', port(cpc))
    part = new_partition(cpc)
    part.attach_storage_group(group)
    assert [g.uri for g in part.list_attached_storage_groups()] == [group.uri]
    assert [p.name for p in group.list_attached_partitions()] == ['OS-SG']
    vsrs = group.virtual_storage_resources.list(full_properties=True)
    assert sorted(v.properties['world-wide-port-name'] for v in vsrs) == sorted(host_wwpns)
    assert {v.properties['partition-uri'] for v in vsrs} == {part.uri}
    assert sorted(v.properties['device-number'] for v in vsrs) == ['0010', '0011']
    assert sorted(v.properties['adapter-port-uri'] for v in vsrs) == sorted(ports)
    assert {v.properties['world-wide-port-name-info']['status'] for v in vsrs} == {'validated'}
    assert wwpns(group) == []
    volume.pull_full_properties()
    assert sorted(p['device-number'] for p in volume.properties['paths']) == ['0010', '0011']

    part.update_properties({'boot-device': 'storage-volume', 'boot-storage-volume': volume.uri})
    assert wait_complete(part.start(wait_for_completion=False))[0] == 'complete'
    part.pull_full_properties()
    assert part.properties['status'] == 'active'

    # Destroy: stop, detach, delete the partition, delete the group.
    wait_complete(part.stop(wait_for_completion=False))
    part.detach_storage_group(group)
    assert group.virtual_storage_resources.list() == []
    assert sorted(wwpns(group)) == sorted(host_wwpns)  # the same WWPNs: zoning stays valid
    part.delete()
    group.delete()
    state = hmc.sim.dump()
    assert state['hmc_definition']['consoles'][0].get('storage_groups') is None
    assert state['storage']['volume-luns'] == {}
    assert rejected(hmc) == []


def test_a_duplicate_name_is_400_8(serve):
    client = connect(serve('2.16.0'))
    new_group(client, 'SG-A')
    with pytest.raises(zhmcclient.HTTPError) as duplicate:
        new_group(client, 'SG-A')
    assert error(duplicate) == (400, 8)
    other = new_group(client, 'SG-B')
    with pytest.raises(zhmcclient.HTTPError) as rename:
        other.update_properties({'name': 'SG-A'})
    assert error(rename) == (400, 8)
    assert [g.name for g in client.consoles.console.storage_groups.list()] == ['SG-A', 'SG-B']
    assert client.consoles.console.storage_groups.find(name='SG-B').uri == other.uri


@pytest.mark.parametrize(
    ('change', 'status'),
    [
        ({'type': 'eckd'}, (400, 8)),
        ({'connectivity': 0}, (400, 8)),
        ({'shared': True}, (400, 8)),  # shared with max-partitions 1
        ({'fulfillment-state': 'complete'}, (400, 6)),
        ({'storage-volumes': [{'operation': 'create', 'name': 'no-size'}]}, (400, 5)),
        ({'storage-volumes': [{'operation': 'create', 'size': 1, 'usage': 'swap'}]}, (400, 8)),
        ({'storage-volumes': [{'operation': 'delete', 'element-uri': '/api/x'}]}, (400, 8)),
    ],
)
def test_create_storage_group_checks_the_body(serve, change, status):
    hmc = serve('2.16.0')
    with pytest.raises(zhmcclient.HTTPError) as refused:
        new_group(connect(hmc), 'BAD', **change)
    assert error(refused) == status
    assert hmc.sim.dump()['hmc_definition']['consoles'][0].get('storage_groups') is None


def test_delete_while_attached_is_refused_and_detach_needs_a_stopped_partition(serve):
    client = connect(serve('2.16.0'))
    group = new_group(client, SG_NAME, BOOT)
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    with pytest.raises(zhmcclient.HTTPError) as attached:
        group.delete()
    assert error(attached) == (409, 100)
    with pytest.raises(zhmcclient.HTTPError) as partition_delete:
        part.delete()
    assert error(partition_delete) == (409, 100)

    # An active partition keeps its storage group (stricter of IBM's two readings).
    zos = z14(client).partitions.find(name=Z14_PARTITION)
    other = new_group(client, 'SG-ZOS', BOOT)
    zos.attach_storage_group(other)
    with pytest.raises(zhmcclient.HTTPError) as active:
        zos.detach_storage_group(other)
    assert error(active) == (409, 1)

    part.detach_storage_group(group)
    with pytest.raises(zhmcclient.HTTPError) as not_attached:
        part.detach_storage_group(group)
    assert error(not_attached) == (409, 101)
    part.delete()
    group.delete()


def test_attach_refuses_a_second_or_unshared_attachment(serve):
    client = connect(serve('2.16.0'))
    group = new_group(client, SG_NAME, BOOT)
    first, second = new_partition(z14(client), 'P1'), new_partition(z14(client), 'P2')
    first.attach_storage_group(group)
    for part in (first, second):
        with pytest.raises(zhmcclient.HTTPError) as refused:
            part.attach_storage_group(group)
        assert error(refused) == (409, 101)
    shared = new_group(client, 'SHARED', BOOT, shared=True, **{'max-partitions': 2})
    first.attach_storage_group(shared)
    second.attach_storage_group(shared)
    assert len(shared.virtual_storage_resources.list()) == 4
    assert sorted(p.name for p in shared.list_attached_partitions(name='P.*')) == ['P1', 'P2']
    assert shared.list_attached_partitions(status='active') == []


def test_a_cpc_without_storage_management_is_refused(serve):
    hmc = serve('2.15.0')
    client = connect(hmc)
    console = client.consoles.console
    for cpc in (CPCZ13, 'CPCCLAS'):
        body = {'name': 'SG-' + cpc, 'cpc-uri': client.cpcs.find(name=cpc).uri, 'type': 'fcp'}
        with pytest.raises(zhmcclient.HTTPError) as refused:
            console.storage_groups.create(body)
        assert error(refused) == (409, 5)
    z13_part = new_partition(client.cpcs.find(name=CPCZ13))
    for change in ({'boot-device': 'storage-volume'}, {'boot-storage-volume': '/api/x'}):
        with pytest.raises(zhmcclient.HTTPError) as boot:
            z13_part.update_properties(change)
        assert error(boot) == (409, 5)
    z13_part.pull_full_properties()
    (feature,) = [
        f
        for f in z13_part.properties['available-features-list']
        if f['name'] == 'dpm-storage-management'
    ]
    assert feature['state'] is False
    # HMC 2.15.0 (API 3.4) has storage groups on the z14.
    group = new_group(client, 'SG-Z14', BOOT)
    z14_part = new_partition(z14(client))
    z14_part.attach_storage_group(group)
    with pytest.raises(zhmcclient.HTTPError) as z13_attach:
        z13_part.attach_storage_group(group)
    assert error(z13_attach) == (409, 5)
    with pytest.raises(zhmcclient.HTTPError) as adapter_boot:
        z14_part.update_properties({'boot-device': 'storage-adapter'})
    assert error(adapter_boot) == (409, 5)


def _definition(version: str, api: str) -> dict:
    data = copy.deepcopy(yaml.safe_load(shipped()['2.14.1'].read_text()))
    data['hmc_definition']['api_version'] = api
    data['hmc_definition']['consoles'][0]['properties']['version'] = version
    return data


def test_an_hmc_api_before_2_37_has_no_fcp_discovery(serve):
    hmc = serve(_definition('2.14.1', '2.35'))
    client = connect(hmc)
    group = new_group(client, SG_NAME, BOOT)
    with pytest.raises(zhmcclient.HTTPError) as discovery:
        group.discover_fcp(wait_for_completion=False)
    assert error(discovery) == (404, 1)
    with pytest.raises(zhmcclient.HTTPError) as report:
        group.get_connection_report()
    assert error(report) == (404, 1)
    # The boot volume can still be fulfilled by hand and booted from.
    (volume,) = group.storage_volumes.list()
    volume.indicate_fulfillment_fcp(TARGET, LUN1, port(z14(client)))
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    part.update_properties({'boot-device': 'storage-volume', 'boot-storage-volume': volume.uri})


def test_an_hmc_api_before_2_23_has_no_storage_groups(serve):
    client = connect(serve(_definition('2.14.0', '2.20')))
    with pytest.raises(zhmcclient.HTTPError) as listing:
        client.consoles.console.storage_groups.list()
    assert error(listing) == (404, 1)
    part = new_partition(z14(client))
    with pytest.raises(zhmcclient.HTTPError) as field:
        part.update_properties({'boot-storage-volume': None})
    assert error(field) == (400, 6)
    with pytest.raises(zhmcclient.HTTPError) as device:
        part.update_properties({'boot-device': 'storage-volume'})
    assert error(device) == (400, 8)
    with pytest.raises(zhmcclient.HTTPError) as attach:
        client.session.post(
            part.uri + '/operations/attach-storage-group',
            body={'storage-group-uri': '/api/storage-groups/x'},
        )
    assert error(attach) == (404, 1)


def test_fulfill_fcp_checks_wwpn_lun_and_host_port(serve):
    hmc = serve('2.15.0')
    client = connect(hmc)
    group = new_group(client, SG_NAME, BOOT)
    (volume,) = group.storage_volumes.list()
    uri = volume.uri + '/operations/fulfill-fcp-storage-volume'
    good = {
        'world-wide-port-name': TARGET,
        'logical-unit-number': LUN1,
        'adapter-port-uri': port(z14(client)).uri,
    }
    z13_fcp = client.cpcs.find(name=CPCZ13).adapters.find(name='FCP-A')
    for change, status in (
        ({'world-wide-port-name': 'C05076FFFFFFFFFF'}, (400, 8)),
        ({'logical-unit-number': LUN1[1:]}, (400, 8)),
        ({'adapter-port-uri': z13_fcp.ports.list()[0].uri}, (400, 8)),
        ({'adapter-port-uri': port(z14(client)).uri + '9'}, (404, 2)),
        ({'boot': True}, (400, 6)),
    ):
        with pytest.raises(zhmcclient.HTTPError) as refused:
            client.session.post(uri, body={**good, **change})
        assert error(refused) == status, change
    client.session.post(uri, body=good)
    client.session.post(uri, body=good)  # the same again: accepted
    with pytest.raises(zhmcclient.HTTPError) as repin:
        volume.indicate_fulfillment_fcp(TARGET, LUN2, port(z14(client)))
    assert error(repin) == (409, 103)
    volume.pull_full_properties()
    assert volume.properties['fulfillment-state'] == 'complete'


def test_a_second_discovery_is_busy_unless_forced(serve):
    hmc = serve('2.16.0', discover_seconds=5)
    client = connect(hmc)
    group = new_group(client, SG_NAME, BOOT)
    first = group.discover_fcp(wait_for_completion=False)
    with pytest.raises(zhmcclient.HTTPError) as busy:
        group.discover_fcp(wait_for_completion=False)
    assert error(busy) == (409, 2)
    with pytest.raises(zhmcclient.HTTPError) as delete:
        group.delete()
    assert error(delete) == (409, 2)
    hmc.sim.configure(discover_seconds=0)
    second = group.discover_fcp(force_restart=True, wait_for_completion=False)
    with pytest.raises(zhmcclient.HTTPError) as ended:
        first.check_for_completion()
    assert error(ended) == (409, 2)
    assert second.check_for_completion() == ('complete', None)
    (volume,) = group.storage_volumes.list()
    assert fresh(volume, 'fulfillment-state') == 'complete'


def test_a_discovery_job_can_fail(serve):
    hmc = serve('2.16.0')
    group = new_group(connect(hmc), SG_NAME, BOOT)
    hmc.sim.set_outcome(SG_NAME, 'discover', 'job-error')
    with pytest.raises(zhmcclient.HTTPError) as failed:
        wait_complete(group.discover_fcp(wait_for_completion=False))
    assert error(failed) == (500, 263)
    assert group.storage_volumes.list()[0].get_property('fulfillment-state') == 'pending'


def test_an_open_fabric_fulfils_every_volume(serve):
    hmc = serve('2.16.0')
    client = connect(hmc)
    group = new_group(client, SG_NAME, BOOT, {'name': 'data', 'size': 20})
    discover(group)
    volumes = {v.name: v for v in group.storage_volumes.list(full_properties=True)}
    assert {v.properties['fulfillment-state'] for v in volumes.values()} == {'complete'}
    made_up = {v.properties['paths'][0]['target-world-wide-port-name'] for v in volumes.values()}
    assert made_up == {OPEN_TARGET}
    # Fulfilling the boot volume with Cinder's target replaces what discovery guessed.
    volumes['boot'].indicate_fulfillment_fcp(TARGET, LUN1, port(z14(client)))
    volumes['boot'].pull_full_properties()
    assert volumes['boot'].properties['paths'][0]['target-world-wide-port-name'] == TARGET
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    part.update_properties(
        {'boot-device': 'storage-volume', 'boot-storage-volume': volumes['boot'].uri}
    )
    wait_complete(part.start(wait_for_completion=False))
    assert fresh(part, 'status') == 'active'


def test_a_closed_fabric_leaves_unlisted_volumes_pending_and_a_missing_boot_lun_pauses(serve):
    hmc = serve('2.16.0', fabric={'open': False})
    client = connect(hmc)
    group = new_group(client, SG_NAME, BOOT, {'name': 'data', 'size': 20})
    host_wwpns = wwpns(group)
    hmc.sim.expose_lun(TARGET, LUN2, size=20, host_wwpns=host_wwpns[:1])
    hmc.sim.expose_lun(TARGET, '0003000000000000', size=10, host_wwpns=['c05076ffffffffff'])
    discover(group)
    states = {v.name: fresh(v, 'fulfillment-state') for v in group.storage_volumes.list()}
    assert states == {'boot': 'pending', 'data': 'complete'}
    group.pull_full_properties()
    assert [e['status'] for e in group.properties['unassigned-world-wide-port-names']] == [
        'validated',
        'not-validated',
    ]
    assert group.properties['fulfillment-state'] == 'pending'
    # Fulfilled by hand with a LUN the SAN does not give these WWPNs: the boot fails.
    boot = group.storage_volumes.find(name='boot')
    boot.indicate_fulfillment_fcp(TARGET, LUN1, port(z14(client)))
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    part.update_properties({'boot-device': 'storage-volume', 'boot-storage-volume': boot.uri})
    wait_complete(part.start(wait_for_completion=False))
    assert fresh(part, 'status') == 'paused'
    wait_complete(part.stop(wait_for_completion=False))
    hmc.sim.expose_lun(TARGET, LUN1, host_wwpns=host_wwpns)
    wait_complete(part.start(wait_for_completion=False))
    assert fresh(part, 'status') == 'active'


def test_validate_lun_path_answers_484_and_485(serve):
    hmc = serve('2.16.0', fabric={'open': False})
    client = connect(hmc)
    cpc = z14(client)
    host = 'c05076f000000001'
    hmc.sim.expose_lun(TARGET, LUN1, host_wwpns=[host])
    cpc.validate_lun_path(host, port(cpc), TARGET, LUN1)
    for target, lun, reason in ((TARGET, LUN2, 485), ('5005076810260399', LUN1, 484)):
        with pytest.raises(zhmcclient.HTTPError) as unreachable:
            cpc.validate_lun_path(host, port(cpc), target, lun)
        assert error(unreachable) == (409, reason)


def test_boot_needs_an_attached_fulfilled_volume(serve):
    client = connect(serve('2.16.0'))
    group = new_group(client, SG_NAME, BOOT)
    (volume,) = group.storage_volumes.list()
    part = new_partition(z14(client))
    change = {'boot-device': 'storage-volume', 'boot-storage-volume': volume.uri}
    with pytest.raises(zhmcclient.HTTPError) as unattached:
        part.update_properties(change)
    assert error(unattached) == (409, 102)
    with pytest.raises(zhmcclient.HTTPError) as no_volume:
        part.update_properties({'boot-storage-volume': group.uri + '/storage-volumes/nope'})
    assert error(no_volume) == (404, 2)
    part.attach_storage_group(group)
    part.update_properties(change)
    with pytest.raises(zhmcclient.HTTPError) as pending:
        part.start(wait_for_completion=False)
    assert error(pending) == (409, 102)
    discover(group)
    part.detach_storage_group(group)
    with pytest.raises(zhmcclient.HTTPError) as detached:
        part.start(wait_for_completion=False)
    assert error(detached) == (409, 102)
    part.attach_storage_group(group)
    wait_complete(part.start(wait_for_completion=False))
    assert fresh(part, 'status') == 'active'


def test_volumes_are_added_changed_and_removed_through_modify(serve):
    client = connect(serve('2.16.0'))
    group = new_group(client, SG_NAME, BOOT)
    discover(group)
    assert fresh(group, 'fulfillment-state') == 'complete'
    data = group.storage_volumes.create({'name': 'data', 'size': 5})
    group.pull_full_properties()
    assert group.properties['fulfillment-state'] == 'pending'
    assert len(group.properties['storage-volume-uris']) == 2
    assert fresh(data, 'usage') == 'data'
    discover(group)
    data.update_properties({'size': 6, 'description': 'grown'})
    data.pull_full_properties()
    assert (data.properties['fulfillment-state'], data.properties['size']) == ('pending', 6.0)
    data.delete()
    group.pull_full_properties()
    assert group.properties['storage-volume-uris'] == [group.storage_volumes.list()[0].uri]
    # The boot volume of a partition stays as long as the partition boots from it.
    boot = group.storage_volumes.find(name='boot')
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    part.update_properties({'boot-device': 'storage-volume', 'boot-storage-volume': boot.uri})
    with pytest.raises(zhmcclient.HTTPError) as in_use:
        boot.delete()
    assert error(in_use) == (409, 100)
    with pytest.raises(zhmcclient.HTTPError) as extra:
        data_again = {'operation': 'create', 'size': 1, 'model': '3'}
        group.update_properties({'storage-volumes': [data_again]})
    assert error(extra) == (400, 6)
    assert len(group.storage_volumes.list()) == 1


def test_connectivity_change_resizes_the_wwpn_pool_and_needs_discovery(serve):
    client = connect(serve('2.16.0'))
    group = new_group(client, SG_NAME, BOOT)
    discover(group)
    group.update_properties({'connectivity': 4})
    group.pull_full_properties()
    assert len(group.properties['unassigned-world-wide-port-names']) == 4
    assert group.properties['fulfillment-state'] == 'pending'
    discover(group)
    assert fresh(group, 'fulfillment-state') == 'complete'


def test_a_vsr_device_number_can_be_changed(serve):
    client = connect(serve('2.16.0'))
    group = new_group(client, SG_NAME, BOOT)
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    first, second = group.virtual_storage_resources.list()
    first.update_properties({'device-number': '1f00'})
    assert fresh(first, 'device-number') == '1f00'
    for devno in ('1F00', fresh(second, 'device-number')):
        with pytest.raises(zhmcclient.HTTPError) as refused:
            first.update_properties({'device-number': devno})
        assert error(refused) == (400, 8)


def test_lists_filter_by_name_and_refuse_2_17_parameters(serve):
    hmc = serve('2.16.0')
    client = connect(hmc)
    new_group(client, 'OpenStack-a', BOOT)
    new_group(client, 'Other', BOOT)
    console = client.consoles.console
    listed = console.storage_groups.list(filter_args={'name': 'OpenStack-.*'})
    assert [g.name for g in listed] == ['OpenStack-a']
    group = listed[0]
    with pytest.raises(zhmcclient.HTTPError) as refused:
        group.storage_volumes.list(additional_properties=['uuid'])
    assert error(refused) == (400, 1)


def test_state_dump_and_admin_interface_show_storage(serve):
    hmc = serve('2.16.0')
    client = connect(hmc)
    group = new_group(client, SG_NAME, BOOT)
    part = new_partition(z14(client))
    part.attach_storage_group(group)
    discover(group)

    admin = f'https://{hmc.host}:{hmc.port}/_sim/'
    posted = requests.post(
        admin + 'fabric/luns',
        json={'target-world-wide-port-name': TARGET, 'logical-unit-number': LUN1},
        verify=hmc.ca_file,
        timeout=10,
    )
    assert posted.status_code == 200
    assert posted.json()['luns'] == [
        {'target-world-wide-port-name': TARGET, 'logical-unit-number': LUN1}
    ]
    bad = requests.post(admin + 'fabric', json={'open': 'yes'}, verify=hmc.ca_file, timeout=10)
    assert bad.status_code == 400
    state = requests.get(admin + 'state', verify=hmc.ca_file, timeout=10).json()
    (dumped,) = state['hmc_definition']['consoles'][0]['storage_groups']
    assert dumped['properties']['name'] == SG_NAME
    assert len(dumped['virtual_storage_resources']) == 2
    assert list(state['storage']['volume-luns']) == [group.storage_volumes.list()[0].uri]

    # The HMC part loads in zhmcclient's mock again, attachments and all.
    loaded = FakedSession.from_hmc_dict(hmc.sim.dump(jobs=False)).hmc
    (reloaded,) = loaded.consoles.console.storage_groups.list()
    assert len(reloaded.properties['virtual-storage-resource-uris']) == 2
    assert loaded.lookup_by_uri(part.uri).properties['storage-group-uris'] == [group.uri]

    hmc.sim.reset()
    assert client.consoles.console.storage_groups.list() == []
    assert hmc.sim.fabric['luns']  # the SAN is configuration: it survives reset
