"""Recovery: a backend dying mid-operation, expired HMC sessions, slow HMC jobs.

Process death is simulated in-process, deterministically at every request: the
backend under test stops dead at HMC request k (before the HMC sees it, or
after the HMC applied it and before the reply arrives), never makes another
HMC request, and is abandoned. A new backend is started on the same simulated
HMC, as a restarted process finds the real HMC, and the call is retried. A
real ``kill -9`` of a backend process is tested for what it leaves behind (a
stale socket file, which the restart replaces), and, while an HMC job runs, in
tests/faults/test_jobs.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest
import zhmcclient
from dpmtest import INVENTORY
from dpmtest import USERID
from dpmtest import RequestLog
from dpmtest import boot_volume
from dpmtest import count_cases
from dpmtest import default_hosts
from dpmtest import find_partitions
from dpmtest import flavor
from dpmtest import instance_state
from dpmtest import load_config
from dpmtest import nic
from dpmtest import pristine
from dpmtest import wait_for
from dpmtest import write_config
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import naming
from dpm_backend.server import Backend

T = 10
# Each backend gets channels of its own: a subchannel shared with a channel to a
# stopped predecessor on the same socket path would wait out a reconnect backoff.
LOCAL = [('grpc.use_local_subchannel_pool', 1)]
HOST = 'cpc1'
UUID = '7e3d5b2a-1c4f-4a8e-9b6d-0f1e2d3c4b5a'
NAME = naming.partition_name(HOST, UUID)
PORTS = ('1b2c3d4e-5f6a-4b7c-8d9e-000000000001', '1b2c3d4e-5f6a-4b7c-8d9e-000000000002')
REPO = Path(__file__).resolve().parents[2]


class Died(zhmcclient.ConnectionError):
    """What a dead process's requests do: nothing."""

    def __init__(self) -> None:
        super().__init__('the backend process is dead', None)


class Death:
    """Interceptor that stops its backend dead at the k-th request of a window."""

    def __init__(self, index: int, after: bool) -> None:
        self.index, self.after = index, after
        self.armed = False
        self.seen = 0
        self.dead = False
        self.reached = threading.Event()
        self._release = threading.Event()

    def __call__(self, method, uri, proceed):
        if self.dead:
            raise Died()
        if not self.armed:
            return proceed()
        position = self.seen
        self.seen += 1
        if position != self.index:
            return proceed()
        if self.after:
            # The HMC applied (or refused) it; the reply never arrives.
            with contextlib.suppress(zhmcclient.Error):
                proceed()
        self.reached.set()
        self._release.wait(T)
        raise Died()

    def kill(self) -> None:
        self.dead = True
        self._release.set()


class Process:
    """A backend on the simulated HMC, as one process's lifetime."""

    def __init__(self, config, death: Death | None = None) -> None:
        self.log = RequestLog()
        self.backend = Backend(config, interceptors=[self.log])
        if death:
            self.backend.pool.interceptors.append(death)
        self.backend.start()
        wait_for(lambda: self.backend.pool.reachability.reachable and self.backend.hosts_checked())
        self.channel = grpc.insecure_channel(self.backend.address, options=LOCAL)
        self.stub = pb_grpc.DPMHostStub(self.channel)

    def idle(self) -> bool:
        servicer = self.backend.servicer
        return servicer.slots.in_use() == 0

    def end(self) -> None:
        # Let handlers still busy with the HMC (past their caller's deadline) end.
        with contextlib.suppress(AssertionError):
            wait_for(self.idle, timeout=5)
        self.channel.close()
        self.backend.stop(grace=0)


@pytest.fixture(scope='module')
def served(simulators):
    return simulators()


@pytest.fixture(scope='module')
def config(tmp_path_factory, served):
    tmp = tmp_path_factory.mktemp('recovery')
    hosts = [h for h in default_hosts() if h.name == HOST]
    return load_config(write_config(tmp / 'b.conf', tmp / 'b.sock', hosts, hmc=served))


def slots_config(tmp_path, served, slots: int):
    """The module's config with ``slots`` concurrent operations."""
    hosts = [h for h in default_hosts() if h.name == HOST]
    extra = {'backend': {'max_concurrent_operations': slots}}
    path = write_config(tmp_path / 'b.conf', tmp_path / 'b.sock', hosts, extra, hmc=served)
    return load_config(path)


def taken_at_once(stub, method: str, request) -> bool:
    """Whether the backend takes a call at once: not shed for want of an operation
    slot (RESOURCE_EXHAUSTED), nor left waiting for its instance's turn until its
    short deadline (DEADLINE_EXCEEDED)."""
    try:
        getattr(stub, method)(request, timeout=0.5)
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED):
            return False
        # Taken, and answered from the HMC's state (an instance without a partition).
        assert exc.code() == grpc.StatusCode.NOT_FOUND, exc.details()
    return True


def spawn_request(wwpns) -> pb.SpawnRequest:
    return pb.SpawnRequest(
        host=HOST,
        instance_uuid=UUID,
        flavor=flavor(),
        nics=[
            nic(INVENTORY['vswitch_osa0'], 'fa:16:3e:00:00:01', port_id=PORTS[0]),
            nic(INVENTORY['vswitch_hs'], 'fa:16:3e:00:00:02', port_id=PORTS[1]),
        ],
        boot_volume=boot_volume(list(wwpns), ['500507680b2142e5']),
    )


def prepare(stub):
    return stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=HOST, instance_uuid=UUID, flavor=flavor()), timeout=T
    )


# Nova's sequence: prepare (connector), then spawn. The call that dies is one of them.
FLOWS = {
    'prepare': (lambda stub, w: None, lambda stub, w: prepare(stub)),
    'spawn': (
        lambda stub, w: prepare(stub),
        lambda stub, w: stub.Spawn(spawn_request(w), timeout=T),
    ),
    'spawn-unprepared': (
        lambda stub, w: stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=T),
        lambda stub, w: stub.Spawn(spawn_request(w), timeout=T),
    ),
}


@pytest.fixture(scope='module')
def reference(config, served):
    pristine(served)
    process = Process(config)
    try:
        wwpns = list(prepare(process.stub).wwpns)
    finally:
        process.end()
    result = {}
    for flow, (setup, call) in FLOWS.items():
        pristine(served)
        process = Process(config)
        try:
            setup(process.stub, wwpns)
            process.log.clear()
            call(process.stub, wwpns)
            result[flow] = (process.log.count(), instance_state(served.sim.hmc, NAME))
        finally:
            process.end()
    return wwpns, result


@pytest.mark.parametrize('after', [False, True], ids=['before-the-hmc', 'after-the-hmc'])
@pytest.mark.parametrize('flow', sorted(FLOWS))
def test_backend_dying_at_any_request_then_restarted_converges(
    config, served, reference, request, flow, after
):
    wwpns, results = reference
    requests, want = results[flow]
    setup, call = FLOWS[flow]
    problems = []
    for k in range(requests):
        pristine(served)
        hmc = served.sim.hmc
        death = Death(k, after)
        first = Process(config, death)
        setup(first.stub, wwpns)
        death.armed = True
        pending = threading.Thread(target=_call_ignoring_errors, args=(call, first.stub, wwpns))
        pending.start()
        assert death.reached.wait(T), f'k={k} never reached'
        death.kill()
        first.end()
        pending.join(T)
        # A restarted process: new backend, same HMC; Nova retries its calls.
        second = Process(config)
        try:
            setup(second.stub, wwpns)
            call(second.stub, wwpns)
            partitions = find_partitions(hmc, NAME)
            state = instance_state(hmc, NAME)
            if len(partitions) != 1 or state != want:
                problems.append(f'{flow} k={k}: {len(partitions)} partitions, state {state}')
        finally:
            second.end()
    count_cases(request.config, 'fault: backend death (flow x request index x side)', requests)
    assert not problems, '\n'.join(problems)


def _call_ignoring_errors(call, stub, wwpns) -> None:
    # The caller of a dead backend sees an error; Nova retries.
    with contextlib.suppress(grpc.RpcError):
        call(stub, wwpns)


def test_kill_9_leaves_a_socket_that_the_restarted_backend_replaces(tmp_path, served):
    pristine(served)
    socket_path = tmp_path / 'k.sock'
    config = write_config(tmp_path / 'k.conf', socket_path, hmc=served)
    command = [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)]

    def serving() -> bool:
        with grpc.insecure_channel(f'unix:{socket_path}', options=LOCAL) as channel:
            try:
                status = (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(), timeout=1)
                    .status
                )
                if status != health_pb2.HealthCheckResponse.SERVING:
                    return False
                pb_grpc.DPMHostStub(channel).ListInstances(
                    pb.ListInstancesRequest(host=HOST), timeout=T
                )
            except grpc.RpcError:
                return False
        return True

    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(serving, timeout=30, interval=0.1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(T)
    finally:
        if first.poll() is None:
            first.kill()
    assert socket_path.exists()  # nobody cleaned up
    second = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(serving, timeout=30, interval=0.1)
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output


def _logons(served) -> int:
    return served.sim.session_counts()['userids'].get(USERID, {}).get('logons', 0)


def test_an_expired_session_is_renewed_by_zhmcclient_without_the_caller_noticing(config, served):
    pristine(served)
    process = Process(config)
    try:
        request = pb.DestroyRequest(host=HOST, instance_uuid=str(uuid.uuid4()))
        process.stub.Destroy(request, timeout=T)
        before = process.backend.pool.logged_on_session_ids()
        logons = _logons(served)
        served.sim.expire_sessions()  # the HMC forgets every session
        process.stub.Destroy(request, timeout=T)
        # zhmcclient got 403 reason 5, logged on again and repeated the request.
        assert _logons(served) == logons + 1
        assert any(r.status == 403 and r.reason == 5 for r in served.sim.requests())
        after = process.backend.pool.logged_on_session_ids()
        assert len(after) == 1 and after != before
    finally:
        process.end()


def test_a_session_zhmcclient_cannot_renew_is_unavailable_and_dropped(config, served):
    """zhmcclient raises ServerAuthError when its own re-logon fails (zc _session.py)."""
    pristine(served)
    process = Process(config)
    try:
        request = pb.DestroyRequest(host=HOST, instance_uuid=str(uuid.uuid4()))
        process.stub.Destroy(request, timeout=T)
        assert len(process.backend.pool.logged_on_session_ids()) == 1
        served.sim.expire_sessions()
        served.sim.configure(logon_refused=True)
        with pytest.raises(grpc.RpcError) as caught:
            process.stub.Destroy(request, timeout=T)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # The session is out of the pool: nothing holds the dead session id.
        assert process.backend.pool.logged_on_session_ids() == []
        served.sim.configure(logon_refused=False)
        process.log.clear()
        process.stub.Destroy(request, timeout=T)
        assert process.log.requests[0] == ('POST', '/api/sessions')
        assert len(process.backend.pool.logged_on_session_ids()) == 1
    finally:
        process.end()


@pytest.mark.parametrize('operation', ['Spawn', 'PowerOff', 'Destroy'])
def test_a_slow_hmc_job_ends_at_the_callers_deadline_and_a_retry_converges(
    config, served, reference, operation, tmp_path
):
    wwpns, _ = reference
    want = _reference_state(config, served, wwpns, operation)
    pristine(served)
    # One operation at a time: a call accepted shows that no other holds the slot.
    process = Process(slots_config(tmp_path, served, 1))
    try:
        prepare(process.stub)
        if operation != 'Spawn':
            process.stub.Spawn(spawn_request(wwpns), timeout=T)
        # Real HMC jobs that outlast the caller's deadline.
        served.sim.configure(start_seconds=2.5, stop_seconds=2.5)
        request = (
            spawn_request(wwpns)
            if operation == 'Spawn'
            else getattr(pb, f'{operation}Request')(host=HOST, instance_uuid=UUID)
        )
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            getattr(process.stub, operation)(request, timeout=2)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2.5
        # The backend gave up too: before the job ends, a call for the same
        # instance gets its turn and the only operation slot at once.
        again = pb.PrepareInstanceRequest(host=HOST, instance_uuid=UUID, flavor=flavor())
        wait_for(lambda: taken_at_once(process.stub, 'PrepareInstance', again), timeout=2)
        assert time.monotonic() - started < 3.5
        assert _running_jobs(served), 'the job ended first: nothing was shown'
        # Once the job is done, a retry converges on the fault-free result.
        wait_for(lambda: not _running_jobs(served), timeout=T)
        getattr(process.stub, operation)(request, timeout=T)
        assert instance_state(served.sim.hmc, NAME) == want
    finally:
        process.end()


def _running_jobs(served) -> list:
    return [job for job in served.sim.dump()['jobs'] if job.get('status') != 'complete']


def _reference_state(config, served, wwpns, operation):
    pristine(served)
    process = Process(config)
    try:
        prepare(process.stub)
        process.stub.Spawn(spawn_request(wwpns), timeout=T)
        if operation != 'Spawn':
            getattr(process.stub, operation)(
                getattr(pb, f'{operation}Request')(host=HOST, instance_uuid=UUID), timeout=T
            )
        return instance_state(served.sim.hmc, NAME)
    finally:
        process.end()


def test_a_call_queued_behind_a_slow_one_for_the_same_instance_ends_at_its_deadline(
    served, reference, tmp_path
):
    wwpns, _ = reference
    pristine(served)
    # Two operations at a time: the slow one and the queued one hold both.
    process = Process(slots_config(tmp_path, served, 2))
    try:
        prepare(process.stub)
        served.sim.configure(start_seconds=3)
        first = process.stub.Spawn.future(spawn_request(wwpns), timeout=2.5)
        wait_for(lambda: _running_jobs(served), timeout=T)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            process.stub.PowerOff(pb.PowerOffRequest(host=HOST, instance_uuid=UUID), timeout=1)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The queued call left the backend at its deadline, not after the slow
        # one: its operation slot takes a call for another instance.
        other = pb.PowerOffRequest(host=HOST, instance_uuid=str(uuid.uuid4()))
        wait_for(lambda: taken_at_once(process.stub, 'PowerOff', other), timeout=1)
        assert time.monotonic() - started < 2
        assert _running_jobs(served), 'the slow call ended first: nothing was shown'
        with pytest.raises(grpc.RpcError):
            first.result()
    finally:
        process.end()
