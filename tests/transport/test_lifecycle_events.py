"""Nova lifecycle events from the backend's WatchInstances stream.

A real gRPC server on a unix socket plays the backend: a scripted DPMHost
whose WatchInstances sends what the test pushes and ends each stream with the
status the test names. The driver (or InstanceEvents itself) reads the stream
over a real channel and hands Nova STARTED and STOPPED events: all of the
first current state, then only what changed; a STOPPED waits and a later
event of the instance cancels it; each instance's events in order, one at a
time; a lost stream is opened again with backoff; cleanup_host ends it all.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import queue
import random
import threading
import time
import uuid

import grpc
import pytest
from nova.conf import CONF

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import errors
from dpm_frontend import client as client_mod
from dpm_frontend import conf as dpm_conf
from dpm_frontend import driver as driver_mod
from dpm_frontend import events as events_mod
from nova.virt import event as virtevent
from nova.virt import fake

dpm_conf.register_opts(CONF)
HOST = 'cpc1'
TOKEN = 'token-of-cpc1-0123456789abcdef'
DELAY = 0.3  # [dpm] lifecycle_stopped_event_delay in these tests
STARTED = virtevent.EVENT_LIFECYCLE_STARTED
STOPPED = virtevent.EVENT_LIFECYCLE_STOPPED
RUNNING = pb.POWER_STATE_RUNNING
SHUTDOWN = pb.POWER_STATE_SHUTDOWN
LOGGER = 'dpm_frontend.events'


def new_uuid() -> str:
    return str(uuid.uuid4())


def state(instance_uuid: str, power_state=RUNNING, removed=False) -> pb.InstanceState:
    status = {RUNNING: 'active', SHUTDOWN: 'stopped'}.get(power_state, 'starting')
    if removed:
        return pb.InstanceState(instance_uuid=instance_uuid, removed=True)
    return pb.InstanceState(
        instance_uuid=instance_uuid, power_state=power_state, partition_status=status
    )


def current(*states, sequence=0, epoch='e1') -> pb.WatchInstancesResponse:
    return pb.WatchInstancesResponse(
        kind=pb.WATCH_KIND_CURRENT_STATE,
        sequence=sequence,
        epoch=epoch,
        instances=states,
        notifications=True,
    )


def change(one: pb.InstanceState, sequence: int, epoch='e1') -> pb.WatchInstancesResponse:
    return pb.WatchInstancesResponse(
        kind=pb.WATCH_KIND_CHANGE,
        sequence=sequence,
        epoch=epoch,
        instances=[one],
        notifications=True,
    )


TOO_SLOW = errors.DPMError(
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.ERROR_REASON_WATCHER_TOO_SLOW,
    'the watcher of host cpc1 fell 1000 responses behind',
)


class Stream:
    """One WatchInstances call as the backend sees it; the test says what it sends."""

    def __init__(self, request, metadata) -> None:
        self.request = request
        self.metadata = metadata
        self.opened = time.monotonic()
        self.outbox: queue.Queue = queue.Queue()
        self.ended = threading.Event()

    def send(self, *responses: pb.WatchInstancesResponse) -> None:
        for response in responses:
            self.outbox.put(response)

    def end(self, error: errors.DPMError) -> None:
        self.outbox.put(error)


class ScriptedHost(pb_grpc.DPMHostServicer):
    """GetHostStatus for init_host, and WatchInstances as the test scripts it."""

    def __init__(self) -> None:
        self.streams: queue.Queue[Stream] = queue.Queue()
        self.opened: list[Stream] = []
        # While set, a new stream is refused with it at once.
        self.refuse: errors.DPMError | None = None

    def GetHostStatus(self, request, context):
        return pb.GetHostStatusResponse(
            status=pb.HostStatus(cpc_name='CPC1', vcpus_total=8, memory_mb_total=16384)
        )

    def WatchInstances(self, request, context):
        stream = Stream(request, dict(context.invocation_metadata()))
        context.add_callback(stream.ended.set)
        self.opened.append(stream)
        self.streams.put(stream)
        if self.refuse is not None:
            context.abort_with_status(self.refuse.to_status())
        while context.is_active():
            try:
                item = stream.outbox.get(timeout=0.02)
            except queue.Empty:
                continue
            if isinstance(item, errors.DPMError):
                context.abort_with_status(item.to_status())
            yield item

    def next_stream(self, timeout: float = 5.0) -> Stream:
        try:
            return self.streams.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError('no WatchInstances call came') from None


class Received:
    """The events Nova would get: (instance uuid, transition), and when each came."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, int, float]] = []

    def __call__(self, event: virtevent.LifecycleEvent) -> None:
        assert isinstance(event, virtevent.LifecycleEvent)
        with self.cond:
            self.events.append((event.uuid, event.transition, time.monotonic()))
            self.cond.notify_all()

    def of(self, instance_uuid: str) -> list[int]:
        with self.cond:
            return [t for u, t, _ in self.events if u == instance_uuid]

    def pairs(self) -> set[tuple[str, int]]:
        with self.cond:
            return {(u, t) for u, t, _ in self.events}

    def wait(self, count: int, timeout: float = 5.0) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.events) >= count, timeout):
                raise AssertionError(f'{len(self.events)} events, not {count}: {self.events}')

    def quiet(self, seconds: float) -> int:
        """How many events there are after ``seconds`` more."""
        time.sleep(seconds)
        with self.cond:
            return len(self.events)


@pytest.fixture
def backend(tmp_path):
    host = ScriptedHost()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_DPMHostServicer_to_server(host, server)
    address = f'unix:{tmp_path}/b.sock'
    server.add_insecure_port(address)
    server.start()
    yield host, address
    server.stop(grace=0)


@pytest.fixture
def nova_driver(backend, tmp_path, monkeypatch):
    """A DPMDriver of host cpc1 on the scripted backend, with a token; Nova's listener apart."""
    host, address = backend
    monkeypatch.setattr(driver_mod.virt_node, 'get_local_node_uuid', lambda: new_uuid())
    token = tmp_path / 'token'
    token.write_text(TOKEN + '\n')
    CONF.set_override('host', HOST)
    CONF.set_override('backend', address, group='dpm')
    CONF.set_override('token_file', str(token), group='dpm')
    CONF.set_override('lifecycle_stopped_event_delay', DELAY, group='dpm')
    try:
        drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
    finally:
        CONF.clear_override('host')
        CONF.clear_override('backend', group='dpm')
        CONF.clear_override('token_file', group='dpm')
        CONF.clear_override('lifecycle_stopped_event_delay', group='dpm')
    yield drv, host
    drv.cleanup_host(HOST)


def listening(drv) -> Received:
    """Start the driver as nova-compute does: init_host, then Nova registers its listener."""
    received = Received()
    drv.init_host(HOST)
    drv.register_event_listener(received)
    return received


@pytest.fixture
def events(backend):
    """InstanceEvents itself on the scripted backend, STOPPED at once, quick backoff."""
    host, address = backend
    channel = grpc.insecure_channel(address)
    client = client_mod.BackendClient(channel, CONF)
    made = []

    def make(delay=0.0, backoff=None, workers=events_mod.WORKERS, emit=None):
        received = emit or Received()
        watcher = events_mod.InstanceEvents(
            HOST,
            lambda: client,
            received,
            delay,
            workers=workers,
            backoff=backoff or events_mod.Backoff(0.05, 0.4),
        )
        made.append(watcher)
        return watcher, received

    yield host, make
    for watcher in made:
        watcher.stop()
    channel.close()


def warnings_of(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    ]


# -- mapping, the first current state, the token ----------------------------


def test_once_nova_listens_the_first_current_state_becomes_one_event_per_instance(nova_driver):
    drv, host = nova_driver
    drv.init_host(HOST)
    time.sleep(0.2)
    assert host.opened == []  # no listener yet: Nova would drop the events
    received = Received()
    drv.register_event_listener(received)
    stream = host.next_stream()
    assert stream.request.host == HOST
    assert stream.metadata['authorization'] == f'Bearer {TOKEN}'

    running, stopped, crashed, unknown = (new_uuid() for _ in range(4))
    sent = time.monotonic()
    stream.send(
        current(
            state(running, RUNNING),
            state(stopped, SHUTDOWN),
            state(crashed, pb.POWER_STATE_CRASHED),
            state(unknown, pb.POWER_STATE_UNSPECIFIED),
        )
    )
    received.wait(3)
    assert received.pairs() == {(running, STARTED), (stopped, STOPPED), (crashed, STOPPED)}
    started_at = {u: at for u, _, at in received.events}
    assert started_at[running] - sent < DELAY
    assert min(started_at[stopped], started_at[crashed]) - sent >= DELAY

    # A change: an event only for a power state that differs from the last one.
    stream.send(
        change(state(unknown, RUNNING), 1),
        change(state(running, RUNNING), 2),
        change(state(running, pb.POWER_STATE_UNSPECIFIED), 3),
        change(state(stopped, removed=True), 4),
    )
    received.wait(4)
    assert received.quiet(0.2) == 4
    assert received.of(unknown) == [STARTED]
    assert received.of(running) == [STARTED]


def test_a_stopped_waits_the_delay_and_a_later_event_cancels_it(nova_driver):
    drv, host = nova_driver
    received = listening(drv)
    stream = host.next_stream()
    guest = new_uuid()
    stream.send(current(state(guest, RUNNING), sequence=7))
    received.wait(1)

    shut_down = time.monotonic()
    stream.send(change(state(guest, SHUTDOWN), 8))
    received.wait(2)
    assert received.events[-1][2] - shut_down >= DELAY
    assert received.of(guest) == [STARTED, STOPPED]

    # A reboot on the HMC: stopped, then started within the delay.
    stream.send(change(state(guest, RUNNING), 9), change(state(guest, SHUTDOWN), 10))
    received.wait(3)
    time.sleep(DELAY / 3)
    restarted = time.monotonic()
    stream.send(change(state(guest, RUNNING), 11))
    received.wait(4)
    assert received.events[-1][2] - restarted < DELAY
    assert received.quiet(DELAY * 2) == 4
    assert received.of(guest) == [STARTED, STOPPED, STARTED, STARTED]


# -- losing the stream -------------------------------------------------------


def test_after_a_loss_the_new_current_state_brings_only_what_changed(nova_driver, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    drv, host = nova_driver
    received = listening(drv)
    first = host.next_stream()
    same, stops, gone, new = (new_uuid() for _ in range(4))
    first.send(
        current(state(same), state(stops), state(gone, SHUTDOWN), sequence=10),
    )
    received.wait(3)
    lost = time.monotonic()
    first.end(errors.backend_stopping('watch'))

    second = host.next_stream()
    assert second.opened - lost < events_mod.RECONNECT_INITIAL + 0.3
    assert first.ended.is_set()
    second.send(current(state(same), state(stops, SHUTDOWN), state(new), sequence=20))
    received.wait(5)
    assert received.quiet(0.2) == 5
    assert received.pairs() == {
        (same, STARTED),
        (stops, STARTED),
        (gone, STOPPED),
        (stops, STOPPED),
        (new, STARTED),
    }
    # A change already in that current state changes nothing; the instance
    # missing from it was forgotten: its stopped partition counts as new.
    second.send(change(state(same, SHUTDOWN), 20), change(state(gone, SHUTDOWN), 21))
    received.wait(6)
    assert received.quiet(DELAY + 0.2) == 6
    assert received.of(gone) == [STOPPED, STOPPED]
    assert received.of(same) == [STARTED]

    (warning,) = warnings_of(caplog)
    assert 'UNAVAILABLE HMC_UNAVAILABLE' in warning
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert sum('following its 3 instances' in m for m in infos) == 2


def test_a_watcher_too_slow_reconnects_and_each_loss_is_warned_once(events, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    host, make = events
    watcher, received = make()
    watcher.start()
    first = host.next_stream()
    guest = new_uuid()
    first.send(current(state(guest)))
    received.wait(1)

    host.refuse = errors.backend_stopping('watch')
    first.end(TOO_SLOW)
    refused = [host.next_stream() for _ in range(3)]
    assert all(s.ended.wait(2) for s in refused)
    host.refuse = None
    back = host.next_stream()
    back.send(current(state(guest, SHUTDOWN)))
    received.wait(2)
    assert received.of(guest) == [STARTED, STOPPED]

    warnings = warnings_of(caplog)
    assert len(warnings) == 2, warnings
    assert 'RESOURCE_EXHAUSTED WATCHER_TOO_SLOW' in warnings[0]
    assert 'UNAVAILABLE HMC_UNAVAILABLE' in warnings[1]
    assert caplog.records[-1].levelno == logging.INFO
    assert 'following its 1 instances' in caplog.records[-1].getMessage()

    # The stream that delivered its current state starts the pauses again:
    # 0.025-0.05 s now, where four pauses before took them to 0.2-0.4 s.
    lost = time.monotonic()
    back.end(TOO_SLOW)
    assert host.next_stream().opened - lost < 0.15


@pytest.mark.parametrize(
    'refusal',
    [
        errors.host_not_found(HOST),
        errors.host_not_ready(HOST, 'CPC X is not in DPM mode'),
        errors.permission_denied(HOST),
    ],
    ids=['unknown host', 'host not ready', 'token of another host'],
)
def test_a_refused_stream_is_asked_for_again_with_growing_pauses(events, caplog, refusal):
    host, make = events
    host.refuse = refusal
    watcher, received = make(backoff=events_mod.Backoff(0.1, 0.4))
    watcher.start()
    time.sleep(1.6)
    opened = [s.opened for s in host.opened]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    # Pauses of 0.05-0.1, 0.1-0.2, then 0.2-0.4 s: no tight loop.
    assert 4 <= len(opened) <= 12, gaps
    assert min(gaps) >= 0.045
    assert all(gap >= 0.19 for gap in gaps[2:]), gaps
    assert received.events == []
    (warning,) = warnings_of(caplog)
    assert refusal.code.name in warning and refusal.reason_name in warning
    assert repr(refusal.message) in warning
    assert events_mod.HINTS.get(refusal.code.name, '') in warning

    # stop() does not wait out a pause.
    began = time.monotonic()
    watcher.stop()
    assert time.monotonic() - began < 1
    assert not watcher.running


def test_backoff_doubles_with_jitter_up_to_its_ceiling_and_starts_again_after_reset():
    draws = iter([0.0, 1.0, 0.5, 1.0, 1.0, 0.0, 0.0])
    backoff = events_mod.Backoff(0.5, 3.0, rand=lambda: next(draws))
    assert [backoff.next() for _ in range(5)] == [0.25, 1.0, 1.5, 3.0, 3.0]
    backoff.reset()
    assert [backoff.next() for _ in range(2)] == [0.25, 0.5]


# -- delivery ----------------------------------------------------------------


def test_each_instances_events_come_in_order_and_one_at_a_time(events):
    host, make = events
    lock = threading.Lock()
    busy: set[str] = set()
    overlaps: list[str] = []
    most = [0]
    delivered: dict[str, list[int]] = {}
    total = threading.Semaphore(0)

    def deliver(event):
        with lock:
            if event.uuid in busy:
                overlaps.append(event.uuid)
            busy.add(event.uuid)
            most[0] = max(most[0], len(busy))
        time.sleep(random.uniform(0, 0.004))
        with lock:
            delivered.setdefault(event.uuid, []).append(event.transition)
            busy.discard(event.uuid)
        total.release()

    watcher, _ = make(emit=deliver, workers=4)
    watcher.start()
    stream = host.next_stream()
    guests = [new_uuid() for _ in range(20)]
    running = dict.fromkeys(guests, True)
    expected = {g: [STARTED] for g in guests}
    responses = [current(*(state(g) for g in guests))]
    rng = random.Random(7)
    for sequence in range(1, 301):
        guest = rng.choice(guests)
        running[guest] = not running[guest]
        expected[guest].append(STARTED if running[guest] else STOPPED)
        responses.append(change(state(guest, RUNNING if running[guest] else SHUTDOWN), sequence))
    stream.send(*responses)
    for _ in range(320):
        assert total.acquire(timeout=10)
    assert delivered == expected
    assert overlaps == []
    assert 2 <= most[0] <= 4


# -- the end -----------------------------------------------------------------


def test_cleanup_host_cancels_the_stream_and_drops_a_pending_stopped(nova_driver):
    drv, host = nova_driver
    received = listening(drv)
    stream = host.next_stream()
    guest = new_uuid()
    stream.send(current(state(guest)))
    received.wait(1)
    stream.send(change(state(guest, SHUTDOWN), 1))
    time.sleep(0.05)
    watcher = drv._events
    assert watcher.running

    began = time.monotonic()
    drv.cleanup_host(HOST)
    assert time.monotonic() - began < 2
    assert not watcher.running
    assert stream.ended.wait(2)
    assert received.quiet(DELAY * 2) == 1
    assert len(host.opened) == 1


def test_cleanup_host_without_events_started_and_twice(nova_driver):
    drv, host = nova_driver
    drv.init_host(HOST)
    drv.cleanup_host(HOST)
    drv.cleanup_host(HOST)
    assert host.opened == []
