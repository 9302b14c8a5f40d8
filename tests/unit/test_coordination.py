"""The HMC lock and its fencing, on a fake coordination service and a fake clock.

The fake keeps a lock the way etcd keeps a tooz lock: a holder and an
expiry ``ttl`` seconds after the holder's last refresh; a refresh of an
expired lock does nothing and raises nothing (etcd3gw's keepalive answers
TTL -1 and tooz ignores it). Each test drives the coordination thread one
round at a time (``Lease.step``) and moves the clock itself.
"""

from __future__ import annotations

import grpc
import pytest
import zhmcclient
from dpmtest import load_config
from dpmtest import write_config
from grpc_health.v1 import health_pb2

from dpm_backend import config as config_mod
from dpm_backend import coordination
from dpm_backend import errors
from dpm_backend import standby
from dpm_backend.hmc import LOGOFF_URI

TTL = 8
NAME = 'dpm-backend-hmc:10.0.0.1:6794'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Service:
    """One lock on a coordination service, with etcd's expiry."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.down = False
        self.holder: str | None = None
        self.expires = 0.0
        # Seconds each heartbeat takes (the clock moves by that much).
        self.heartbeat_seconds = 0.0
        self.acquire_seconds = 0.0

    def check(self) -> None:
        if self.down:
            raise ConnectionError('coordination service down')

    def held_by(self, member: str) -> bool:
        return self.holder == member and self.clock() < self.expires


class FakeLock:
    def __init__(self, service: Service, member: str) -> None:
        self.service = service
        self.member = member

    def acquire(self, blocking: bool = True) -> bool:
        service = self.service
        service.check()
        service.clock.advance(service.acquire_seconds)
        if service.holder is not None and service.clock() < service.expires:
            return False
        service.holder, service.expires = self.member, service.clock() + TTL
        return True

    def release(self) -> bool:
        self.service.check()
        if self.service.held_by(self.member):
            self.service.holder = None
            return True
        return False

    def is_still_owner(self) -> bool:
        self.service.check()
        return self.service.held_by(self.member)


class FakeCoordinator:
    def __init__(self, service: Service, member: str) -> None:
        self.service = service
        self.member = member
        self.lock = FakeLock(service, member)
        self.started = False

    def start(self, start_heart: bool = False) -> None:
        assert not start_heart  # the lease refreshes on its own schedule
        self.service.check()
        self.started = True

    def stop(self) -> None:
        self.started = False

    def get_lock(self, name: bytes) -> FakeLock:
        assert name == NAME.encode()
        return self.lock

    def heartbeat(self) -> float:
        service = self.service
        service.check()
        service.clock.advance(service.heartbeat_seconds)
        if service.held_by(self.member):
            service.expires = service.clock() + TTL
        return TTL


class Backend:
    """What the lease tells the backend."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.idle = True

    def active(self) -> None:
        self.events.append('active')

    def standby(self) -> bool:
        self.events.append('standby')
        return self.idle


def lease_on(service: Service, member: str = 'a', backend: Backend | None = None):
    backend = backend or Backend()
    coordinator = FakeCoordinator(service, member)
    config = config_mod.CoordinationConfig(
        backend_url='etcd3+http://127.0.0.1:2379', lease_ttl=TTL, member_id=member
    )
    lease = coordination.Lease(
        config,
        NAME,
        '10.0.0.1',
        on_active=backend.active,
        on_standby=backend.standby,
        now=service.clock,
        get_coordinator=lambda url, member_id, **options: coordinator,
    )
    lease.load()
    return lease, backend


def sent(lease: coordination.Lease, method: str = 'POST', uri: str = '/api/x') -> bool:
    """Whether the gate lets an HMC request through."""
    try:
        return lease.gate(method, uri, lambda: True)
    except errors.BackendStandby:
        return False


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def service(clock):
    return Service(clock)


def active_lease(service: Service, member: str = 'a'):
    lease, backend = lease_on(service, member)
    lease.step()  # connect
    lease.step()  # acquire
    assert lease.valid() and backend.events == ['active']
    return lease, backend


def test_the_holder_is_active_and_sends_requests_the_other_is_standby_and_sends_none(service):
    a, _ = active_lease(service, 'a')
    b, b_backend = lease_on(service, 'b')
    b.step()
    b.step()
    assert b.role == coordination.STANDBY and not b.valid()
    assert b_backend.events == []
    assert sent(a) and not sent(b) and not sent(b, 'GET')
    # Logoffs are never refused: a standby gives its HMC sessions back.
    assert sent(b, 'DELETE', LOGOFF_URI)
    with pytest.raises(errors.BackendStandby) as raised:
        b.gate('GET', '/api/cpcs', lambda: True)
    assert 'another backend holds the lock' in raised.value.why
    # What the caller is told: UNAVAILABLE, safe to retry elsewhere.
    error = errors.from_hmc(raised.value, 'spawn')
    assert (error.code, error.reason_name) == (grpc.StatusCode.UNAVAILABLE, 'BACKEND_STANDBY')


def test_the_active_backend_refreshes_every_quarter_ttl_and_stays_active(service, clock):
    lease, backend = active_lease(service)
    for _ in range(20):
        pause = lease.step()
        assert 0 < pause <= TTL / 4
        clock.advance(pause)
        assert lease.valid()
    assert service.held_by('a') and backend.events == ['active']


def test_refreshes_that_fail_fence_at_half_the_ttl_before_the_lock_can_expire(service, clock):
    lease, backend = active_lease(service)
    service.down = True
    clock.advance(TTL / 4)
    lease.step()  # the refresh fails; still valid
    assert lease.valid() and sent(lease)
    clock.advance(TTL / 4 - 0.01)
    assert lease.valid()
    clock.advance(0.02)
    # Past ttl/2 since the last refresh: refused before the thread has even noticed.
    assert not lease.valid() and not sent(lease, 'GET')
    assert service.held_by('a')  # the lock itself still lives for ttl/2 more
    lease.step()
    assert lease.role == coordination.STANDBY and lease.losses == 1
    assert backend.events == ['active', 'standby']
    assert 'lost the lease' in lease.why_not()
    # The service answers again: the lock is released at once, acquired anew ttl/2 later.
    service.down = False
    assert lease.step() == pytest.approx(TTL / 2)
    assert service.holder is None and not lease.valid()
    clock.advance(TTL / 2)
    lease.step()
    assert lease.valid() and lease.takeovers == 2
    assert backend.events == ['active', 'standby', 'active']


def test_a_process_resumed_after_its_lease_may_have_expired_sends_nothing(service, clock):
    lease, backend = active_lease(service)
    other, _ = lease_on(service, 'b')
    other.step()
    # SIGSTOP for longer than the TTL: the lock expired and the other took it.
    clock.advance(TTL + 1)
    other.step()
    assert other.valid()
    # SIGCONT: the first thing any thread does is refused.
    assert not lease.valid() and not sent(lease) and not sent(lease, 'GET')
    lease.step()
    assert lease.role == coordination.STANDBY and backend.events == ['active', 'standby']
    lease.step()  # release (not its own any more), then acquire: held by the other
    assert not lease.valid() and service.holder == 'b'


def test_a_refresh_answered_too_late_fences(service, clock):
    lease, backend = active_lease(service)
    clock.advance(TTL / 4)
    service.heartbeat_seconds = TTL / 2
    lease.step()
    assert not lease.valid() and lease.losses == 1
    assert backend.events == ['active', 'standby']


def test_a_lock_that_is_no_longer_its_own_fences_at_the_next_refresh(service, clock):
    lease, backend = active_lease(service)
    # The service lost its data: the lock is free and another backend holds it.
    service.holder = 'b'
    clock.advance(TTL / 4)
    lease.step()
    assert not lease.valid() and backend.events == ['active', 'standby']
    assert 'no longer held by this backend' in lease.why_not()


def test_a_lock_acquired_too_slowly_is_released_unused(service):
    lease, backend = lease_on(service)
    lease.step()
    service.acquire_seconds = TTL / 2
    lease.step()
    assert not lease.valid() and backend.events == []
    service.acquire_seconds = 0
    lease.step()
    assert lease.valid() and backend.events == ['active']


def test_while_operations_run_on_the_lock_is_left_to_expire(service, clock):
    lease, backend = active_lease(service)
    backend.idle = False
    service.down = True
    clock.advance(TTL / 2)
    lease.step()
    assert lease.role == coordination.STANDBY
    service.down = False
    lease.step()  # no release: the lock is held until it expires (ttl after its last refresh)
    assert service.holder == 'a' and not lease.valid()
    clock.advance(TTL / 2)
    lease.step()
    assert lease.valid() and lease.takeovers == 2


def test_unreachable_at_start_is_standby_until_the_service_answers(service, clock):
    service.down = True
    lease, backend = lease_on(service)
    assert lease.step() > 0
    assert not lease.valid()
    assert 'does not answer' in lease.why_not()
    service.down = False
    lease.step()  # connected
    lease.step()  # a holder that could not reach the service either may still serve
    assert not lease.valid()
    clock.advance(TTL / 2)
    lease.step()
    assert lease.valid() and backend.events == ['active']


def test_a_service_back_without_its_data_never_lets_two_backends_serve(service, clock):
    a, a_backend = active_lease(service, 'a')
    b, _ = lease_on(service, 'b')
    b.step()
    b.step()
    service.down = True
    for _ in range(3):
        clock.advance(0.25)
        a.step()
        b.step()
    # Back, knowing no lock: the standby could acquire it at once, and the
    # active backend's refreshes answer as if its lease still lived.
    service.down = False
    service.holder = None
    for _ in range(8 * TTL):
        clock.advance(0.25)
        b.step()
        assert not (a.valid() and b.valid())
        a.step()
        assert not (a.valid() and b.valid())
    # The active backend saw the lock was not its own any more, and acquired it anew.
    assert a_backend.events == ['active', 'standby', 'active'] and a.valid()


def test_stop_releases_a_held_lock_so_a_standby_takes_over_at_once(service):
    lease, _ = active_lease(service)
    other, _ = lease_on(service, 'b')
    other.step()
    other.step()
    assert not other.valid()
    lease.stop(release=True)
    assert not lease.valid() and service.holder is None
    other.step()
    assert other.valid()


def test_the_lock_name_is_the_same_for_every_backend_of_one_hmc(tmp_path):
    def name(hosts: str, port: int = 6794) -> str:
        path = write_config(
            tmp_path / 'c.conf', tmp_path / 's.sock', extra={'hmc': {'hosts': hosts, 'port': port}}
        )
        return coordination.lock_name(load_config(path).hmc)

    assert name('HMC-B.example.com,hmc-a.example.com') == name(
        'hmc-a.example.com,hmc-b.example.com'
    )
    assert name('hmc-a.example.com') != name('hmc-a.example.com,hmc-b.example.com')
    assert name('hmc-a.example.com', 6794) != name('hmc-a.example.com', 16794)


def test_driver_options_make_the_lock_live_lease_ttl_seconds():
    assert coordination.driver_options('etcd3+http://h:2379', 10) == {
        'lock_timeout': '10',
        'membership_timeout': '10',
        'timeout': '2',
    }
    # A timeout the URL sets is the driver's (tooz: keyword options win over the URL's).
    assert 'timeout' not in coordination.driver_options('etcd3+https://h:2379?timeout=5', 3)
    assert (
        coordination.driver_options('etcd3+http://h:2379?membership_timeout=9', 3)['timeout'] == '1'
    )
    assert coordination.driver_options('zookeeper://h:2181', 10)['timeout'] == '10'
    assert coordination.driver_options('redis://h:6379', 10) == {'lock_timeout': '10'}


def test_health_is_not_serving_while_the_lease_is_not_valid():
    valid = [True]
    health = standby.HealthServicer(lambda: valid[0])
    health.set('', standby.SERVING)
    request = health_pb2.HealthCheckRequest(service='')
    assert health.Check(request, None).status == standby.SERVING
    valid[0] = False
    assert health.Check(request, None).status == standby.NOT_SERVING
    sent_statuses = []

    class Context:
        def add_callback(self, callback):
            return True

    health.Watch(request, Context(), sent_statuses.append)
    valid[0] = True
    health.set('', standby.SERVING)
    assert [r.status for r in sent_statuses] == [standby.NOT_SERVING, standby.SERVING]


def test_backend_standby_is_an_hmc_error_the_pool_does_not_mistake_for_an_outage():
    exc = errors.BackendStandby('GET /api/cpcs not sent: why', 'why')
    assert isinstance(exc, zhmcclient.Error)
    assert not isinstance(exc, zhmcclient.ConnectionError)


@pytest.mark.parametrize(
    ('values', 'message'),
    [
        ({'backend_url': 'nosuch://h'}, "'nosuch' is not a tooz driver"),
        ({'backend_url': 'etcd3+http://h:2379?lock_timeout=5'}, 'leave lock_timeout out'),
        ({'backend_url': 'etcd3+http://h:2379', 'lease_ttl': '2'}, 'lease_ttl'),
        ({'backend_url': 'etcd3+http://h:2379', 'member_id': 'a b'}, 'member_id'),
    ],
)
def test_bad_coordination_settings_fail_at_load_naming_the_option(tmp_path, values, message):
    path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra={'coordination': values})
    with pytest.raises(config_mod.ConfigError) as raised:
        load_config(path)
    assert '[coordination]' in str(raised.value) and message in str(raised.value)


def test_coordination_loads_with_defaults_and_keeps_credentials_out_of_logs(tmp_path):
    assert load_config(write_config(tmp_path / 'c.conf', tmp_path / 's.sock')).coordination is None
    url = 'redis://:s3cret@127.0.0.1:6379?socket_timeout=1'
    path = write_config(
        tmp_path / 'c.conf', tmp_path / 's.sock', extra={'coordination': {'backend_url': url}}
    )
    loaded = load_config(path).coordination
    assert loaded is not None
    assert loaded.lease_ttl == config_mod.DEFAULT_LEASE_TTL
    assert loaded.member_id.endswith(f'-{__import__("os").getpid()}')
    assert loaded.display_url == 'redis://127.0.0.1:6379'
    assert 's3cret' not in repr(loaded)
