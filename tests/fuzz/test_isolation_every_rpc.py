"""No RPC lets one host read, change or delete what is not its own.

Every one of the ten DPMHost RPCs is called by host cpc1 (and by host names
that are prefixes, patterns or near misses of cpc10) with crafted fields
aimed at: an instance of host cpc10 (running, with NICs and vHBAs), the
mock's partition of "another cloud" named for cpc10, and partitions
OpenStack did not create. Afterwards every partition except cpc1's own is
byte-identical; no reply carries another host's partition, WWPNs or usage.
"""

from __future__ import annotations

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import find_partitions
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import snapshot
from dpmtest import wait_for

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming

T = 10
CPC10_UUID = '0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'
NOT_OPENSTACK = ('LINUX01', 'OpenStack-cpc1-backup', 'ZOS-LIKE')
# Served hosts of the test config, and host names crafted against cpc10.
ATTACKERS = (
    'cpc1',
    'z14host',
    'cpc',
    'cpc1-',
    'cpc10 ',
    'CPC10',
    'cpc10\x00',
    'cpc1.*',
    '.*',
    'cpc1|cpc10',
    'cpc[0-9]+',
    'OpenStack-cpc10',
    'cpc1/../cpc10',
)
TARGET = '500507680b2142e5'
REFUSED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def requests_aimed_at(host: str, victim: str, victim_wwpns, victim_port: str):
    """One request per RPC, with every field pointing at the victim."""
    ids = {'host': host, 'instance_uuid': victim}
    return [
        ('GetHostStatus', pb.GetHostStatusRequest(host=host)),
        ('ListInstances', pb.ListInstancesRequest(host=host)),
        ('GetInstanceInfo', pb.GetInstanceInfoRequest(**ids)),
        ('GetVolumeConnector', pb.GetVolumeConnectorRequest(**ids)),
        ('PrepareInstance', pb.PrepareInstanceRequest(**ids, flavor=flavor(1, 1024))),
        (
            'Spawn',
            pb.SpawnRequest(
                **ids,
                flavor=flavor(1, 1024),
                nics=[nic(INVENTORY['vswitch_osa0'], port_id=victim_port)],
                # The victim's vHBAs as initiators: never the attacker's own.
                boot_volume=boot_volume(list(victim_wwpns), [TARGET]),
            ),
        ),
        ('PowerOff', pb.PowerOffRequest(**ids)),
        ('PowerOn', pb.PowerOnRequest(**ids)),
        ('Reboot', pb.RebootRequest(**ids)),
        ('Destroy', pb.DestroyRequest(**ids)),
    ]


def own_names(hmc, host: str) -> set[str]:
    return {
        p.name
        for cpc in hmc.cpcs.list()
        for p in cpc.partitions.list()
        if naming.instance_uuid_of(host, p.name) is not None
        and p.name.startswith(naming.partition_name_prefix(host))
    }


@pytest.fixture
def victim(running):
    """A running cpc10 instance with a NIC and vHBAs; its uuid, WWPNs and port id."""
    # The first reachability probe is an HMC request of its own; let it pass.
    wait_for(lambda: running.backend.pool.reachability.reachable)
    uuid, port = new_uuid(), new_uuid()
    prepared = running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc10', instance_uuid=uuid, flavor=flavor(1, 1024)),
        timeout=T,
    )
    running.stub.Spawn(
        pb.SpawnRequest(
            host='cpc10',
            instance_uuid=uuid,
            flavor=flavor(1, 1024),
            nics=[nic(INVENTORY['vswitch_osa0'], port_id=port)],
            boot_volume=boot_volume(list(prepared.wwpns), [TARGET]),
        ),
        timeout=T,
    )
    return uuid, list(prepared.wwpns), port


def test_every_rpc_of_other_hosts_leaves_what_is_not_theirs_untouched(running, victim):
    victim_uuid, victim_wwpns, victim_port = victim
    cpc10_names = {naming.partition_name('cpc10', u) for u in (victim_uuid, CPC10_UUID)}
    before = snapshot(running.hmc)
    targets = (victim_uuid, CPC10_UUID, victim_uuid.upper(), f'OpenStack-cpc10-{victim_uuid}')
    calls = 0
    for host in ATTACKERS:
        for target in targets:
            for method, request in requests_aimed_at(host, target, victim_wwpns, victim_port):
                calls += 1
                # What Destroy deletes must be checked against what was there.
                initiators = own_initiators(running.hmc, host, target)
                running.log.clear()
                try:
                    reply = getattr(running.stub, method)(request, timeout=T)
                except grpc.RpcError as exc:
                    assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                    if host not in ('cpc1', 'z14host'):
                        # Unknown host (or a malformed uuid, checked first).
                        assert exc.code() in REFUSED, (host, method)
                        assert running.log.requests == [], (host, method)
                    continue
                assert host in ('cpc1', 'z14host'), (host, method)
                check_reply(running.hmc, method, reply, host, target, cpc10_names, initiators)
                # Whatever the call did, it did to its own partitions only.
                exclude = own_names(running.hmc, 'cpc1') | own_names(running.hmc, 'z14host')
                assert snapshot(running.hmc, exclude) == {
                    uri: value for uri, value in before.items() if value[0]['name'] not in exclude
                }, (host, method, target)
    assert calls == len(ATTACKERS) * len(targets) * 10
    # Each attacker cleans up its own; then everything is as before.
    for host in ('cpc1', 'z14host'):
        for name in own_names(running.hmc, host):
            running.stub.Destroy(
                pb.DestroyRequest(host=host, instance_uuid=naming.instance_uuid_of(host, name)),
                timeout=T,
            )
    assert snapshot(running.hmc) == before
    assert running.hmc.consoles.lookup_by_oid(None).storage_groups.list() == []
    assert {n for n in NOT_OPENSTACK} <= {v[0]['name'] for v in before.values()}


def own_initiators(hmc, host: str, target: str) -> list[str] | None:
    """The WWPNs of the caller's own instance ``target``: its vHBAs' and those of the
    storage group named as its partition; None if it has neither."""
    name = naming.partition_name(host, target)
    own = find_partitions(hmc, name)
    assert len(own) <= 1, name
    groups = [
        g
        for g in hmc.consoles.lookup_by_oid(None).storage_groups.list()
        if g.properties['name'] == name
    ]
    if not own and not groups:
        return None
    initiators = [h.properties['wwpn'].lower() for p in own for h in p.hbas.list()]
    for group in groups:
        initiators += [
            entry['world-wide-port-name']
            for entry in group.properties['unassigned-world-wide-port-names']
        ]
        initiators += [
            vsr.properties['world-wide-port-name'] for vsr in group.virtual_storage_resources.list()
        ]
    return initiators


def check_reply(hmc, method, reply, host, target, victim_names, initiators_before) -> None:
    """A successful reply only ever describes the calling host's own partitions.

    ``initiators_before``: the caller's own WWPNs for ``target`` before the call
    (Destroy answers those it deleted).
    """
    own_prefix = naming.partition_name_prefix(host)
    infos = []
    if method == 'ListInstances':
        infos = list(reply.instances)
    elif hasattr(reply, 'info'):
        infos = [reply.info]
    for info in infos:
        assert info.partition_name.startswith(own_prefix), (method, info.partition_name)
        assert info.partition_name not in victim_names
    if getattr(reply, 'wwpns', None):
        # (The mock numbers WWPNs per partition, so compare with the own ones.)
        if method == 'Destroy':
            initiators = initiators_before
        else:
            initiators = own_initiators(hmc, host, target)
            assert find_partitions(hmc, naming.partition_name(host, target)), method
        assert initiators is not None, method
        assert sorted(reply.wwpns) == sorted(initiators), method
    if method == 'GetHostStatus':
        assert reply.status.host == host


def test_host_status_and_listing_never_count_another_hosts_partitions(running, victim):
    status = running.stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc1'), timeout=T).status
    assert (status.instance_count, status.vcpus_used, status.memory_mb_used) == (0, 0, 0)
    listed = running.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
    assert list(listed.instances) == []
    # cpc10 sees its own two: the victim and the one named for it by another cloud.
    listed = running.stub.ListInstances(pb.ListInstancesRequest(host='cpc10'), timeout=T)
    assert {i.instance_uuid for i in listed.instances} == {victim[0], CPC10_UUID}
