"""The driver over several backends of one HMC: calls follow the one whose health is SERVING.

Real backends (dpm_backend.server.Backend on the HMC simulator) serve on
127.0.0.1 TCP with mutual TLS, certificates made here with ``cryptography``;
the driver's channel lists all of them. Which backend is active is decided by a
small test double (:class:`SwitchableBackend`): standby means what the
coordination will make of a backend, health ``""`` NOT_SERVING and every
DPMHost call refused with UNAVAILABLE, ErrorInfo reason BACKEND_STANDBY.
"""

from __future__ import annotations

import logging
import threading
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from dpmtest import flavor
from dpmtest import load_config
from dpmtest import wait_for
from dpmtest import write_config
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_status import rpc_status
from nova.conf import CONF
from pki import make_pki

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend.server import Backend
from dpm_frontend import channel as channel_mod
from dpm_frontend import client as client_mod
from dpm_frontend import conf as dpm_conf
from dpm_frontend import driver as driver_mod
from nova import exception
from nova.virt import event as virtevent
from nova.virt import fake

dpm_conf.register_opts(CONF)
HOST = 'cpc1'
TOKEN = 'token-of-cpc1-for-failover-0123456789'
# The name every backend certificate carries besides its own: [dpm] tls_server_name.
SHARED_NAME = 'dpm-backend-hmc1.test'
METHODS = frozenset(method.name for method in pb.DESCRIPTOR.services_by_name['DPMHost'].methods)
# Pauses between the driver's own retries in these tests ([dpm] retry_interval).
INTERVAL = 0.2


# -- certificates --------------------------------------------------------------


@pytest.fixture(scope='module')
def pki(tmp_path_factory) -> Path:
    """A CA; backend certificates for 127.0.0.1 and SHARED_NAME; a client certificate."""
    return make_pki(tmp_path_factory.mktemp('failover-pki'), SHARED_NAME, TOKEN)


# -- the backends: real ones, made standby by a test double ----------------------


def standby_refusal() -> grpc.Status:
    """How a standby backend refuses a call: UNAVAILABLE, reason BACKEND_STANDBY."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason='BACKEND_STANDBY', domain='dpm_api.v1'))
    return rpc_status.to_status(
        status_pb2.Status(
            code=grpc.StatusCode.UNAVAILABLE.value[0],
            message='this backend is standby: another one serves the HMC',
            details=[detail],
        )
    )


def began_then_unavailable() -> grpc.Status:
    """UNAVAILABLE after the call began (the HMC was lost, the backend went away)."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason='HMC_UNAVAILABLE', domain='dpm_api.v1'))
    return rpc_status.to_status(
        status_pb2.Status(
            code=grpc.StatusCode.UNAVAILABLE.value[0], message='lost on the way', details=[detail]
        )
    )


class Gate:
    """The real DPMHost servicer behind the double's switch; counts what each backend got.

    ``answered``: (method, time) of the calls let through; ``refused``: those a
    standby refused. ``on_call[method]``: run once, in the next call of it
    let through (may abort it).
    """

    def __init__(self, servicer, backend: SwitchableBackend) -> None:
        self._servicer = servicer
        self._backend = backend
        self._lock = threading.Lock()
        self.answered: list[tuple[str, float]] = []
        self.refused: list[tuple[str, float]] = []
        self.on_call: dict[str, Callable[[grpc.ServicerContext], None]] = {}

    def __getattr__(self, name: str):
        real = getattr(self._servicer, name)
        if name not in METHODS:
            return real

        def gated(request, context):
            with self._lock:
                refuse = self._backend.refusing
                (self.refused if refuse else self.answered).append((name, time.monotonic()))
                hook = None if refuse else self.on_call.pop(name, None)
            if refuse:
                context.abort_with_status(standby_refusal())
            if hook is not None:
                hook(context)
            return real(request, context)

        return gated

    def count(self, method: str | None = None, refused: bool = False) -> int:
        with self._lock:
            calls = self.refused if refused else self.answered
            return sum(1 for name, _ in calls if method in (None, name))

    def times(self) -> list[float]:
        with self._lock:
            return [at for _, at in self.answered]


class SwitchableBackend(Backend):
    """Test double of a backend in an active/standby pair: a real Backend with a switch.

    ``set_standby(True)``: health ``""`` (and the service's) NOT_SERVING, and
    every DPMHost call refused (BACKEND_STANDBY), as the coordination makes a
    standby. ``refusing`` alone refuses while health still says SERVING: the
    moment before a client hears of the change.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.standby = False
        self.refusing = False
        self.gate = Gate(self.servicer, self)
        self.servicer = self.gate  # what start() registers

    def serving(self) -> bool:
        return not self.standby and super().serving()

    def set_standby(self, standby: bool) -> None:
        self.standby = self.refusing = standby
        self._update_health()


@pytest.fixture
def pair(tmp_path, hmc_sim, pki):
    """Start backends of one HMC on 127.0.0.1 with mutual TLS: ``start(n)``, the first active."""
    started: list[SwitchableBackend] = []

    def start(count: int = 2) -> list[SwitchableBackend]:
        for index in range(count):
            config = write_config(
                tmp_path / f'b{index}.conf',
                tmp_path / f'b{index}.sock',
                extra={
                    'backend': {
                        'listen': '127.0.0.1:0',
                        'tls_cert_file': str(pki / 'backend.pem'),
                        'tls_key_file': str(pki / 'backend.key'),
                        'tls_client_ca_file': str(pki / 'ca.pem'),
                    },
                    f'host:{HOST}': {'token_file': str(pki / 'token')},
                },
                hmc=hmc_sim,
            )
            backend = SwitchableBackend(load_config(config))
            backend.set_standby(index > 0)
            backend.start()
            started.append(backend)
        for backend in started:
            wait_for(lambda b=backend: b.pool.reachability.reachable and b.hosts_checked())
        return started

    yield start
    for backend in started:
        backend.stop(grace=0)


def transport(backends, pki: Path) -> channel_mod.Transport:
    """[dpm] options naming every backend of the pair, as a compute node would set them."""
    return channel_mod.Transport(
        backend=','.join(b.address for b in backends),
        allow_insecure_loopback=False,
        tls_ca_file=str(pki / 'ca.pem'),
        tls_cert_file=str(pki / 'client.pem'),
        tls_key_file=str(pki / 'client.key'),
        token_file=str(pki / 'token'),
        tls_server_name=SHARED_NAME,
    )


class Sleeps:
    """time.sleep for the client, recording the driver's own pauses."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        time.sleep(seconds)


@pytest.fixture
def connect(pki):
    """The driver's client over all of ``backends`` (retries as configured, INTERVAL apart)."""
    made = []

    def make(backends, retries: int = 3) -> tuple[client_mod.BackendClient, Sleeps]:
        options = transport(backends, pki)
        conf = types.SimpleNamespace(
            dpm=types.SimpleNamespace(unavailable_retries=retries, retry_interval=INTERVAL)
        )
        sleeps = Sleeps()
        client = client_mod.BackendClient(
            client_mod.open_channel(options), conf, sleep=sleeps, transport=options
        )
        made.append(client)
        return client, sleeps

    yield make
    for client in made:
        client.close()


def host_status(client: client_mod.BackendClient, deadline: float = 30) -> pb.HostStatus:
    return client.call('GetHostStatus', pb.GetHostStatusRequest(host=HOST), deadline, True).status


# -- routing ---------------------------------------------------------------------


def test_calls_go_only_to_the_backend_whose_health_is_serving(pair, connect):
    active, standby, spare = pair(3)
    client, sleeps = connect([standby, active, spare])
    assert client.failover
    for _ in range(12):
        assert host_status(client).host == HOST
    assert active.gate.count('GetHostStatus') == 12
    # Health kept the calls away from the standbys: they did not even refuse one.
    for backend in (standby, spare):
        assert backend.gate.count() == backend.gate.count(refused=True) == 0
    assert sleeps.pauses == []


def test_a_takeover_moves_calls_within_a_second_and_fails_no_idempotent_call(pair, connect):
    first, second = pair(2)
    client, _ = connect([first, second])
    failures: list[BaseException] = []
    answered = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            try:
                host_status(client, deadline=10)
                client.call('ListInstances', pb.ListInstancesRequest(host=HOST), 10, True)
                answered.append(time.monotonic())
            except BaseException as exc:  # any failure fails the test
                failures.append(exc)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        wait_for(lambda: len(answered) >= 5)
        # As the coordination does it: the active one steps down, the other
        # takes over a moment later (no backend serves in between).
        first.set_standby(True)
        demoted = time.monotonic()
        time.sleep(0.3)
        second.set_standby(False)
        promoted = time.monotonic()
        wait_for(lambda: len([t for t in answered if t > promoted]) >= 10)
        # ...and back: the first one is active again.
        second.set_standby(True)
        first.set_standby(False)
        back = time.monotonic()
        wait_for(lambda: len([t for t in answered if t > back]) >= 10)
    finally:
        stop.set()
        caller.join(30)
    assert failures == []
    assert second.gate.times() and min(second.gate.times()) - promoted < 1.0
    assert all(demoted <= t <= back + 0.1 for t in second.gate.times())
    assert [t for t in first.gate.times() if demoted + 0.1 < t < back] == []
    assert min(t for t in first.gate.times() if t > back) - back < 1.0


def test_a_call_a_standby_refused_as_it_stepped_down_is_retried_on_the_active_one(pair, connect):
    """Before the client hears of the change, a standby refuses: gRPC sends the call again."""
    first, second = pair(2)
    client, sleeps = connect([first, second])
    # Both SERVING for a moment, until the client has sent a call to each.
    second.set_standby(False)

    def second_answered() -> bool:
        host_status(client)
        return second.gate.count() > 0

    wait_for(second_answered)
    first.refusing = True  # it steps down; its health will say so a moment later
    served = second.gate.count()
    for _ in range(10):
        assert host_status(client).host == HOST
    assert second.gate.count() - served == 10
    assert first.gate.count(refused=True) >= 1  # round_robin picked it in turn
    assert sleeps.pauses == []  # gRPC retried at once; the driver never had to


def test_no_backend_serving_fails_fast_with_unavailable_then_the_new_active_one_answers(
    pair, connect
):
    first, second = pair(2)
    client, sleeps = connect([first, second], retries=2)
    host_status(client)
    first.set_standby(True)
    stub = pb_grpc.DPMHostStub(client._channel)

    def heard_unhealthy() -> bool:
        # The client follows the health change a moment later (a loaded machine: longer).
        try:
            stub.ListHosts(pb.ListHostsRequest(), timeout=2)
        except grpc.RpcError as exc:
            return 'unhealthy' in (exc.details() or '')
        return False

    wait_for(heard_unhealthy)
    refused = (first.gate.count(refused=True), second.gate.count(refused=True))
    started = time.monotonic()
    with pytest.raises(exception.VirtDriverNotReady):
        host_status(client, deadline=30)
    took = time.monotonic() - started
    # Not the 30 s deadline: each attempt fails at once, the driver's two
    # pauses (and gRPC's short backoffs) are all the time it takes.
    assert sleeps.pauses == [INTERVAL, INTERVAL]
    assert took < 2 * INTERVAL + 2.0
    # No backend was even reached.
    assert (first.gate.count(refused=True), second.gate.count(refused=True)) == refused
    # A bare call says why, also at once.
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListHosts(pb.ListHostsRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 2.0
    second.set_standby(False)
    promoted = time.monotonic()
    assert host_status(client).host == HOST
    assert time.monotonic() - promoted < 1.0
    assert second.gate.count('GetHostStatus') == 1


def test_reboot_is_not_sent_again_once_it_may_have_begun_while_spawn_converges_elsewhere(
    pair, connect
):
    """Spawn is IDEMPOTENT in the proto (a retry converges); Reboot is not marked."""
    first, second = pair(2)
    client, sleeps = connect([first, second])
    host_status(client)

    def step_down_midway(context) -> None:
        # The first backend took the call, then lost the HMC to the second one.
        first.set_standby(True)
        second.set_standby(False)
        context.abort_with_status(began_then_unavailable())

    instance = str(uuid.uuid4())
    first.gate.on_call['Reboot'] = step_down_midway
    with pytest.raises(exception.VirtDriverNotReady):
        client.call('Reboot', pb.RebootRequest(host=HOST, instance_uuid=instance), 10, False)
    assert first.gate.count('Reboot') == 1
    assert second.gate.count('Reboot') == second.gate.count('Reboot', refused=True) == 0
    assert sleeps.pauses == []

    second.set_standby(True)
    first.set_standby(False)
    host_status(client)
    first.gate.on_call['Spawn'] = step_down_midway
    # No boot volume: the second backend refuses the request itself, without the HMC.
    with pytest.raises(exception.InvalidInput):
        client.call('Spawn', pb.SpawnRequest(host=HOST, instance_uuid=instance), 10, True)
    assert first.gate.count('Spawn') == 1
    assert second.gate.count('Spawn') == 1


# -- the driver: init_host and the lifecycle-event stream through a takeover ------


@pytest.fixture
def nova_driver(pair, pki, monkeypatch):
    """A DPMDriver of cpc1 whose [dpm] backend lists both backends, both standby yet."""
    first, second = pair(2)
    first.set_standby(True)
    options = transport([first, second], pki)
    monkeypatch.setattr(driver_mod.virt_node, 'get_local_node_uuid', lambda: str(uuid.uuid4()))
    overrides = {
        name: getattr(options, name)
        for name in ('backend', 'tls_ca_file', 'tls_cert_file', 'tls_key_file', 'token_file')
    }
    overrides.update(
        tls_server_name=SHARED_NAME, lifecycle_stopped_event_delay=0, retry_interval=INTERVAL
    )
    CONF.set_override('host', HOST)
    for name, value in overrides.items():
        CONF.set_override(name, value, group='dpm')
    try:
        drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
        yield drv, first, second
        drv.cleanup_host(HOST)
    finally:
        CONF.clear_override('host')
        for name in overrides:
            CONF.clear_override(name, group='dpm')


def following(caplog) -> list[str]:
    """The events' log lines saying that a stream delivered its current state."""
    return [r.getMessage() for r in caplog.records if 'following its' in r.getMessage()]


def test_the_driver_starts_during_a_takeover_and_its_events_follow_the_new_active_one(
    nova_driver, caplog
):
    caplog.set_level(logging.DEBUG, logger='dpm_frontend.events')
    drv, first, second = nova_driver
    # Longer than the driver's retries (3, INTERVAL apart) would bridge.
    threading.Timer(2.0, first.set_standby, (False,)).start()
    started = time.monotonic()
    drv.init_host(HOST)  # waits for an active backend instead of failing
    assert 1.9 < time.monotonic() - started < 5
    assert first.gate.count('GetHostStatus') == 1

    received: list[tuple[str, int]] = []
    drv.register_event_listener(lambda event: received.append((event.uuid, event.transition)))
    wait_for(lambda: len(following(caplog)) == 1)
    assert first.gate.count('WatchInstances') == 1

    # The active backend goes away; a while later the standby takes over.
    first.stop(grace=0)
    time.sleep(1.5)
    second.set_standby(False)
    promoted = time.monotonic()
    wait_for(lambda: len(following(caplog)) == 2, timeout=10)
    # The stream waited for a backend to serve, and opened at once on the new one.
    assert time.monotonic() - promoted < 1.0
    assert second.gate.count('WatchInstances') == 1
    assert second.gate.count('WatchInstances', refused=True) == 0
    ended = [r for r in caplog.records if 'instance stream ended' in r.getMessage()]
    assert len(ended) == 1  # the loss, once; no failed attempt while none served

    # The new stream tells Nova of what happens on the new active backend.
    instance = str(uuid.uuid4())
    drv.client.call(
        'PrepareInstance',
        pb.PrepareInstanceRequest(host=HOST, instance_uuid=instance, flavor=flavor()),
        60,
        True,
    )
    assert instance in drv.list_instance_uuids()
    wait_for(lambda: (instance, virtevent.EVENT_LIFECYCLE_STOPPED) in received, timeout=10)
    assert drv.get_available_resource(HOST)['vcpus'] > 0
    assert first.gate.count('PrepareInstance') == 0


def test_init_host_says_so_when_no_backend_becomes_active(nova_driver, caplog):
    caplog.set_level(logging.DEBUG, logger='dpm_frontend.client')
    drv, first, second = nova_driver
    CONF.set_override('read_deadline', 1, group='dpm')
    try:
        started = time.monotonic()
        with pytest.raises(client_mod.DPMBackendError) as caught:
            drv.init_host(HOST)
    finally:
        CONF.clear_override('read_deadline', group='dpm')
    assert time.monotonic() - started < 1 + 3 * INTERVAL + 2
    message = str(caught.value)
    assert f'no dpm-backend at {first.address},{second.address} became active' in message
    assert '[dpm] read_deadline = 1 s' in message
    # The driver's log carries gRPC's own words for why.
    assert any('backend unhealthy' in r.getMessage() for r in caplog.records)
    assert first.gate.count(refused=True) == second.gate.count(refused=True) == 0
