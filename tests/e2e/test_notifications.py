"""The backend on the HMC's notifications: live snapshots, WatchInstances, job waits, reconnects.

The simulator publishes HMC-format notifications to a real STOMP broker over
TLS; the backend reads them with zhmcclient's NotificationReceiver. Changes
made outside the backend are made as on a real HMC: by another API session
(an operator's Start), or by the guest (``guest_status``: an in-guest shutdown
leaves the partition paused), which is no API request at all.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import zhmcclient
from dpmtest import INVENTORY
from dpmtest import default_hosts
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import pristine
from dpmtest import wait_for
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_status import rpc_status

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming
from dpm_backend.server import NOTIFICATIONS_SERVICE
from dpm_backend.snapshot import SNAPSHOT_TTL

T = 10


@pytest.fixture(params=['2.14.1', '2.15.0'], ids=lambda p: f'hmc{p}')
def hmc_sim(simulators, request):
    """A pristine simulator with its STOMP broker (notifications on)."""
    simulator = simulators(request.param, notifications=True)
    pristine(simulator)
    if simulator.broker is not None and not simulator.broker.running:
        simulator.broker.start()
    return simulator


def live(running, timeout: float = 15.0) -> None:
    wait_for(lambda: running.backend.notifications.live, timeout=timeout)


@pytest.fixture
def events(backend_factory):
    """A backend on the notifications, live, with its request log cleared."""
    running = backend_factory()
    live(running)
    stream = running.backend.notifications
    # The job topic of every session that logged on is heard (the starts below end on it).
    wait_for(lambda: all(stream.job_topic_live(t) for t in running.backend.pool.job_topics()))
    running.log.clear()
    return running


@pytest.fixture
def operator(hmc_sim) -> Iterator[zhmcclient.Client]:
    """Another HMC API user (an operator's tool), on its own session."""
    with hmc_sim.logged_on() as client:
        yield client


def partition_of(client: zhmcclient.Client, name: str) -> zhmcclient.Partition:
    for cpc in client.cpcs.list():
        for partition in cpc.partitions.list():
            if partition.name == name:
                return partition
    raise AssertionError(f'no partition {name}')


def prepared(running, host: str = 'cpc1') -> tuple[str, str]:
    """A stopped partition of the host, listed once since (its mark read away)."""
    instance_uuid = new_uuid()
    running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=host, instance_uuid=instance_uuid, flavor=flavor()),
        timeout=T,
    )
    running.stub.ListInstances(pb.ListInstancesRequest(host=host), timeout=T)
    return instance_uuid, naming.partition_name(host, instance_uuid)


class Stream:
    """A WatchInstances stream read in a thread; responses (or the final error) in a queue."""

    def __init__(self, stub, host: str, metadata=None) -> None:
        self.call = stub.WatchInstances(pb.WatchInstancesRequest(host=host), metadata=metadata)
        self.items: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.items.put(response)
        except grpc.RpcError as exc:
            self.items.put(exc)

    def next(self, timeout: float = 10.0):
        item = self.items.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def until(self, predicate, timeout: float = 10.0) -> list:
        """Responses up to and including the first that ``predicate`` accepts."""
        seen = []
        end = time.monotonic() + timeout
        while True:
            item = self.next(max(end - time.monotonic(), 0.01))
            seen.append(item)
            if predicate(item):
                return seen

    def close(self) -> None:
        self.call.cancel()


@pytest.fixture
def streams(events) -> Iterator:
    opened: list[Stream] = []

    def open_stream(host: str = 'cpc1', **kwargs) -> Stream:
        stream = Stream(events.stub, host, **kwargs)
        opened.append(stream)
        return stream

    yield open_stream
    for stream in opened:
        stream.close()


def change_of(response, instance_uuid: str):
    if response.kind != pb.WATCH_KIND_CHANGE:
        return None
    (state,) = response.instances
    return state if state.instance_uuid == instance_uuid else None


def health(running, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(running.channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=T).status


# --- periodic reads ---------------------------------------------------------------------


def test_periodic_reads_cost_no_hmc_request_while_notifications_flow(events):
    instance_uuid, _ = prepared(events)
    events.log.clear()
    # Older than the snapshot's TTL: without notifications every read below would list again.
    time.sleep(SNAPSHOT_TTL + 0.2)
    for _ in range(3):
        for host in ('cpc1', 'cpc10', 'z14host'):
            events.stub.ListInstances(pb.ListInstancesRequest(host=host), timeout=T)
            events.stub.GetHostStatus(pb.GetHostStatusRequest(host=host), timeout=T)
        info = events.stub.GetInstanceInfo(
            pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=instance_uuid), timeout=T
        ).info
        assert info.partition_status == 'stopped'
    assert events.log.requests == []
    assert health(events, NOTIFICATIONS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    registry = events.backend.metrics.registry
    assert registry.get_sample_value('dpm_backend_hmc_notifications_live') == 1
    assert registry.get_sample_value('dpm_backend_watch_streams') == 0


def test_changes_outside_the_backend_are_answered_without_asking_the_hmc(events, operator):
    instance_uuid, name = prepared(events)
    events.log.clear()
    request = pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=instance_uuid)

    partition_of(operator, name).start()  # an operator's Start on the HMC
    wait_for(
        lambda: events.stub.GetInstanceInfo(request, timeout=T).info.partition_status == 'active'
    )
    assert events.stub.GetInstanceInfo(request, timeout=T).info.power_state == (
        pb.POWER_STATE_RUNNING
    )

    events.sim.guest_status(name, 'paused')  # the guest shut itself down
    wait_for(
        lambda: events.stub.GetInstanceInfo(request, timeout=T).info.partition_status == 'paused'
    )
    assert events.stub.GetInstanceInfo(request, timeout=T).info.power_state == (
        pb.POWER_STATE_SHUTDOWN
    )
    assert events.log.requests == []


def test_a_resize_on_the_hmc_shows_in_the_host_usage(events, operator):
    _, name = prepared(events)
    before = events.stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc1'), timeout=T).status
    events.log.clear()
    partition_of(operator, name).update_properties({'ifl-processors': 3})

    def used():
        request = pb.GetHostStatusRequest(host='cpc1')
        return events.stub.GetHostStatus(request, timeout=T).status.vcpus_used

    wait_for(lambda: used() == before.vcpus_used + 1)
    assert events.log.requests == []


def test_a_deleted_partition_leaves_the_list_and_a_created_one_joins_it(events, operator):
    instance_uuid, name = prepared(events)
    events.log.clear()
    partition_of(operator, name).delete()

    def listed():
        reply = events.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
        return {i.instance_uuid for i in reply.instances}

    wait_for(lambda: instance_uuid not in listed())
    assert events.log.requests == []

    # Created outside the backend with the host's name: its CPC is listed once more.
    created = new_uuid()
    cpc = operator.cpcs.find(**{'object-id': INVENTORY['z13']})
    cpc.partitions.create(
        {
            'name': naming.partition_name('cpc1', created),
            'ifl-processors': 1,
            'initial-memory': 1024,
            'maximum-memory': 1024,
        }
    )
    wait_for(lambda: created in listed())
    assert [m for m, _ in events.log.requests].count('GET') <= 2


# --- WatchInstances -------------------------------------------------------------------------


def test_a_stream_starts_with_the_current_state_and_then_sends_each_change(
    events, streams, operator
):
    instance_uuid, name = prepared(events)
    events.log.clear()
    stream = streams('cpc1')
    first = stream.next()
    assert first.kind == pb.WATCH_KIND_CURRENT_STATE
    assert first.notifications is True
    assert [(s.instance_uuid, s.partition_status, s.power_state) for s in first.instances] == [
        (instance_uuid, 'stopped', pb.POWER_STATE_SHUTDOWN)
    ]

    partition_of(operator, name).start()
    seen = stream.until(
        lambda r: (c := change_of(r, instance_uuid)) and c.partition_status == 'active'
    )
    statuses = [change_of(r, instance_uuid).partition_status for r in seen]
    assert statuses == ['starting', 'active']
    assert change_of(seen[0], instance_uuid).power_state == pb.POWER_STATE_UNSPECIFIED
    assert change_of(seen[-1], instance_uuid).power_state == pb.POWER_STATE_RUNNING
    sequences = [first.sequence, *(r.sequence for r in seen)]
    assert sequences == list(range(first.sequence, first.sequence + len(sequences)))
    assert {r.epoch for r in seen} == {first.epoch}

    events.sim.guest_status(name, 'paused')
    (paused,) = stream.until(lambda r: change_of(r, instance_uuid) is not None)
    assert change_of(paused, instance_uuid).power_state == pb.POWER_STATE_SHUTDOWN

    partition_of(operator, name).stop()
    partition_of(operator, name).delete()
    gone = stream.until(lambda r: (c := change_of(r, instance_uuid)) and c.removed)
    assert change_of(gone[-1], instance_uuid).partition_status == ''

    # A client that reconnects gets the current state again: the partition is gone.
    again = streams('cpc1').next()
    assert again.kind == pb.WATCH_KIND_CURRENT_STATE
    assert instance_uuid not in {s.instance_uuid for s in again.instances}
    assert again.sequence == gone[-1].sequence
    assert events.log.requests == []


@pytest.mark.parametrize(
    'host, status, code, reason',
    [
        ('nohost', grpc.StatusCode.NOT_FOUND, 'HOST_NOT_FOUND', None),
        ('classic', grpc.StatusCode.FAILED_PRECONDITION, 'HOST_NOT_READY', None),
    ],
)
def test_a_stream_for_a_host_that_is_not_served_is_refused(events, host, status, code, reason):
    call = events.stub.WatchInstances(pb.WatchInstancesRequest(host=host), timeout=T)
    with pytest.raises(grpc.RpcError) as caught:
        next(call)
    assert caught.value.code() == status
    detail = rpc_status.from_call(caught.value).details[0]
    info = pb_error_info(detail)
    assert info.reason == code


def pb_error_info(detail):
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    detail.Unpack(info)
    return info


def test_streams_end_with_unavailable_when_the_backend_stops(events, streams):
    stream = streams('cpc1')
    assert stream.next().kind == pb.WATCH_KIND_CURRENT_STATE
    started = time.monotonic()
    events.backend.stop(grace=5)
    with pytest.raises(grpc.RpcError) as caught:
        stream.next()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # The stream did not hold the stop for its grace period.
    assert time.monotonic() - started < 4


def test_a_client_too_slow_for_its_buffer_is_cut_off_and_gets_the_state_again(
    events, streams, hmc_sim
):
    names = [prepared(events)[1] for _ in range(3)]
    events.backend.feed.buffer = 1
    stream = streams('cpc1')
    assert stream.next().kind == pb.WATCH_KIND_CURRENT_STATE
    # Three changes at once (one re-read finds them) overflow a buffer of one.
    hmc_sim.broker.stop()
    wait_for(lambda: not events.backend.notifications.live)
    for name in names:
        events.sim.guest_status(name, 'paused')
    hmc_sim.broker.start()
    with pytest.raises(grpc.RpcError) as caught:
        stream.until(lambda r: False, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = pb_error_info(rpc_status.from_call(caught.value).details[0])
    assert info.reason == 'WATCHER_TOO_SLOW'
    events.backend.feed.buffer = 1000
    again = streams('cpc1').next()
    assert {s.partition_status for s in again.instances} == {'paused'}
    assert events.backend.feed.cut_off == 1


# --- isolation --------------------------------------------------------------------------------

FOREIGN_NAMES = [
    'OpenStack-cpc1-{u}x',
    'OpenStack-cpc1-{U}',
    'openstack-cpc1-{u}',
    'OpenStack-cpc1-a-{u}',
    'OpenStack-cpc1--{u}',
    'OpenStack-cpc10-{u}',
    'OpenStack-cpc1{u}',
    'xOpenStack-cpc1-{u}',
    'OpenStack-cpc1-{u} ',
    'OpenStack-cpc1-{u}\n',
    'OpenStack-CPC1-{u}',
    'OpenStack-cpc1-{h}',
]


def test_only_the_hosts_own_partitions_reach_its_stream(events, streams, operator):
    mine, my_name = prepared(events)
    other, _ = prepared(events, 'cpc10')
    stream = streams('cpc1')
    first = stream.next()
    assert {s.instance_uuid for s in first.instances} == {mine}
    cpc = operator.cpcs.find(**{'object-id': INVENTORY['z13']})
    created = []
    for pattern in FOREIGN_NAMES:
        u = new_uuid()
        name = pattern.format(u=u, U=u.upper(), h=u.replace('-', ''))
        partition = cpc.partitions.create(
            {'name': name, 'ifl-processors': 1, 'initial-memory': 1024, 'maximum-memory': 1024}
        )
        created.append(partition)
        partition.start()
    other_name = naming.partition_name('cpc10', other)
    partition_of(operator, other_name).start()
    # A change of its own comes through after all of the above.
    events.sim.guest_status(my_name, 'terminated')
    seen = stream.until(lambda r: change_of(r, mine) is not None, timeout=15)
    assert [r.instances[0].instance_uuid for r in seen] == [mine]
    for partition in created:
        partition.stop()
        partition.delete()


# --- job completions ---------------------------------------------------------------------------


def test_a_start_returns_when_its_job_completion_is_notified(events, hmc_sim):
    instance_uuid, _ = prepared(events)
    hmc_sim.sim.configure(start_seconds=1.0)
    # A first start teaches the waiter nothing it needs: the notification ends the wait.
    events.log.clear()
    started = time.monotonic()
    events.stub.PowerOn(pb.PowerOnRequest(host='cpc1', instance_uuid=instance_uuid), timeout=T)
    took = time.monotonic() - started
    job_checks = [u for m, u in events.log.requests if m == 'GET' and u.startswith('/api/jobs/')]
    # One check, after the notification (polling would check every 0.01-0.5 s).
    assert len(job_checks) == 1
    assert 1.0 <= took < 1.0 + 0.6


# --- losing the broker --------------------------------------------------------------------------


def test_a_broker_restart_loses_no_change_and_reads_fall_back_meanwhile(events, streams, hmc_sim):
    instance_uuid, name = prepared(events)
    stream = streams('cpc1')
    stream.next()
    hmc_sim.broker.stop()
    wait_for(lambda: not events.backend.notifications.live)
    assert health(events, NOTIFICATIONS_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    registry = events.backend.metrics.registry
    assert registry.get_sample_value('dpm_backend_hmc_notifications_live') == 0
    assert registry.get_sample_value('dpm_backend_watch_streams') == 1
    # Published while nobody can hear it: lost on the broker.
    events.sim.guest_status(name, 'paused')
    events.log.clear()
    # Without notifications, a read older than the TTL goes to the HMC again.
    time.sleep(SNAPSHOT_TTL + 0.2)
    info = events.stub.GetInstanceInfo(
        pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=instance_uuid), timeout=T
    ).info
    assert info.partition_status == 'paused'
    assert len(events.log.requests) >= 1

    hmc_sim.broker.start()
    (change,) = stream.until(lambda r: change_of(r, instance_uuid) is not None, timeout=30)
    assert change_of(change, instance_uuid).partition_status == 'paused'
    live(events, timeout=30)
    assert health(events, NOTIFICATIONS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    events.log.clear()
    events.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
    assert events.log.requests == []


def test_a_connection_the_broker_closed_ends_the_live_snapshots_at_once(events, hmc_sim):
    snapshots = events.backend.servicer.snapshots
    z13 = INVENTORY['z13']
    assert snapshots.is_live(z13)
    hmc_sim.broker.stop()
    try:
        # zhmcclient raises at its next look at the connection (heart-beats of
        # 5 s: up to 6 s later); stomp.py knew at once that it closed.
        wait_for(lambda: not events.backend.notifications.live, timeout=2)
        assert not snapshots.is_live(z13)
    finally:
        hmc_sim.broker.start()
    live(events, timeout=30)
    assert snapshots.is_live(z13)


def test_without_a_broker_the_backend_serves_and_says_notifications_are_down(
    backend_factory, hmc_sim
):
    hmc_sim.broker.stop()
    running = backend_factory([default_hosts()[0]])
    reply = running.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
    assert list(reply.instances) == []
    assert not running.backend.notifications.live
    assert health(running, NOTIFICATIONS_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health(running, '') == health_pb2.HealthCheckResponse.SERVING
    hmc_sim.broker.start()
    live(running, timeout=40)
    assert health(running, NOTIFICATIONS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
