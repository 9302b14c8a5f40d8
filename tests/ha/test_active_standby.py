"""Two backends of one HMC on a real etcd: one serves, the other stands by and takes over.

Both run in this process on the HMC simulator (tests/coordinated.py); each
backend's RequestLog sits behind its lease's gate, so it holds exactly the
HMC requests that backend sent.
"""

from __future__ import annotations

import logging
import time

import grpc
import pytest
from coordinated import NOT_SERVING
from coordinated import SERVING
from coordinated import HealthSampler
from coordinated import error_info
from coordinated import health
from coordinated import health_services
from coordinated import in_process
from dpmtest import DEFAULT_PROFILE
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import pristine
from dpmtest import wait_for

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend.server import NOTIFICATIONS_SERVICE

# Short enough for quick tests, long enough for a loaded machine's refreshes.
TTL = 4
HOST = 'cpc1'


@pytest.fixture
def started(tmp_path):
    backends = []

    def start(*args, **kwargs):
        running = in_process(tmp_path, *args, **kwargs)
        backends.append(running)
        return running

    yield start
    for running in backends:
        running.channel.close()
        running.backend.stop(grace=0)


def metric(running, name: str) -> float | None:
    return running.backend.metrics.registry.get_sample_value(name)


def serving(running) -> bool:
    return health(running.channel) == SERVING


def refused(call) -> error_info:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
    return error_info(raised.value)


def test_one_backend_serves_the_other_stands_by_and_sends_no_hmc_request(started, hmc_sim, etcd):
    a = started('a', hmc_sim, etcd.url, TTL)
    wait_for(lambda: serving(a), timeout=15)
    b = started('b', hmc_sim, etcd.url, TTL)
    lease = b.backend.lease
    wait_for(lambda: 'another backend holds' in lease.why_not(), timeout=10)
    time.sleep(1.0)  # a few more attempts to acquire
    assert all(health(a.channel, s) == SERVING for s in health_services())
    assert all(health(b.channel, s) == NOT_SERVING for s in health_services())
    a.stub.ListHosts(pb.ListHostsRequest(), timeout=5)
    calls = [
        lambda: b.stub.ListHosts(pb.ListHostsRequest(), timeout=5),
        lambda: b.stub.GetHostStatus(pb.GetHostStatusRequest(host=HOST), timeout=5),
        lambda: b.stub.PrepareInstance(
            pb.PrepareInstanceRequest(host=HOST, instance_uuid=new_uuid(), flavor=flavor()),
            timeout=5,
        ),
        lambda: next(b.stub.WatchInstances(pb.WatchInstancesRequest(host=HOST), timeout=5)),
    ]
    for call in calls:
        info = refused(call)
        assert info.reason == 'BACKEND_STANDBY'
    # Not one HMC request, not even a logon or the API version.
    assert b.log.count() == 0
    assert b.backend.pool.sessions_created == 0
    assert lease.takeovers == 0 and a.backend.lease.takeovers == 1
    assert metric(a, 'dpm_backend_coordination_active') == 1
    assert metric(b, 'dpm_backend_coordination_active') == 0
    assert metric(a, 'dpm_backend_coordination_takeovers_total') == 1
    assert metric(b, 'dpm_backend_coordination_takeovers_total') == 0
    assert metric(b, 'dpm_backend_coordination_service_reachable') == 1
    assert 0 <= metric(a, 'dpm_backend_coordination_lease_age_seconds') < TTL / 2
    assert metric(b, 'dpm_backend_coordination_lease_age_seconds') is None


def test_the_hmc_notifications_follow_the_active_backend(started, simulators, etcd):
    served = simulators(DEFAULT_PROFILE, notifications=True)
    pristine(served)
    a = started('a', served, etcd.url, TTL)
    wait_for(lambda: health(a.channel, NOTIFICATIONS_SERVICE) == SERVING, timeout=20)
    b = started('b', served, etcd.url, TTL)
    wait_for(lambda: 'another backend holds' in b.backend.lease.why_not(), timeout=10)
    time.sleep(1.0)
    assert health(b.channel, NOTIFICATIONS_SERVICE) == NOT_SERVING
    assert b.log.count() == 0 and b.backend.notifications is None
    a.backend.stop(grace=0)
    wait_for(lambda: health(b.channel, NOTIFICATIONS_SERVICE) == SERVING, timeout=TTL + 10)
    # The new active backend answers Nova's periodic reads from its live snapshot.
    b.stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=5)
    b.log.clear()
    b.stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=5)
    assert b.log.count() == 0


def test_a_stopped_active_backend_hands_over_within_the_lease_ttl(started, hmc_sim, etcd):
    a = started('a', hmc_sim, etcd.url, TTL)
    wait_for(lambda: serving(a), timeout=15)
    b = started('b', hmc_sim, etcd.url, TTL)
    wait_for(lambda: 'another backend holds' in b.backend.lease.why_not(), timeout=10)
    stopping = time.monotonic()
    a.backend.stop(grace=0)
    wait_for(lambda: serving(b), timeout=TTL + 2, interval=0.02)
    took = time.monotonic() - stopping
    print(f'handover after a stop: {took:.2f} s')
    assert took < TTL + 2
    b.stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=5)
    assert b.backend.lease.takeovers == 1


def test_unreachable_etcd_at_start_serves_once_it_answers(started, hmc_sim, tmp_path, caplog):
    from etcd import Etcd

    caplog.set_level(logging.INFO, logger='dpm_backend.coordination')
    etcd = Etcd(tmp_path / 'etcd-later')
    a = started('a', hmc_sim, etcd.url, TTL)
    try:
        wait_for(lambda: 'does not answer' in a.backend.lease.why_not(), timeout=10)
        assert health(a.channel) == NOT_SERVING
        info = refused(lambda: a.stub.ListHosts(pb.ListHostsRequest(), timeout=5))
        assert info.reason == 'BACKEND_STANDBY'
        assert a.log.count() == 0
        assert f'Coordination service {etcd.url}: cannot connect' in caplog.text
        etcd.start()
        answered = time.monotonic()
        wait_for(lambda: serving(a), timeout=TTL + 10, interval=0.05)
        print(f'serving {time.monotonic() - answered:.2f} s after etcd answered')
        assert 'Became ACTIVE for HMC' in caplog.text
    finally:
        etcd.kill()


def test_etcd_down_and_back_fences_the_active_backend_and_never_two_serve(
    started, hmc_sim, etcd, caplog
):
    caplog.set_level(logging.INFO, logger='dpm_backend.coordination')
    a = started('a', hmc_sim, etcd.url, TTL)
    wait_for(lambda: serving(a), timeout=15)
    b = started('b', hmc_sim, etcd.url, TTL)
    wait_for(lambda: 'another backend holds' in b.backend.lease.why_not(), timeout=10)
    stream = a.stub.WatchInstances(pb.WatchInstancesRequest(host=HOST), timeout=60)
    assert next(stream).kind == pb.WATCH_KIND_CURRENT_STATE
    sockets = {'a': a.backend.config.listen.unix_path, 'b': b.backend.config.listen.unix_path}
    with HealthSampler(sockets) as sampler:
        down = time.monotonic()
        etcd.stop()
        # No refresh for ttl/2: the active backend stops serving, before the lock could expire.
        wait_for(lambda: health(a.channel) == NOT_SERVING, timeout=TTL, interval=0.02)
        fenced = time.monotonic() - down
        assert fenced < TTL
        info = refused(lambda: next(stream))
        assert info.reason == 'BACKEND_STANDBY'
        time.sleep(1.0)
        assert health(b.channel) == NOT_SERVING
        etcd.start()
        back = time.monotonic()
        wait_for(lambda: serving(a) or serving(b), timeout=TTL + 10, interval=0.05)
        again = time.monotonic() - back
        time.sleep(1.0)
    print(f'etcd down: fenced after {fenced:.2f} s; back: serving again after {again:.2f} s')
    assert sampler.rounds and not sampler.both_serving()
    assert a.backend.lease.losses == 1
    assert 'Lost the lease of HMC' in caplog.text and 'fenced' in caplog.text
    # Exactly one serves, and it answers.
    one = [r for r in (a, b) if serving(r)]
    assert len(one) == 1
    one[0].stub.ListHosts(pb.ListHostsRequest(), timeout=5)


def test_etcd_back_without_its_data_never_lets_two_backends_serve(started, hmc_sim, etcd, caplog):
    """etcd knows no lock when it is back: the active backend's refresh seems to work.

    It must notice that the lock is not its own, and the standby must not
    acquire the free lock while the active backend may still serve.
    """
    # A long TTL: the active backend's lease is still valid when etcd is back.
    ttl = 10
    caplog.set_level(logging.INFO, logger='dpm_backend.coordination')
    a = started('a', hmc_sim, etcd.url, ttl)
    wait_for(lambda: serving(a), timeout=15)
    b = started('b', hmc_sim, etcd.url, ttl)
    wait_for(lambda: 'another backend holds' in b.backend.lease.why_not(), timeout=10)
    sockets = {'a': a.backend.config.listen.unix_path, 'b': b.backend.config.listen.unix_path}
    with HealthSampler(sockets) as sampler:
        etcd.kill()
        etcd.wipe()
        # Down long enough for both to notice (a restore from a backup takes longer).
        wait_for(lambda: not b.backend.lease.service_reachable, timeout=5, interval=0.02)
        etcd.start()
        wait_for(lambda: a.backend.lease.losses == 1, timeout=ttl, interval=0.02)
        wait_for(lambda: serving(a) or serving(b), timeout=ttl + 10, interval=0.05)
        time.sleep(1.0)
    assert sampler.rounds and not sampler.both_serving()
    assert 'the lock is no longer held by this backend' in caplog.text
