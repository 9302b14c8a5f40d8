"""The fault matrix of the storage-group path: every HMC request of prepare, spawn,
attach volume, detach volume and destroy on a z14-class CPC fails once, in every way.

As tests/faults/test_fault_matrix.py does for the vHBA path (its Harness, fault
kinds and status map): the RPC answers the mapped status; nothing outside the
instance changes; a retry leaves exactly what a fault-free run leaves
(partition, NICs, storage group, its volumes and their paths, attachment);
destroy then leaves no partition, no NIC and no storage group of the instance
(no orphan storage group or volume). For the creators the other branch too:
destroy right after the failure leaves nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dpmtest import INVENTORY
from dpmtest import PASSWORD
from dpmtest import Faults
from dpmtest import HostSpec
from dpmtest import boot_volume
from dpmtest import count_cases
from dpmtest import differences
from dpmtest import find_partitions
from dpmtest import flavor
from dpmtest import instance_state
from dpmtest import load_config
from dpmtest import nic
from dpmtest import snapshot
from dpmtest import write_config
from faults.test_fault_matrix import Harness
from faults.test_fault_matrix import fail_once

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming

T = 10
HOST = 'sghost'
UUID = '6e3d7b2f-9a4c-4d8e-8f1b-2c3d4e5f6a71'
NAME = naming.partition_name(HOST, UUID)
PORTS = ('0a1b2c3d-4e5f-4a6b-8c7d-000000000011', '0a1b2c3d-4e5f-4a6b-8c7d-000000000012')
TARGET = '5005076810260382'
BOOT_ID = '7f4e8c3a-0b5d-4e9f-9a2c-3d4e5f6a7b82'
DATA_ID = '8a5f9d4b-1c6e-4fa0-8b3d-4e5f6a7b8c93'


def _volume(wwpns, volume_id, lun):
    message = boot_volume(list(wwpns), [TARGET], lun)
    message.volume_id, message.size_gib = volume_id, 10
    return message


def spawn_request(wwpns) -> pb.SpawnRequest:
    return pb.SpawnRequest(
        host=HOST,
        instance_uuid=UUID,
        flavor=flavor(),
        nics=[nic(INVENTORY['vswitch_z14'], 'fa:16:3e:00:00:01', port_id=PORTS[0])],
        boot_volume=_volume(wwpns, BOOT_ID, 1),
    )


def prepare(h):
    return h.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=HOST, instance_uuid=UUID, flavor=flavor()), timeout=T
    )


def spawn(h, wwpns):
    return h.stub.Spawn(spawn_request(wwpns), timeout=T)


def setup_running(h, wwpns) -> None:
    prepare(h)
    spawn(h, wwpns)


def attach(h, wwpns):
    request = pb.AttachVolumeRequest(
        host=HOST, instance_uuid=UUID, volume=_volume(wwpns, DATA_ID, 2)
    )
    return h.stub.AttachVolume(request, timeout=T)


def detach(h, _):
    request = pb.DetachVolumeRequest(host=HOST, instance_uuid=UUID, volume_id=DATA_ID)
    return h.stub.DetachVolume(request, timeout=T)


def destroy(h, _):
    return h.stub.Destroy(pb.DestroyRequest(host=HOST, instance_uuid=UUID), timeout=T)


def warm(h, _) -> None:
    h.stub.GetHostStatus(pb.GetHostStatusRequest(host=HOST), timeout=T)


OPERATIONS = {
    'prepare': (warm, lambda h, w: prepare(h)),
    'spawn': (lambda h, w: prepare(h), spawn),
    'attach-volume': (setup_running, attach),
    'detach-volume': (lambda h, w: (setup_running(h, w), attach(h, w)), detach),
    'destroy': (setup_running, destroy),
}
CREATORS = ('prepare', 'spawn', 'attach-volume')
# Whether the call reports that it removed something: a retry after a lost reply may not.
REMOVERS = {'destroy': pb.DestroyResponse(existed=True), 'detach-volume': None}


def storage_group(hmc, name: str = NAME):
    for group in hmc.consoles.lookup_by_oid(None).storage_groups.list():
        if group.properties['name'] == name:
            return group
    return None


def storage_state(hmc, name: str = NAME) -> dict | None:
    """The instance's storage group as OpenStack configured it; HMC-assigned ids left out."""
    group = storage_group(hmc, name)
    if group is None:
        return None
    props = group.properties
    volumes = {}
    for volume in group.storage_volumes.list():
        v = volume.properties
        volumes[v['name']] = {
            'usage': v.get('usage'),
            'size': v.get('size'),
            'fulfillment-state': v.get('fulfillment-state'),
            'paths': sorted(
                (p['target-world-wide-port-name'], p['logical-unit-number'])
                for p in v.get('paths') or []
            ),
        }
    partitions = find_partitions(hmc, name)
    return {
        'fields': {k: props.get(k) for k in ('description', 'type', 'shared', 'max-partitions',
                                             'connectivity', 'fulfillment-state')},
        'volumes': volumes,
        'attached': bool(partitions)
        and group.uri in (partitions[0].properties.get('storage-group-uris') or []),
        'vsrs': len(group.virtual_storage_resources.list()),
        'boots-from-group': [
            (p.properties.get('boot-storage-volume') or '').startswith(group.uri)
            for p in partitions
        ],
    }  # fmt: skip


# HMC-assigned URIs; what they designate is compared in storage_state.
STORAGE_URIS = ('boot-storage-volume', 'storage-group-uris')


def state(hmc, name: str = NAME) -> dict:
    partition = instance_state(hmc, name)
    if partition is not None:
        for uri in STORAGE_URIS:
            partition['partition'].pop(uri, None)
    return {'partition': partition, 'storage': storage_state(hmc, name)}


def nothing_left(hmc) -> list[str]:
    left = [f'partition {p.uri}' for p in find_partitions(hmc, NAME)]
    if storage_group(hmc) is not None:
        left.append(f'storage group {NAME}')
    return left


@pytest.fixture(scope='module')
def served(simulators):
    return simulators('2.16.0')


@pytest.fixture(scope='module')
def config(tmp_path_factory, served):
    tmp: Path = tmp_path_factory.mktemp('faults-sg')
    ports = tuple(f'{a}:0' for a in INVENTORY['fcp_z14'])
    hosts = [HostSpec(HOST, INVENTORY['z14'], mappings=ports)]
    return load_config(write_config(tmp / 'b.conf', tmp / 'b.sock', hosts, hmc=served))


@pytest.fixture(scope='module')
def reference(config, served):
    result = {}
    h = Harness(config, served)
    try:
        wwpns = list(prepare(h).wwpns)
    finally:
        h.close()
    for operation, (setup, call) in OPERATIONS.items():
        h = Harness(config, served)
        try:
            setup(h, wwpns)
            h.log.clear()
            call(h, wwpns)
            result[operation] = (h.log.count(), state(h.hmc))
        finally:
            h.close()
    return wwpns, result


def others_of(hmc) -> tuple:
    groups = sorted(
        (g.properties['name'], g.properties.get('fulfillment-state'))
        for g in hmc.consoles.lookup_by_oid(None).storage_groups.list()
        if g.properties['name'] != NAME
    )
    return snapshot(hmc, exclude={NAME}), groups


def run_case(config, served, wwpns, reference, operation, kind, k, outage, then) -> list[str]:
    setup, call = OPERATIONS[operation]
    where = f'{operation} k={k} {kind}{" outage" if outage else ""} then {then}'
    problems = []
    h = Harness(config, served)
    try:
        setup(h, wwpns)
        others = others_of(h.hmc)
        problems += fail_once(h, lambda: call(h, wwpns), kind, k, outage, where)
        if then == 'retry':
            call(h, wwpns)
            got = state(h.hmc)
            if got != reference[operation][1]:
                problems.append(
                    f'{where}: retry left ' + '; '.join(differences(got, reference[operation][1]))
                )
        destroy(h, wwpns)
        left = nothing_left(h.hmc)
        if left:
            problems.append(f'{where}: destroy left {left}')
        if others_of(h.hmc) != others:
            problems.append(f'{where}: something of someone else changed')
    finally:
        h.close()
    return problems


CASES = [
    (operation, kind, False, then)
    for operation in OPERATIONS
    for kind in Faults.KINDS
    for then in (('retry', 'destroy') if operation in CREATORS else ('retry',))
] + [
    (operation, 'connection', True, then)
    for operation in OPERATIONS
    for then in (('retry', 'destroy') if operation in CREATORS else ('retry',))
]


@pytest.mark.parametrize(
    ('operation', 'kind', 'outage', 'then'),
    CASES,
    ids=[f'{o}-{k}{"-outage" if out else ""}-then-{t}' for o, k, out, t in CASES],
)
def test_fault_at_every_storage_group_request_is_answered_and_converges(
    config, served, reference, request, caplog, operation, kind, outage, then
):
    caplog.set_level(logging.INFO)
    wwpns, results = reference
    requests = results[operation][0]
    assert requests > 0
    problems = []
    for k in range(requests):
        problems += run_case(config, served, wwpns, results, operation, kind, k, outage, then)
    count_cases(
        request.config, 'fault matrix, storage groups (operation x request index x kind x then)',
        requests,
    )  # fmt: skip
    assert PASSWORD not in caplog.text
    assert not problems, '\n'.join(problems)
