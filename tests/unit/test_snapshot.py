"""Partition snapshots per CPC, and NIC device numbers chosen by the backend."""

from __future__ import annotations

import dataclasses

from dpm_backend import instance
from dpm_backend import naming
from dpm_backend.snapshot import Snapshots

CPC = '2b1e5a4c-6d3f-4e8a-9c71-0f2a3b4c5d01'
UUID_A = '6f1c4a52-3d0e-4b7a-9f3e-2a1b0c9d8e7f'
UUID_B = '0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'


@dataclasses.dataclass
class FakePartition:
    name: str
    uri: str
    properties: dict


class FakeClient:
    """Answers List Partitions of a CPC; counts the requests."""

    def __init__(self, partitions: dict[str, str], during_list=lambda: None) -> None:
        self.partitions_by_name = partitions  # name -> status
        self.requests = 0
        self.during_list = during_list

    @property
    def cpcs(self):
        return self

    def resource_object(self, object_id):
        return self

    @property
    def partitions(self):
        return self

    def list(self, additional_properties=None):
        self.requests += 1
        self.during_list()
        return [
            FakePartition(name, f'/api/partitions/{i}', {'status': status, 'ifl-processors': 1})
            for i, (name, status) in enumerate(self.partitions_by_name.items())
        ]


def partitions() -> dict[str, str]:
    return {
        naming.partition_name('cpc1', UUID_A): 'active',
        naming.partition_name('cpc10', UUID_B): 'stopped',
        'LINUX01': 'active',
    }


def test_one_list_serves_every_host_of_the_cpc():
    snapshots = Snapshots()
    client = FakeClient(partitions())
    snapshots.take(client, CPC)
    one = snapshots.cached(CPC, 'cpc1')
    ten = snapshots.cached(CPC, 'cpc10')
    assert client.requests == 1
    assert list(one.owned('cpc1')) == [UUID_A]
    assert list(ten.owned('cpc10')) == [UUID_B]


def test_a_change_makes_the_snapshot_stale_for_that_partition_and_host_only():
    snapshots = Snapshots()
    snapshots.take(FakeClient(partitions()), CPC)
    snapshots.mark(CPC, 'cpc1', UUID_A)
    assert snapshots.cached(CPC, 'cpc1') is None
    assert snapshots.cached(CPC, naming.partition_name('cpc1', UUID_A)) is None
    assert snapshots.cached(CPC, 'cpc10') is not None
    # The next list reflects the change and serves everyone again.
    snapshots.take(FakeClient(partitions()), CPC)
    assert snapshots.cached(CPC, 'cpc1') is not None


def test_a_change_that_ends_while_the_list_runs_leaves_it_stale():
    snapshots = Snapshots()
    client = FakeClient(partitions(), during_list=lambda: snapshots.mark(CPC, 'cpc1', UUID_A))
    snapshots.take(client, CPC)
    assert snapshots.cached(CPC, 'cpc1') is None
    assert snapshots.cached(CPC, 'cpc10') is not None


def test_snapshots_expire_and_an_older_one_serves_only_when_asked():
    snapshots = Snapshots(ttl=0)
    snapshots.take(FakeClient(partitions()), CPC)
    assert snapshots.cached(CPC, 'cpc1') is None
    assert snapshots.cached(CPC, 'cpc1', max_age=60) is not None
    snapshots.clear()
    assert snapshots.cached(CPC, 'cpc1', max_age=60) is None


def test_nic_device_numbers_leave_three_free_subchannels_each():
    used = {0x1000, 0x1004}  # e.g. a vHBA at 1000 and one at 1004
    chosen = instance._free_device_numbers(used, 3)
    assert chosen == ['1001', '1005', '1008']
    numbers = [int(d, 16) for d in chosen]
    spans = [set(range(n, n + instance.QETH_DEVICE_NUMBERS)) for n in numbers]
    assert all(not span & {0x1000, 0x1004} for span in spans)
    assert not spans[0] & spans[1] and not spans[1] & spans[2]
