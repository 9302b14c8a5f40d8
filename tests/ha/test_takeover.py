"""The active backend dies or is paused; the standby takes over; the paused one stays fenced.

The active backend is a process of its own (kill -9, SIGSTOP/SIGCONT); the
standby runs in this process on the same simulator and etcd. Health of both
is sampled in turn all along: never do both answer SERVING.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent import futures

import grpc
import pytest
from coordinated import NOT_SERVING
from coordinated import SERVING
from coordinated import HealthSampler
from coordinated import as_process
from coordinated import error_info
from coordinated import health
from coordinated import in_process
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import wait_for

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend.hmc import LOGOFF_URI

TTL = 4
HOST = 'cpc1'
# Seconds the paused backend's Start Partition job runs: it outlasts the test.
JOB_SECONDS = 60


@pytest.fixture
def backends(tmp_path, hmc_sim, etcd):
    """The active backend (a process, serving) and the standby (in this process)."""
    active = as_process(tmp_path, 'a', hmc_sim, etcd.url, TTL, {'hmc': {'log_requests': 'true'}})
    channel = grpc.insecure_channel(f'unix:{active.socket}')
    standby = None
    try:
        wait_for(lambda: health(channel) == SERVING, timeout=30, interval=0.05)
        standby = in_process(tmp_path, 'b', hmc_sim, etcd.url, TTL)
        lease = standby.backend.lease
        wait_for(lambda: 'another backend holds' in lease.why_not(), timeout=10)
        yield active, channel, standby
    finally:
        if active.popen.poll() is None:
            active.popen.send_signal(signal.SIGCONT)
            active.popen.kill()
        active.popen.wait(timeout=10)
        channel.close()
        if standby is not None:
            standby.channel.close()
            standby.backend.stop(grace=0)


def test_kill_9_of_the_active_backend_the_standby_serves_within_the_ttl(backends):
    active, _, standby = backends
    sockets = {'a': active.socket, 'b': standby.backend.config.listen.unix_path}
    with HealthSampler(sockets) as sampler:
        killed = time.monotonic()
        active.popen.kill()
        wait_for(lambda: health(standby.channel) == SERVING, timeout=TTL + 2, interval=0.02)
        took = time.monotonic() - killed
    print(f'takeover after kill -9: {took:.2f} s (lease_ttl {TTL} s)')
    assert took < TTL + 2
    assert not sampler.both_serving()
    standby.stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=5)


def test_a_paused_active_backend_resumes_fenced_and_changes_nothing(backends, hmc_sim):
    active, channel, standby = backends
    stub = pb_grpc.DPMHostStub(channel)
    instance = new_uuid()
    wwpns = stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=HOST, instance_uuid=instance, flavor=flavor(1, 1024)),
        timeout=30,
    ).wwpns
    hmc_sim.sim.configure(start_seconds=JOB_SECONDS)
    outcome: dict = {}

    def spawn() -> None:
        try:
            stub.Spawn(
                pb.SpawnRequest(
                    host=HOST,
                    instance_uuid=instance,
                    flavor=flavor(1, 1024),
                    nics=[nic(INVENTORY['vswitch_osa0'])],
                    boot_volume=boot_volume(list(wwpns), ['500507680b2142e5']),
                ),
                timeout=90,
            )
        except grpc.RpcError as exc:
            outcome['error'] = exc

    spawning = threading.Thread(target=spawn)
    sockets = {'a': active.socket, 'b': standby.backend.config.listen.unix_path}
    with HealthSampler(sockets) as sampler:
        spawning.start()

        def started_job() -> bool:
            return any(r.uri.endswith('/operations/start') for r in hmc_sim.sim.requests())

        wait_for(started_job, timeout=30)
        # Paused while its Spawn waits for the start job (its next step would poll it).
        paused = time.monotonic()
        active.popen.send_signal(signal.SIGSTOP)
        wait_for(lambda: health(standby.channel) == SERVING, timeout=TTL + 4, interval=0.02)
        took = time.monotonic() - paused
        # Calls that reach the paused backend wait for it; it answers them first thing.
        queued = futures.ThreadPoolExecutor(2)
        checked = queued.submit(health, channel, '', 15)
        destroyed = queued.submit(
            stub.Destroy, pb.DestroyRequest(host=HOST, instance_uuid=new_uuid()), timeout=15
        )
        time.sleep(0.2)
        resumed_at = time.time()
        active.popen.send_signal(signal.SIGCONT)
        spawning.join(30)
        assert not spawning.is_alive()
        assert checked.result(timeout=15) == NOT_SERVING
        assert error_info(destroyed.exception(timeout=15)).reason == 'BACKEND_STANDBY'
        queued.shutdown()
        wait_for(lambda: health(channel) == NOT_SERVING, timeout=5, interval=0.02)
        time.sleep(1.0)
    print(f'takeover after SIGSTOP: {took:.2f} s (lease_ttl {TTL} s)')
    assert took < TTL + 2
    # Never both serving: the resumed backend answered NOT_SERVING before anything else.
    assert sampler.serving('a') and sampler.serving('b')
    assert not sampler.both_serving()
    # The Spawn in flight ended at its next HMC request: safe to retry on the standby.
    error = outcome['error']
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert error_info(error).reason == 'BACKEND_STANDBY'
    # Nothing changed on the HMC after the resume (the standby, now active, is idle):
    # no rollback of the NICs, no stop, no logon; logoffs only.
    changes = [
        (r.method, r.uri)
        for r in hmc_sim.sim.requests()
        if r.time >= resumed_at and r.method in ('POST', 'DELETE') and r.uri != LOGOFF_URI
    ]
    assert changes == []
    active.popen.send_signal(signal.SIGTERM)
    assert active.popen.wait(timeout=30) == 0
    output = active.output()
    lost = output.index('Lost the lease of HMC')
    assert 'fenced' in output[lost:].splitlines()[0]
    # Its log (log_requests) names a request when the reply came: one sent before the
    # pause may be logged after the loss, never one the HMC had not received before.
    logged = {
        (match[1], match[2])
        for match in re.finditer(r' HMC (POST|DELETE) (\S+) -> ', output[lost:])
        if match[2] != LOGOFF_URI
    }
    received = {(r.method, r.uri) for r in hmc_sim.sim.requests() if r.time < resumed_at}
    assert logged <= received
