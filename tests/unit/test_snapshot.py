"""Partition snapshots per CPC, and NIC device numbers chosen by the backend.

The snapshots read through a real zhmcclient Session from the HMC simulator,
so what they ask the HMC for is what an HMC of each version answers.
"""

from __future__ import annotations

import pytest
import zhmcclient
from dpmtest import INVENTORY

from dpm_backend import instance
from dpm_backend import naming
from dpm_backend.call import Call
from dpm_backend.call import Deadline
from dpm_backend.dialect import Dialect
from dpm_backend.host import PartitionSizes
from dpm_backend.jobs import JobWaiter
from dpm_backend.snapshot import Snapshots

CPC = INVENTORY['z13']
# The partition of host cpc10 in the shipped definitions (2 IFLs, 4096 MiB).
CPC10_PARTITION = 'OpenStack-cpc10-0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'


@pytest.fixture(params=['2.14.1', '2.15.0'])
def call(request, simulators):
    served = simulators(request.param)
    served.sim.reset()
    served.sim.clear_requests()
    session = served.session()
    client = zhmcclient.Client(session)
    yield Call(client, Dialect.of(client.query_api_version()), JobWaiter(0.01, 0.1), Deadline(30))
    session.logoff()


def requests_to(served_sim) -> list[str]:
    return [f'{r.method} {r.uri}' for r in served_sim.requests() if r.uri != '/api/sessions']


def served_hosts(name: str) -> bool:
    return any(naming.instance_uuid_of(host, name) for host in ('cpc1', 'cpc10'))


def test_one_list_serves_every_host_of_the_cpc_and_sizes_are_read_once(call, simulators):
    snapshots = Snapshots(PartitionSizes())
    simulator = simulators(call.dialect.hmc_version)
    simulator.sim.clear_requests()
    first = snapshots.take(call, CPC, served_hosts)
    assert first.owned('cpc10')[CPC10_PARTITION.rsplit('cpc10-', 1)[1]].ifl_processors == 2
    assert first.rows[CPC10_PARTITION].initial_memory == 4096
    assert snapshots.cached(CPC, 'cpc1') is first and snapshots.cached(CPC, 'cpc10') is first
    # The list has no sizes below HMC 2.16: the served hosts' partition is read once.
    assert requests_to(simulator.sim) == [
        f'GET /api/cpcs/{CPC}/partitions',
        'GET /api/partitions/7c1d2e3f-8a9b-4c0d-9e1f-2a3b4c5d6e02',
    ]
    simulator.sim.clear_requests()
    second = snapshots.take(call, CPC, served_hosts)
    assert second.rows[CPC10_PARTITION].ifl_processors == 2
    assert requests_to(simulator.sim) == [f'GET /api/cpcs/{CPC}/partitions']
    # Partitions of no served host carry no size (and cost nothing).
    assert second.rows['LINUX01'].ifl_processors == 0


def test_a_change_makes_the_snapshot_stale_for_that_partition_and_host_only(call):
    snapshots = Snapshots(PartitionSizes())
    snapshots.take(call, CPC, served_hosts)
    uuid = '6f1c4a52-3d0e-4b7a-9f3e-2a1b0c9d8e7f'
    snapshots.mark(CPC, 'cpc1', uuid)
    assert snapshots.cached(CPC, 'cpc1') is None
    assert snapshots.cached(CPC, naming.partition_name('cpc1', uuid)) is None
    assert snapshots.cached(CPC, 'cpc10') is not None
    # The next list reflects the change and serves everyone again.
    snapshots.take(call, CPC, served_hosts)
    assert snapshots.cached(CPC, 'cpc1') is not None


def test_a_change_that_ends_while_the_list_runs_leaves_it_stale(call):
    snapshots = Snapshots(PartitionSizes())
    session = call.client.session
    original = session.get

    def get_while_marking(uri, *args, **kwargs):
        if uri.endswith('/partitions'):
            snapshots.mark(CPC, 'cpc1', '6f1c4a52-3d0e-4b7a-9f3e-2a1b0c9d8e7f')
        return original(uri, *args, **kwargs)

    session.get = get_while_marking
    snapshots.take(call, CPC, served_hosts)
    assert snapshots.cached(CPC, 'cpc1') is None
    assert snapshots.cached(CPC, 'cpc10') is not None


def test_snapshots_expire_and_an_older_one_serves_only_when_asked(call):
    snapshots = Snapshots(PartitionSizes(), ttl=0)
    snapshots.take(call, CPC, served_hosts)
    assert snapshots.cached(CPC, 'cpc1') is None
    assert snapshots.cached(CPC, 'cpc1', max_age=60) is not None
    snapshots.clear()
    assert snapshots.cached(CPC, 'cpc1', max_age=60) is None


def test_nic_device_numbers_leave_three_free_subchannels_each_and_have_no_hex_letters():
    used = {0x1000, 0x1004}  # e.g. a vHBA at 1000 and one at 1004
    chosen = instance._free_device_numbers(used, 3)
    # 1008 would take 100a: the original guest tools match the cmdline's devno
    # case-sensitively against lower-case bus ids, so no number with letters.
    assert chosen == ['1001', '1005', '1010']
    numbers = [int(d, 16) for d in chosen]
    spans = [set(range(n, n + instance.QETH_DEVICE_NUMBERS)) for n in numbers]
    assert all(not span & {0x1000, 0x1004} for span in spans)
    assert not spans[0] & spans[1] and not spans[1] & spans[2]
    assert all(format(n, '04x').isdigit() for span in spans for n in span)


def test_a_partition_this_backend_just_deleted_is_left_out_without_a_read(call, simulators):
    """A destroy that ran between the list and the size read: no GET (it would be 404)."""
    simulator = simulators(call.dialect.hmc_version)
    listed = call.client.cpcs.resource_object(CPC).partitions.list(
        filter_args={'name': CPC10_PARTITION}
    )
    sizes = PartitionSizes()
    sizes.forget(listed[0].uri)  # what destroy records after its delete
    simulator.sim.clear_requests()
    snapshot = Snapshots(sizes).take(call, CPC, served_hosts)
    assert CPC10_PARTITION not in snapshot.rows
    assert requests_to(simulator.sim) == [f'GET /api/cpcs/{CPC}/partitions']
