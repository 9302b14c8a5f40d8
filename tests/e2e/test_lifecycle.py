"""Whole instance lifecycles over a real unix socket, checked on the simulated HMC's objects."""

from __future__ import annotations

import copy

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import rejected

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import cmdline
from dpm_backend import naming

TARGET = '500507680B2142E5'
T = 10  # seconds of deadline for each call


def snapshot(running, key='z13') -> dict[str, dict]:
    """Every partition with its properties, NICs and HBAs, deep-copied."""
    result = {}
    for partition in running.cpc(key).partitions.list():
        result[partition.properties['object-uri']] = {
            'properties': copy.deepcopy(dict(partition.properties)),
            'nics': [copy.deepcopy(dict(n.properties)) for n in partition.nics.list()],
            'hbas': [copy.deepcopy(dict(h.properties)) for h in partition.hbas.list()],
        }
    return result


def prepare(running, host, instance_uuid, fl=None):
    return running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=host, instance_uuid=instance_uuid, flavor=fl or flavor()),
        timeout=T,
    )


def spawn_request(host, instance_uuid, wwpns, nics, fl=None, targets=(TARGET,), lun=1):
    return pb.SpawnRequest(
        host=host,
        instance_uuid=instance_uuid,
        flavor=fl or flavor(),
        nics=nics,
        boot_volume=boot_volume(list(wwpns), list(targets), lun),
    )


def spawn(running, host='cpc1', nics=None, fl=None, instance_uuid=None):
    instance_uuid = instance_uuid or new_uuid()
    prepared = prepare(running, host, instance_uuid, fl)
    nics = (
        nics
        if nics is not None
        else [
            nic(INVENTORY['vswitch_osa1'], 'fa:16:3e:00:00:01'),
            nic(INVENTORY['vswitch_hs'], 'fa:16:3e:00:00:02'),
        ]
    )
    reply = running.stub.Spawn(
        spawn_request(host, instance_uuid, prepared.wwpns, nics, fl), timeout=T
    )
    return instance_uuid, prepared, reply, nics


def test_spawn_builds_the_partition_exactly_as_networking_dpm_and_the_guest_expect(running):
    before = snapshot(running)
    instance_uuid, prepared, reply, nics = spawn(running, fl=flavor(3, 6144))

    name = f'OpenStack-cpc1-{instance_uuid}'
    partitions = running.partitions()
    partition = partitions[name]
    props = partition.properties
    assert props['description'] == 'OpenStack CPCSubset=cpc1'
    assert props['ifl-processors'] == 3
    assert props['initial-memory'] == props['maximum-memory'] == 6144
    assert props['status'] == 'active'

    hbas = {h.properties['name']: h.properties for h in partition.hbas.list()}
    expected_hbas = {f'OpenStack_Port_{a}_0': a for a in INVENTORY['fcp']}
    assert set(hbas) == set(expected_hbas)
    for hba_name, adapter in expected_hbas.items():
        # The original's vHBA description, with its space after '='.
        assert hbas[hba_name]['description'] == 'OpenStack CPCSubset= cpc1'
        assert hbas[hba_name]['adapter-port-uri'] == f'/api/adapters/{adapter}/storage-ports/0'
    assert sorted(prepared.wwpns) == sorted(h['wwpn'].lower() for h in hbas.values())

    nic_props = {n.properties['name']: n.properties for n in partition.nics.list()}
    assert list(nic_props) == [f'OpenStack_Port_{n.port_id}' for n in nics]
    first, second = (nic_props[f'OpenStack_Port_{n.port_id}'] for n in nics)
    assert first['description'] == 'OpenStack mac=fa:16:3e:00:00:01, CPCSubset=cpc1'
    assert second['description'] == 'OpenStack mac=fa:16:3e:00:00:02, CPCSubset=cpc1'
    assert first['virtual-switch-uri'] == f'/api/virtual-switches/{INVENTORY["vswitch_osa1"]}'

    # Tokens carry each NIC's device number and its virtual switch's real port.
    expected_cmdline = (
        f'{first["device-number"]},1,fa163e000001; {second["device-number"]},0,fa163e000002;'
    )
    assert props['boot-os-specific-parameters'] == expected_cmdline
    assert reply.boot_os_specific_parameters == expected_cmdline

    boot_hba = hbas[f'OpenStack_Port_{INVENTORY["fcp"][0]}_0']
    assert props['boot-device'] == 'storage-adapter'
    assert props['boot-storage-device'] == boot_hba['element-uri']
    assert props['boot-world-wide-port-name'] == TARGET.lower()
    # Cinder's LUN 1 as the 8-byte FCP LUN (os-brick's s390x form).
    assert props['boot-logical-unit-number'] == '0001000000000000'

    assert reply.info.power_state == pb.POWER_STATE_RUNNING
    assert reply.info.partition_name == name
    # Nothing else on the CPC changed.
    after = snapshot(running)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == len(before) + 1


def test_full_lifecycle_changes_only_the_instance_partition(running):
    before = snapshot(running)
    instance_uuid, _, _, _ = spawn(running)
    ids = {'host': 'cpc1', 'instance_uuid': instance_uuid}
    name = naming.partition_name('cpc1', instance_uuid)

    def status():
        return running.partitions()[name].properties['status']

    info = running.stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=T).info
    assert (info.power_state, info.vcpus, info.memory_mb) == (pb.POWER_STATE_RUNNING, 2, 2048)

    listed = running.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
    assert [(i.instance_uuid, i.power_state) for i in listed.instances] == [
        (instance_uuid, pb.POWER_STATE_RUNNING)
    ]

    off = running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    assert off.info.power_state == pb.POWER_STATE_SHUTDOWN and status() == 'stopped'
    # Idempotent: a stopped partition stays stopped (the original failed with 409).
    running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    assert status() == 'stopped'

    on = running.stub.PowerOn(pb.PowerOnRequest(**ids), timeout=T)
    assert on.info.power_state == pb.POWER_STATE_RUNNING and status() == 'active'
    running.stub.PowerOn(pb.PowerOnRequest(**ids), timeout=T)
    assert status() == 'active'

    running.log.clear()
    running.stub.Reboot(pb.RebootRequest(**ids), timeout=T)
    operations = [uri.rsplit('/', 1)[-1] for m, uri in running.log.requests if m == 'POST']
    assert operations == ['stop', 'start'] and status() == 'active'

    # Hard reboot of a stopped instance starts it (no 409 as in the original).
    running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    running.stub.Reboot(pb.RebootRequest(**ids), timeout=T)
    assert status() == 'active'

    assert running.stub.Destroy(pb.DestroyRequest(**ids), timeout=T).existed is True
    assert name not in running.partitions()
    assert running.stub.Destroy(pb.DestroyRequest(**ids), timeout=T).existed is False
    assert snapshot(running) == before
    # Every request of the lifecycle is one this HMC version accepts.
    assert rejected(running.sim.requests()) == []
    assert {r.status for r in running.sim.requests()} <= {200, 201, 202, 204}

    with pytest.raises(grpc.RpcError) as caught:
        running.stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=T)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    for call, request in (
        (running.stub.PowerOn, pb.PowerOnRequest(**ids)),
        (running.stub.PowerOff, pb.PowerOffRequest(**ids)),
        (running.stub.Reboot, pb.RebootRequest(**ids)),
        (running.stub.GetVolumeConnector, pb.GetVolumeConnectorRequest(**ids)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=T)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_paused_partition_is_stopped_then_started_on_power_on(running):
    instance_uuid, _, _, _ = spawn(running)
    name = naming.partition_name('cpc1', instance_uuid)
    faked = running.partitions()[name]
    faked.properties['status'] = 'paused'  # what an in-guest "shutdown -P" leaves
    ids = {'host': 'cpc1', 'instance_uuid': instance_uuid}

    info = running.stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=T).info
    assert info.power_state == pb.POWER_STATE_SHUTDOWN and info.partition_status == 'paused'

    running.log.clear()
    running.stub.PowerOn(pb.PowerOnRequest(**ids), timeout=T)
    operations = [uri.rsplit('/', 1)[-1] for m, uri in running.log.requests if m == 'POST']
    assert operations == ['stop', 'start']
    assert faked.properties['status'] == 'active'


@pytest.mark.parametrize(
    ('status', 'state'),
    [
        ('active', pb.POWER_STATE_RUNNING),
        ('degraded', pb.POWER_STATE_RUNNING),
        ('stopped', pb.POWER_STATE_SHUTDOWN),
        ('terminated', pb.POWER_STATE_SHUTDOWN),
        ('paused', pb.POWER_STATE_SHUTDOWN),
        # Nothing could be reserved: nothing runs.
        ('reservation-error', pb.POWER_STATE_SHUTDOWN),
        # The SE or HMC lost touch: unknown, never a crash Nova would act on.
        ('status-check', pb.POWER_STATE_UNSPECIFIED),
        ('communications-not-active', pb.POWER_STATE_UNSPECIFIED),
    ],
)
def test_every_steady_hmc_status_maps_to_a_power_state(running, status, state):
    instance_uuid = new_uuid()
    prepare(running, 'cpc1', instance_uuid)
    running.partitions()[naming.partition_name('cpc1', instance_uuid)].properties['status'] = status
    reply = running.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
    assert [(i.partition_status, i.power_state) for i in reply.instances] == [(status, state)]


def test_retried_prepare_and_spawn_converge_on_one_partition(running):
    instance_uuid = new_uuid()
    first = prepare(running, 'cpc1', instance_uuid)
    second = prepare(running, 'cpc1', instance_uuid)
    assert first.wwpns == second.wwpns
    nics = [nic(INVENTORY['vswitch_osa0'])]
    request = spawn_request('cpc1', instance_uuid, first.wwpns, nics)
    one = running.stub.Spawn(request, timeout=T)
    running.log.clear()
    two = running.stub.Spawn(request, timeout=T)
    assert two.boot_os_specific_parameters == one.boot_os_specific_parameters
    # The retry found the active partition and changed nothing.
    assert all(method == 'GET' for method, _ in running.log.requests)
    owned = [n for n in running.partitions() if instance_uuid in n]
    assert owned == [naming.partition_name('cpc1', instance_uuid)]
    partition = running.partitions()[owned[0]]
    assert len(partition.nics.list()) == 1 and len(partition.hbas.list()) == 2


def test_spawn_without_prepare_creates_the_partition_too(running):
    instance_uuid = new_uuid()
    # The frontend always prepares first; a spawn alone must still converge.
    request = spawn_request('cpc1', instance_uuid, ['affeaffe00008000'], [])
    reply = running.stub.Spawn(request, timeout=T)
    assert reply.info.partition_status == 'active'
    assert reply.boot_os_specific_parameters == ''


def test_spawn_that_fails_rolls_back_the_nics_it_created(running):
    instance_uuid = new_uuid()
    prepared = prepare(running, 'cpc1', instance_uuid)
    name = naming.partition_name('cpc1', instance_uuid)
    # The boot volume is not reachable from the boot vHBA: the boot step fails
    # after the NICs were created.
    request = spawn_request(
        'cpc1',
        instance_uuid,
        ['c05076ffe5000001'],
        [nic(INVENTORY['vswitch_osa0']), nic(INVENTORY['vswitch_hs'], 'fa:16:3e:00:00:09')],
    )
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.Spawn(request, timeout=T)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    partition = running.partitions()[name]
    assert partition.nics.list() == []
    assert partition.properties['status'] == 'stopped'
    # The prepared partition and its vHBAs stay: Nova holds their connector.
    assert sorted(h.properties['wwpn'].lower() for h in partition.hbas.list()) == sorted(
        prepared.wwpns
    )


def test_spawn_without_prepare_that_fails_leaves_no_partition(running):
    before = snapshot(running)
    instance_uuid = new_uuid()
    request = spawn_request(
        'cpc1', instance_uuid, ['c05076ffe5000001'], [nic(INVENTORY['vswitch_osa0'])]
    )
    with pytest.raises(grpc.RpcError):
        running.stub.Spawn(request, timeout=T)
    assert snapshot(running) == before


def test_unknown_virtual_switch_fails_before_any_nic_is_created(running):
    instance_uuid = new_uuid()
    prepared = prepare(running, 'cpc1', instance_uuid)
    bogus = '00000000-0000-4000-8000-000000000000'
    request = spawn_request('cpc1', instance_uuid, prepared.wwpns, [nic(bogus)])
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.Spawn(request, timeout=T)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert 'virtual switch' in caught.value.details()
    assert not any(m == 'POST' and uri.endswith('/nics') for m, uri in running.log.requests)


def test_boot_target_is_chosen_from_the_first_mapping_skipping_ignored_targets(
    backend_factory,
):
    from dpmtest import HostSpec

    ignored = 'C05076FFE5000010'
    host = HostSpec(
        'cpc1',
        INVENTORY['z13'],
        mappings=tuple(f'{a}:0' for a in reversed(INVENTORY['fcp'])),
        ignore=(f'0x{ignored}',),
    )
    running = backend_factory([host])
    instance_uuid = new_uuid()
    prepared = prepare(running, 'cpc1', instance_uuid)
    name = naming.partition_name('cpc1', instance_uuid)
    hbas = {h.properties['name']: h.properties for h in running.partitions()[name].hbas.list()}
    boot_hba = hbas[f'OpenStack_Port_{INVENTORY["fcp"][1]}_0']
    other = hbas[f'OpenStack_Port_{INVENTORY["fcp"][0]}_0']
    volume = pb.FcBootVolume(
        target_lun=0x4001,
        initiator_target_map=[
            pb.InitiatorTargets(initiator_wwpn=other['wwpn'], target_wwpns=['500507680b000001']),
            # Cinder drivers differ in case and 0x prefix: both sides are normalised.
            pb.InitiatorTargets(
                initiator_wwpn='0x' + boot_hba['wwpn'].upper(),
                target_wwpns=[ignored.lower(), '0x500507680B000002'],
            ),
        ],
    )
    running.stub.Spawn(
        pb.SpawnRequest(
            host='cpc1',
            instance_uuid=instance_uuid,
            flavor=flavor(),
            boot_volume=volume,
        ),
        timeout=T,
    )
    props = running.partitions()[name].properties
    assert props['boot-storage-device'] == boot_hba['element-uri']
    assert props['boot-world-wide-port-name'] == '500507680b000002'
    assert props['boot-logical-unit-number'] == '4001000000000000'
    assert sorted(prepared.wwpns) == sorted(h['wwpn'].lower() for h in hbas.values())


def test_twelve_nics_fit_the_kernel_command_line(running):
    nics = [nic(INVENTORY['vswitch_osa0'], f'fa:16:3e:00:01:{index:02x}') for index in range(12)]
    _, _, reply, _ = spawn(running, nics=nics)
    value = reply.boot_os_specific_parameters
    assert len(value.split()) == 12 and len(value) <= cmdline.MAX_LENGTH


def test_capacity_of_the_cpc_subset_is_enforced(running):
    # cpc10: 4 processors, 8192 MiB; the foreign cpc10 partition in the mock HMC
    # is another cloud's and counts too, as it is named for this host.
    status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc10'), timeout=T)
    assert (status.status.vcpus_used, status.status.memory_mb_used) == (2, 4096)
    prepare(running, 'cpc10', new_uuid(), flavor(2, 2048))
    before = snapshot(running)
    for too_big in (flavor(1, 4096), flavor(3, 512)):
        with pytest.raises(grpc.RpcError) as caught:
            prepare(running, 'cpc10', new_uuid(), too_big)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert snapshot(running) == before
    # The limits are per host: cpc1 on the same CPC still has room.
    prepare(running, 'cpc1', new_uuid(), flavor(3, 4096))


def test_host_status_reports_subset_usage_and_hypervisor_facts(running):
    spawn(running, fl=flavor(2, 3072))
    status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc1'), timeout=T).status
    assert status.cpc_name == 'CPCZ13' and status.cpc_object_id == INVENTORY['z13']
    assert (status.hypervisor_type, status.hypervisor_version, status.cpu_arch) == (
        'PRSM',
        2013001,
        's390x',
    )
    assert status.storage_path == pb.STORAGE_PATH_VHBA
    assert (status.vcpus_total, status.vcpus_used) == (8, 2)
    assert (status.memory_mb_total, status.memory_mb_used) == (16384, 3072)
    assert status.instance_count == 1


def test_storage_management_cpc_gets_a_storage_group_instead_of_vhbas(running):
    status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='z14host'), timeout=T)
    assert status.status.storage_path == pb.STORAGE_PATH_STORAGE_GROUPS
    instance_uuid = new_uuid()
    prepared = prepare(running, 'z14host', instance_uuid)
    name = naming.partition_name('z14host', instance_uuid)
    partition = running.partitions('z14')[name]
    assert partition.hbas.list() == []  # no Create HBA is sent (the HMC refuses it there)
    (group,) = [
        g
        for g in running.hmc.consoles.lookup_by_oid(None).storage_groups.list()
        if g.properties['name'] == name
    ]
    pool = group.properties['unassigned-world-wide-port-names']
    wwpns = [entry['world-wide-port-name'] for entry in pool]
    assert sorted(prepared.wwpns) == sorted(wwpns)


def test_classic_mode_cpc_is_refused(running):
    for call in (
        lambda: running.stub.GetHostStatus(pb.GetHostStatusRequest(host='classic'), timeout=T),
        lambda: prepare(running, 'classic', new_uuid(), flavor(1, 512)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert 'not in DPM mode' in caught.value.details()


def test_limits_larger_than_the_cpc_fail_the_host_checks(backend_factory):
    from dpmtest import HostSpec

    fcp = tuple(f'{a}:0' for a in INVENTORY['fcp'])
    running = backend_factory(
        [
            HostSpec('big', INVENTORY['z13'], max_processors=33, mappings=fcp),
            HostSpec('fat', INVENTORY['z13'], max_memory=524289, mappings=fcp),
        ]
    )
    for host, word in (('big', 'max_processors'), ('fat', 'max_memory')):
        with pytest.raises(grpc.RpcError) as caught:
            running.stub.GetHostStatus(pb.GetHostStatusRequest(host=host), timeout=T)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert word in caught.value.details()


def test_spawn_can_leave_the_partition_stopped_for_a_later_power_on(running):
    instance_uuid = new_uuid()
    prepared = prepare(running, 'cpc1', instance_uuid)
    request = spawn_request('cpc1', instance_uuid, prepared.wwpns, [nic(INVENTORY['vswitch_osa0'])])
    request.leave_stopped = True
    reply = running.stub.Spawn(request, timeout=T)
    name = naming.partition_name('cpc1', instance_uuid)
    partition = running.partitions()[name]
    assert reply.info.partition_status == 'stopped'
    assert partition.properties['status'] == 'stopped'
    assert len(partition.nics.list()) == 1
    assert partition.properties['boot-os-specific-parameters'] == reply.boot_os_specific_parameters
    # A retry converges; then the caller starts it.
    running.stub.Spawn(request, timeout=T)
    assert len(partition.nics.list()) == 1
    running.stub.PowerOn(pb.PowerOnRequest(host='cpc1', instance_uuid=instance_uuid), timeout=T)
    assert partition.properties['status'] == 'active'
