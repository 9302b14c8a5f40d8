"""The backend side of moving an instance between hosts: resize in place, evacuate fencing.

A resize or cold migration asks the destination for a partition of the new
flavor (PrepareInstance, Spawn): an existing stopped partition converges on
it, a running one is left alone. An evacuation's Spawn may ask that the
instance's partitions of the backend's other hosts be stopped first, so
that one boot volume never runs in two partitions.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import rejected
from dpmtest import wait_for
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming

T = 10
TARGET = '500507680b2142e5'
SG_TARGET = '5005076810260382'
Z14_HOSTS = {'z14host'}
CPC_OF = {'cpc1': 'z13', 'cpc10': 'z13', 'small': 'z13', 'z14host': 'z14'}
SIZE_KEYS = ('ifl-processors', 'initial-memory', 'maximum-memory')


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    for detail in rpc_status.from_call(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError('no ErrorInfo')


def prepare(running, host, instance_uuid, fl):
    request = pb.PrepareInstanceRequest(host=host, instance_uuid=instance_uuid, flavor=fl)
    return running.stub.PrepareInstance(request, timeout=T)


def spawn_request(host, instance_uuid, wwpns, fl, boot_volume_id, **kw) -> pb.SpawnRequest:
    """A Spawn of the instance's one boot volume (the same one on every host)."""
    if host in Z14_HOSTS:
        volume = boot_volume(list(wwpns), [SG_TARGET])
        volume.volume_id, volume.size_gib = boot_volume_id, 10
        nics = [nic(INVENTORY['vswitch_z14'], port_id=instance_uuid)]
    else:
        volume = boot_volume(list(wwpns), [TARGET])
        nics = [nic(INVENTORY['vswitch_osa1'], port_id=instance_uuid)]
    return pb.SpawnRequest(
        host=host, instance_uuid=instance_uuid, flavor=fl, nics=nics, boot_volume=volume, **kw
    )


def spawn(running, host, instance_uuid, fl=None, prepared=None, timeout=T, **kw):
    fl = fl or flavor()
    prepared = prepared or prepare(running, host, instance_uuid, fl)
    request = spawn_request(host, instance_uuid, prepared.wwpns, fl, instance_uuid, **kw)
    return running.stub.Spawn(request, timeout=timeout)


def partition(running, host, instance_uuid):
    """The faked HMC's partition of the instance on the host (not copied)."""
    name = naming.partition_name(host, instance_uuid)
    with running.sim.lock:
        return running.partitions(CPC_OF[host])[name]


def sizes(running, host, instance_uuid) -> tuple[int, int, int]:
    props = partition(running, host, instance_uuid).properties
    return tuple(props[key] for key in SIZE_KEYS)


def status(running, host, instance_uuid) -> str:
    return partition(running, host, instance_uuid).properties['status']


def work(running) -> list[tuple[str, str]]:
    """The requests the client sent since the log was cleared, minus job polling."""
    return [(m, uri) for m, uri in running.log.requests if not uri.startswith('/api/jobs/')]


# --- Resize: PrepareInstance and Spawn converge on the flavor ------------------------------


def test_a_stopped_partition_is_resized_to_the_flavor_of_prepare_and_spawn(running):
    instance_uuid = new_uuid()
    ids = {'host': 'cpc1', 'instance_uuid': instance_uuid}
    spawn(running, 'cpc1', instance_uuid, flavor(2, 2048))
    running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    uri = partition(running, 'cpc1', instance_uuid).uri

    # The same flavor: the requests of any prepare, no update.
    running.log.clear()
    prepare(running, 'cpc1', instance_uuid, flavor(2, 2048))
    same = work(running)
    assert ('POST', uri) not in same

    # A bigger flavor: the same requests and one update of the sizes.
    running.log.clear()
    grown = prepare(running, 'cpc1', instance_uuid, flavor(4, 6144))
    assert sorted(work(running)) == sorted([*same, ('POST', uri)])
    assert sizes(running, 'cpc1', instance_uuid) == (4, 6144, 6144)
    assert (grown.info.vcpus, grown.info.memory_mb) == (4, 6144)
    assert status(running, 'cpc1', instance_uuid) == 'stopped'
    # The host's usage and the instance's info follow.
    host_status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc1'), timeout=T)
    assert (host_status.status.vcpus_used, host_status.status.memory_mb_used) == (4, 6144)
    info = running.stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=T).info
    assert (info.vcpus, info.memory_mb) == (4, 6144)

    # Spawn with a smaller flavor resizes the stopped partition and starts it.
    reply = spawn(running, 'cpc1', instance_uuid, flavor(1, 1024), prepared=grown)
    assert sizes(running, 'cpc1', instance_uuid) == (1, 1024, 1024)
    assert (reply.info.vcpus, reply.info.memory_mb) == (1, 1024)
    assert status(running, 'cpc1', instance_uuid) == 'active'
    assert rejected(running.sim.requests()) == []


def test_a_partition_in_reservation_error_is_resized_as_a_stopped_one(running):
    """Its resources could not be reserved: it runs nothing (see dpm_backend.power)."""
    instance_uuid = new_uuid()
    prepare(running, 'cpc1', instance_uuid, flavor(2, 2048))
    with running.sim.lock:
        partition(running, 'cpc1', instance_uuid).properties['status'] = 'reservation-error'
    prepare(running, 'cpc1', instance_uuid, flavor(1, 4096))
    assert sizes(running, 'cpc1', instance_uuid) == (1, 4096, 4096)
    assert rejected(running.sim.requests()) == []


def test_a_resize_the_subset_cannot_hold_changes_nothing(backend_factory):
    fcp = tuple(f'{a}:0' for a in INVENTORY['fcp'])
    running = backend_factory([HostSpec('small', INVENTORY['z13'], 4, 8192, mappings=fcp)])
    instance_uuid, neighbour = new_uuid(), new_uuid()
    prepare(running, 'small', neighbour, flavor(1, 1024))
    prepare(running, 'small', instance_uuid, flavor(2, 2048))
    for too_big, why in (
        (flavor(4, 2048), '2 more processors requested, 3 of 4 in use'),
        (flavor(2, 7169), '5121 MiB more requested, 3072 of 8192 MiB in use'),
    ):
        running.log.clear()
        with pytest.raises(grpc.RpcError) as refused:
            prepare(running, 'small', instance_uuid, too_big)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(refused.value).reason == 'HOST_CAPACITY_EXCEEDED'
        assert refused.value.details() == f'host small: {why}'
        assert [m for m, _ in running.log.requests] == ['GET'] * len(running.log.requests)
        assert sizes(running, 'small', instance_uuid) == (2, 2048, 2048)
    # Exactly what is left: the growth (1 processor, 5120 MiB) fits; a shrink always does.
    prepare(running, 'small', instance_uuid, flavor(3, 7168))
    assert sizes(running, 'small', instance_uuid) == (3, 7168, 7168)
    prepare(running, 'small', neighbour, flavor(1, 512))
    assert sizes(running, 'small', neighbour) == (1, 512, 512)


@pytest.mark.parametrize('now', ['active', 'paused', 'starting'])
def test_a_partition_that_is_not_stopped_keeps_its_sizes(running, now):
    instance_uuid = new_uuid()
    prepared = prepare(running, 'cpc1', instance_uuid, flavor(2, 2048))
    spawn(running, 'cpc1', instance_uuid, flavor(2, 2048), prepared=prepared)
    with running.sim.lock:
        # Paused: as an in-guest "shutdown -P" leaves it; starting: a start under way.
        partition(running, 'cpc1', instance_uuid).properties['status'] = now
    before = dict(partition(running, 'cpc1', instance_uuid).properties)

    for call in (
        lambda: prepare(running, 'cpc1', instance_uuid, flavor(3, 2048)),
        lambda: spawn(running, 'cpc1', instance_uuid, flavor(2, 4096), prepared=prepared),
    ):
        running.log.clear()
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        info = error_info(refused.value)
        assert (info.reason, info.metadata['partition_status']) == ('PARTITION_RUNNING', now)
        assert f'it is {now}, and its sizes change only while it is stopped' in (
            refused.value.details()
        )
        assert [m for m, _ in running.log.requests] == ['GET'] * len(running.log.requests)
        assert dict(partition(running, 'cpc1', instance_uuid).properties) == before

    # The same flavor is no resize: prepare answers as always.
    assert prepare(running, 'cpc1', instance_uuid, flavor(2, 2048)).info.vcpus == 2


@pytest.mark.parametrize('hmc_sim', ['2.15.0', '2.16.0'], indirect=True, ids=lambda p: f'hmc{p}')
def test_a_storage_group_partition_is_resized_while_stopped_only(backend_factory):
    """On a z14 (storage groups); HMC 2.16 lists the sizes with the partitions."""
    running = backend_factory(
        [HostSpec('z14host', INVENTORY['z14'], mappings=(f'{INVENTORY["fcp_z14"][0]}:0',))]
    )
    instance_uuid = new_uuid()
    ids = {'host': 'z14host', 'instance_uuid': instance_uuid}
    spawn(running, 'z14host', instance_uuid, flavor(2, 2048))
    with pytest.raises(grpc.RpcError) as refused:
        prepare(running, 'z14host', instance_uuid, flavor(3, 3072))
    assert error_info(refused.value).reason == 'PARTITION_RUNNING'
    assert sizes(running, 'z14host', instance_uuid) == (2, 2048, 2048)

    running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    running.log.clear()
    prepared = prepare(running, 'z14host', instance_uuid, flavor(2, 2048))
    same = work(running)
    running.log.clear()
    prepared = prepare(running, 'z14host', instance_uuid, flavor(3, 3072))
    uri = partition(running, 'z14host', instance_uuid).uri
    assert sorted(work(running)) == sorted([*same, ('POST', uri)])
    assert sizes(running, 'z14host', instance_uuid) == (3, 3072, 3072)
    reply = spawn(running, 'z14host', instance_uuid, flavor(3, 3072), prepared=prepared)
    assert (reply.info.partition_status, reply.info.vcpus, reply.info.memory_mb) == (
        'active',
        3,
        3072,
    )
    assert rejected(running.sim.requests()) == []


# --- Evacuate: the other hosts' partitions of the instance stopped first -------------------


def foreign_partition(running, cpc: str, name: str) -> None:
    """An active partition OpenStack did not create here (straight into the faked HMC)."""
    with running.sim.lock:
        running.cpc(cpc).partitions.add(
            {
                'name': name,
                'status': 'active',
                'type': 'linux',
                'ifl-processors': 1,
                'initial-memory': 1024,
                'maximum-memory': 1024,
            }
        )


def shape(method: str, uri: str) -> tuple[str, str]:
    """A request with the ids in its URI and the text of its query left out."""
    path, _, query = uri.partition('?')
    parts = ['{id}' if any(c.isdigit() for c in part) else part for part in path.split('/')]
    return method, '/'.join(parts) + ('?' + ','.join(sorted(parse_qs(query))) if query else '')


def record_index(records, method: str, uri: str) -> int:
    (index,) = [i for i, r in enumerate(records) if (r.method, r.uri) == (method, uri)]
    return index


def test_evacuate_stops_the_other_hosts_partition_before_the_start(running, caplog):
    """Hosts cpc1 and cpc10 share the z13: the instance runs on cpc1 and moves to cpc10."""
    moved, neighbour = new_uuid(), new_uuid()
    spawn(running, 'cpc1', moved)
    spawn(running, 'cpc1', neighbour)
    # Names that are not the instance's partition of a configured host.
    foreign = [f'OpenStack-cpc1x-{moved}', f'OpenStack-cpc1-{moved}-old', f'LINUX-{moved}']
    for name in foreign:
        foreign_partition(running, 'z13', name)
    source = partition(running, 'cpc1', moved).uri
    prepared = prepare(running, 'cpc10', moved, flavor())
    destination = partition(running, 'cpc10', moved).uri
    running.sim.clear_requests()
    running.log.clear()

    reply = spawn(running, 'cpc10', moved, prepared=prepared, stop_other_hosts_partitions=True)

    assert reply.info.partition_status == 'active'
    assert status(running, 'cpc1', moved) == 'stopped'
    records = running.sim.requests()
    stop = record_index(records, 'POST', f'{source}/operations/stop')
    start = record_index(records, 'POST', f'{destination}/operations/start')
    assert stop < start
    # The stop's job ended before the start was asked for.
    assert any(r.uri.startswith('/api/jobs/') for r in records[stop:start])
    # Nothing else was stopped: another instance, names of no configured host, LINUX01.
    assert status(running, 'cpc1', neighbour) == 'active'
    with running.sim.lock:
        z13 = running.partitions('z13')
        assert {name: z13[name].properties['status'] for name in [*foreign, 'LINUX01']} == {
            name: 'active' for name in [*foreign, 'LINUX01']
        }
    stops = [r.uri for r in records if r.uri.endswith('/operations/stop')]
    assert stops == [f'{source}/operations/stop']
    assert rejected(records) == []
    (warning,) = [r for r in caplog.records if r.name == 'dpm_backend.fencing']
    assert warning.levelname == 'WARNING'
    assert f"instance '{moved}' on host 'cpc10'" in warning.getMessage()
    assert f"partition OpenStack-cpc1-{moved} of host 'cpc1'" in warning.getMessage()


def test_evacuate_across_cpcs_lists_each_cpc_once(running):
    """The instance has partitions of cpc1 and cpc10 (z13); it moves to z14host (z14)."""
    moved = new_uuid()
    spawn(running, 'cpc1', moved)
    spawn(running, 'cpc10', moved)
    sources = [partition(running, host, moved).uri for host in ('cpc1', 'cpc10')]
    prepared = prepare(running, 'z14host', moved, flavor())
    destination = partition(running, 'z14host', moved).uri
    running.sim.clear_requests()
    running.log.clear()

    reply = spawn(running, 'z14host', moved, prepared=prepared, stop_other_hosts_partitions=True)

    assert reply.info.partition_status == 'active'
    assert [status(running, host, moved) for host in ('cpc1', 'cpc10')] == ['stopped'] * 2
    records = running.sim.requests()
    start = record_index(records, 'POST', f'{destination}/operations/start')
    for source in sources:
        assert record_index(records, 'POST', f'{source}/operations/stop') < start
    # Before the destination's own work: one List Partitions per CPC of the other hosts
    # (the z13 with both exact names at once, the classic CPC), then for each partition
    # stopped: Stop, the job's check and delete, and the read of its status.
    own = next(i for i, r in enumerate(records) if 'z14host' in r.uri)
    fencing = records[:own]
    lists = [
        (r.uri.split('?')[0], parse_qs(urlsplit(r.uri).query)['name'])
        for r in fencing
        if r.method == 'GET' and '/partitions?' in r.uri
    ]
    escaped = {host: re.escape(naming.partition_name(host, moved)) for host in CPC_OF}
    z13, classic = (f'/api/cpcs/{INVENTORY[key]}/partitions' for key in ('z13', 'classic'))
    assert lists == [
        (z13, [escaped['cpc1'], escaped['cpc10']]),
        (z13, [escaped['cpc1']]),
        (z13, [escaped['cpc10']]),
        (classic, [re.escape(naming.partition_name('classic', moved))]),
    ]
    assert len(fencing) == 2 + 2 * 4
    assert rejected(records) == []


def test_without_the_flag_no_other_host_is_looked_at(running):
    moved = new_uuid()
    spawn(running, 'cpc1', moved)
    prepared = prepare(running, 'cpc10', moved, flavor())
    running.log.clear()
    spawn(running, 'cpc10', moved, prepared=prepared)
    plain = work(running)
    assert status(running, 'cpc1', moved) == 'active'
    assert not [uri for _, uri in plain if uri.startswith(partition(running, 'cpc1', moved).uri)]
    assert not [uri for _, uri in plain if 'OpenStack%5C-cpc1%5C-' in uri or 'classic' in uri]


def test_the_flag_costs_one_list_per_cpc_when_nothing_runs_elsewhere(running):
    """The fencing's price: one List Partitions per CPC of the other hosts, nothing else."""
    plain, fenced = new_uuid(), new_uuid()
    spawn(running, 'cpc1', new_uuid())  # the CPC's facts and virtual switch ports cached
    counts = {}
    for instance_uuid, flag in ((plain, False), (fenced, True)):
        prepared = prepare(running, 'cpc1', instance_uuid, flavor())
        running.log.clear()
        spawn(running, 'cpc1', instance_uuid, prepared=prepared, stop_other_hosts_partitions=flag)
        counts[flag] = work(running)
    # First: one list each of cpc10's CPC (the z13), z14host's (z14) and classic's.
    extra = counts[True][:3]
    assert [uri.split('?')[0] for _, uri in extra] == [
        f'/api/cpcs/{INVENTORY[key]}/partitions' for key in ('z13', 'z14', 'classic')
    ]
    # Then what a spawn without the flag sends, request for request.
    assert [shape(*request) for request in counts[True][3:]] == [
        shape(*request) for request in counts[False]
    ]


# --- Evacuate faults: the other host's partition cannot be stopped ------------------------


def test_a_failed_stop_of_the_other_hosts_partition_fails_the_spawn(running):
    moved = new_uuid()
    spawn(running, 'cpc1', moved)
    running.sim.set_outcome(naming.partition_name('cpc1', moved), 'stop', 'job-error')
    prepared = prepare(running, 'cpc10', moved, flavor())
    destination = partition(running, 'cpc10', moved).uri
    running.sim.clear_requests()
    with pytest.raises(grpc.RpcError) as failed:
        spawn(running, 'cpc10', moved, prepared=prepared, stop_other_hosts_partitions=True)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(failed.value).reason == 'HMC_UNAVAILABLE'
    assert status(running, 'cpc10', moved) == 'stopped'
    assert status(running, 'cpc1', moved) == 'active'
    records = running.sim.requests()
    source = partition(running, 'cpc1', moved).uri
    assert [r.uri for r in records if r.method == 'POST'] == [f'{source}/operations/stop']
    assert not [r for r in records if r.uri.startswith(destination)]


def test_a_stop_that_outlasts_the_deadline_fails_the_spawn(running):
    moved = new_uuid()
    spawn(running, 'cpc1', moved)
    prepared = prepare(running, 'cpc10', moved, flavor())
    destination = partition(running, 'cpc10', moved).uri
    running.sim.configure(stop_seconds=4)
    running.sim.clear_requests()
    with pytest.raises(grpc.RpcError) as failed:
        spawn(
            running,
            'cpc10',
            moved,
            prepared=prepared,
            stop_other_hosts_partitions=True,
            timeout=1.5,
        )
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: running.backend.servicer.slots.in_use() == 0)
    assert status(running, 'cpc10', moved) == 'stopped'
    assert not [r for r in running.sim.requests() if r.uri.startswith(destination)]


def test_a_host_on_a_cpc_the_hmc_does_not_know_is_skipped(backend_factory, caplog):
    """No partition runs on a CPC the HMC does not know (a host that failed its checks)."""
    fcp = tuple(f'{a}:0' for a in INVENTORY['fcp'])
    hosts = [
        HostSpec('cpc1', INVENTORY['z13'], mappings=fcp),
        HostSpec('ghost', '00000000-0000-0000-0000-00000000dead', mappings=fcp),
    ]
    running = backend_factory(hosts)
    moved = new_uuid()
    reply = spawn(running, 'cpc1', moved, stop_other_hosts_partitions=True)
    assert reply.info.partition_status == 'active'
    assert 'Not looking for partitions on CPC 00000000-0000-0000-0000-00000000dead: HMC 404,1' in (
        caplog.text
    )
