"""What each HMC version costs and accepts: the reads Nova repeats, on every profile."""

from __future__ import annotations

import urllib.parse

import pytest
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import rejected

from dpm_api.v1 import dpm_host_pb2 as pb

T = 10


def _sync_cycle(running, hosts: dict[str, list[str]]) -> None:
    """What nova-compute's periodic tasks ask of each host: its list, each info, its status."""
    for host, uuids in hosts.items():
        listed = running.stub.ListInstances(pb.ListInstancesRequest(host=host), timeout=T)
        listed_uuids = {i.instance_uuid for i in listed.instances}
        assert listed_uuids >= set(uuids)
        for instance_uuid in listed_uuids:
            running.stub.GetInstanceInfo(
                pb.GetInstanceInfoRequest(host=host, instance_uuid=instance_uuid), timeout=T
            )
        running.stub.GetHostStatus(pb.GetHostStatusRequest(host=host), timeout=T)


@pytest.mark.parametrize('hmc_sim', ['2.14.1', '2.15.0'], indirect=True, ids=lambda p: f'hmc{p}')
def test_sync_cycle_is_one_list_per_cpc_below_hmc_2_16(running):
    hosts = {'cpc1': [new_uuid(), new_uuid()], 'cpc10': [new_uuid()]}
    for host, uuids in hosts.items():
        for instance_uuid in uuids:
            running.stub.PrepareInstance(
                pb.PrepareInstanceRequest(host=host, instance_uuid=instance_uuid, flavor=flavor()),
                timeout=T,
            )
    _sync_cycle(running, hosts)  # sizes of partitions created before this backend: read once
    running.backend.servicer.snapshots.clear()
    running.sim.clear_requests()
    _sync_cycle(running, hosts)
    # Both hosts are subsets of one CPC: one List Partitions (its default
    # properties include status) serves the whole cycle; no query parameter
    # that HMCs below 2.16 lack (HMC WS API book 2.15, "List Partitions of a CPC").
    uris = [(r.method, r.uri) for r in running.sim.requests()]
    assert uris == [('GET', f'/api/cpcs/{INVENTORY["z13"]}/partitions')]
    assert rejected(running.sim.requests()) == []


@pytest.mark.parametrize('hmc_sim', ['2.16.0'], indirect=True, ids=lambda p: f'hmc{p}')
def test_hmc_2_16_lists_partitions_with_additional_properties(backend_factory):
    fcp = f'{INVENTORY["fcp_z14"][0]}:0'
    running = backend_factory([HostSpec('z14host', INVENTORY['z14'], mappings=(fcp,))])
    assert running.backend.pool.reachability.reachable
    running.sim.clear_requests()
    _sync_cycle(running, {'z14host': []})
    records = running.sim.requests()
    assert rejected(records) == []
    (listing,) = records
    uri = urllib.parse.urlsplit(listing.uri)
    assert uri.path == f'/api/cpcs/{INVENTORY["z14"]}/partitions'
    # API 4.1+ (HMC 2.16) lists the sizes with the status: nothing to read per partition.
    query = urllib.parse.parse_qs(uri.query)
    assert set(query['additional-properties'][0].split(',')) >= {
        'ifl-processors',
        'initial-memory',
    }
