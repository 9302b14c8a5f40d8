"""The WatchInstances feed: only a host's own partitions, numbered changes, watchers never block."""

from __future__ import annotations

import time
import uuid

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming
from dpm_backend.snapshot import Row
from dpm_backend.snapshot import Snapshot
from dpm_backend.watch import InstanceFeed

CPC = 'cpc-object-id'
HOSTS = {'cpc1': CPC, 'cpc10': CPC, 'a.b': CPC}


def snapshot(statuses: dict[str, str]) -> Snapshot:
    rows = {
        name: Row(
            name=name, uri=f'/api/partitions/{i}', status=status, ifl_processors=1, initial_memory=1
        )
        for i, (name, status) in enumerate(statuses.items())
    }
    return Snapshot(rows=rows, seen_marks=0, taken_at=time.monotonic())


def test_changes_are_numbered_per_host_and_start_after_the_first_state():
    feed = InstanceFeed(HOSTS)
    mine, other = str(uuid.uuid4()), str(uuid.uuid4())
    a, b = naming.partition_name('cpc1', mine), naming.partition_name('cpc10', other)
    feed.rows_changed(CPC, snapshot({a: 'stopped', b: 'stopped'}))
    watcher = feed.watch('cpc1')
    assert [(s.instance_uuid, s.status) for s in watcher.current] == [(mine, 'stopped')]
    assert watcher.sequence == 0
    feed.rows_changed(CPC, snapshot({a: 'starting', b: 'active'}))
    feed.rows_changed(CPC, snapshot({a: 'active', b: 'active'}))
    feed.rows_changed(CPC, snapshot({b: 'active'}))
    changes = [watcher.next(0.1) for _ in range(3)]
    assert [(c.sequence, c.state.status) for c in changes] == [
        (1, 'starting'),
        (2, 'active'),
        (3, None),
    ]
    assert changes[1].state.power_state == pb.POWER_STATE_RUNNING
    assert changes[2].state.to_pb().removed
    assert watcher.next(0.05) is None
    # cpc10 counted its own change only.
    assert feed.watch('cpc10').sequence == 1


def test_a_full_buffer_ends_the_watcher_without_blocking_the_feed():
    feed = InstanceFeed(HOSTS, buffer=2)
    names = [naming.partition_name('cpc1', str(uuid.uuid4())) for _ in range(50)]
    feed.rows_changed(CPC, snapshot(dict.fromkeys(names, 'stopped')))
    slow = feed.watch('cpc1')
    started = time.monotonic()
    feed.rows_changed(CPC, snapshot(dict.fromkeys(names, 'active')))
    assert time.monotonic() - started < 0.5
    assert slow.ended and slow.reason == 'too slow'
    assert feed.cut_off == 1 and feed.watching() == 0
    # A new watcher starts from the current state.
    again = feed.watch('cpc1')
    assert {s.status for s in again.current} == {'active'} and len(again.current) == 50


def test_close_ends_every_watcher():
    feed = InstanceFeed(HOSTS)
    feed.rows_changed(CPC, snapshot({}))
    watchers = [feed.watch('cpc1') for _ in range(3)]
    feed.close()
    assert all(w.ended and w.reason == 'closing' for w in watchers)


def mutated(host: str, instance_uuid: str):
    """Names close to the host's partition name that are not it."""
    exact = naming.partition_name(host, instance_uuid)
    return st.one_of(
        st.just(exact.upper()),
        st.just(exact + 'x'),
        st.just('x' + exact),
        st.just(exact[:-1]),
        st.just(exact.replace('-', '_', 1)),
        st.just(naming.partition_name(host + 'x', instance_uuid)),
        st.just(naming.partition_name(host[:-1] or 'h', instance_uuid)),
        st.just(f'OpenStack-{host}-{instance_uuid.replace("-", "")}'),
        st.text(min_size=1, max_size=80).map(lambda t: exact + t),
        st.text(min_size=1, max_size=80).map(lambda t: t + exact),
        st.text(min_size=0, max_size=80).map(lambda t: f'OpenStack-{host}-{t}'),
        st.text(min_size=1, max_size=100),
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_no_foreign_or_other_hosts_partition_ever_reaches_a_hosts_stream(data):
    feed = InstanceFeed(HOSTS)
    mine = str(uuid.uuid4())
    own = naming.partition_name('cpc1', mine)
    others = data.draw(st.lists(mutated('cpc1', mine), min_size=1, max_size=8))
    others += [
        naming.partition_name('cpc10', str(uuid.uuid4())),
        naming.partition_name('a.b', mine),
    ]
    others = [name for name in others if name != own]
    feed.rows_changed(CPC, snapshot({own: 'stopped', **dict.fromkeys(others, 'stopped')}))
    watcher = feed.watch('cpc1')
    statuses = data.draw(
        st.lists(st.sampled_from(['active', 'paused', 'stopped']), min_size=1, max_size=4)
    )
    for status in statuses:
        feed.rows_changed(CPC, snapshot({own: 'stopped', **dict.fromkeys(others, status)}))
    feed.rows_changed(CPC, snapshot({own: 'active'}))  # the others removed, mine changed
    assert [s.instance_uuid for s in watcher.current] == [mine]
    seen = []
    while (change := watcher.next(0)) is not None:
        seen.append(change.state.instance_uuid)
    assert seen == [mine]
