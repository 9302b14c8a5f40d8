"""The job layer: Start/Stop Partition jobs that fail, end elsewhere, or outlive their backend.

The simulator runs the jobs as an HMC does (202 + job URI, the partition
``starting``/``stopping``, the job ending on its own, ``set_outcome`` deciding
where it ends: rules.OUTCOMES).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import default_hosts
from dpmtest import differences
from dpmtest import find_partitions
from dpmtest import flavor
from dpmtest import instance_state
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import rejected
from dpmtest import wait_for
from dpmtest import write_config
from grpc_status import rpc_status

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import naming

T = 10
HOST = 'cpc1'
REPO = Path(__file__).resolve().parents[2]
LOCAL = [('grpc.use_local_subchannel_pool', 1)]


def _spawn_request(instance_uuid: str, wwpns) -> pb.SpawnRequest:
    return pb.SpawnRequest(
        host=HOST,
        instance_uuid=instance_uuid,
        flavor=flavor(),
        nics=[
            nic(INVENTORY['vswitch_osa0'], 'fa:16:3e:00:00:01'),
            nic(INVENTORY['vswitch_hs'], 'fa:16:3e:00:00:02'),
        ],
        boot_volume=boot_volume(list(wwpns), ['500507680b2142e5']),
    )


def _prepare(stub, instance_uuid: str):
    request = pb.PrepareInstanceRequest(host=HOST, instance_uuid=instance_uuid, flavor=flavor())
    return stub.PrepareInstance(request, timeout=T)


def _error_info(error: grpc.RpcError):
    from google.rpc import error_details_pb2

    for detail in rpc_status.from_call(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError('no ErrorInfo')


def _posts(records) -> list[str]:
    """The operations (start, stop) and deletes the HMC received, in order."""
    return [
        r.uri.rsplit('/', 1)[-1] if r.method == 'POST' else f'{r.method} {r.uri}'
        for r in records
        if (r.method == 'POST' and '/operations/' in r.uri)
        or (r.method == 'DELETE' and r.uri.startswith('/api/partitions/'))
    ]


def test_a_start_job_that_fails_fails_the_spawn_and_rolls_it_back(running):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    wwpns = _prepare(running.stub, instance_uuid).wwpns
    prepared = instance_state(running.hmc, name)
    running.sim.set_outcome(name, 'start', 'job-error')
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=T)
    # The job's error reaches the caller with the HMC's status and reason.
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = _error_info(caught.value)
    assert (info.metadata['http_status'], info.metadata['hmc_reason']) == ('500', '263')
    # The partition is as prepare left it, stopped, without the NICs the failed
    # spawn created; only its boot settings stay (a retry sets them again; with
    # no NIC behind its device numbers the command line configures nothing).
    assert [
        line for line in differences(instance_state(running.hmc, name), prepared)
        if not line.startswith('/partition/boot-')
    ] == []  # fmt: skip
    # Once the HMC starts it, Nova's retry converges.
    running.sim.set_outcome(name, 'start', 'active')
    running.stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=T)
    (partition,) = find_partitions(running.hmc, name)
    assert partition.properties['status'] == 'active' and len(partition.nics.list()) == 2


@pytest.mark.parametrize('outcome', ['paused', 'reservation-error'])
def test_a_start_that_ends_elsewhere_than_active_fails_fast_naming_the_status(running, outcome):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    wwpns = _prepare(running.stub, instance_uuid).wwpns
    prepared = instance_state(running.hmc, name)
    running.sim.set_outcome(name, 'start', outcome)
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=T)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error_info(caught.value).reason == 'PARTITION_NOT_STARTED'
    assert outcome in caught.value.details()
    # Spawn's rollback ran: the partition is stopped again (or left in
    # reservation-error, which holds nothing) without its NICs.
    (partition,) = find_partitions(running.hmc, name)
    assert partition.properties['status'] in ('stopped', 'reservation-error')
    assert partition.nics.list() == []
    assert [
        line for line in differences(instance_state(running.hmc, name), prepared)
        if not line.startswith(('/partition/boot-', '/partition/status'))
    ] == []  # fmt: skip
    assert rejected(running.sim.requests()) == []


def test_a_partition_in_reservation_error_is_started_or_deleted_without_a_stop(running):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    ids = {'host': HOST, 'instance_uuid': instance_uuid}
    wwpns = _prepare(running.stub, instance_uuid).wwpns
    running.stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=T)
    (partition,) = find_partitions(running.hmc, name)
    with running.sim.lock:  # what the HMC shows when the CPC could not reserve its resources
        partition.properties['status'] = 'reservation-error'
    running.sim.clear_requests()

    info = running.stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=T).info
    assert info.power_state == pb.POWER_STATE_SHUTDOWN
    off = running.stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    assert off.info.power_state == pb.POWER_STATE_SHUTDOWN
    assert _posts(running.sim.requests()) == []  # never Stop: the HMC refuses it there (409,1)

    on = running.stub.PowerOn(pb.PowerOnRequest(**ids), timeout=T)
    assert on.info.power_state == pb.POWER_STATE_RUNNING
    assert _posts(running.sim.requests()) == ['start']

    with running.sim.lock:
        partition.properties['status'] = 'reservation-error'
    running.sim.clear_requests()
    assert running.stub.Destroy(pb.DestroyRequest(**ids), timeout=T).existed
    assert _posts(running.sim.requests()) == [f'DELETE {partition.uri}']
    assert find_partitions(running.hmc, name) == []
    assert rejected(running.sim.requests()) == []


def test_a_backend_killed_while_its_start_job_runs_is_restarted_and_the_retry_converges(
    tmp_path, hmc_sim
):
    """kill -9 of a real backend process mid-job; the simulator (the HMC) keeps running."""
    socket_path = tmp_path / 'j.sock'
    hosts = [h for h in default_hosts() if h.name == HOST]
    config = write_config(tmp_path / 'j.conf', socket_path, hosts, hmc=hmc_sim)
    command = [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)]
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)

    def stub_when_serving(channel):
        stub = pb_grpc.DPMHostStub(channel)

        def serving():
            try:
                stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=T)
            except grpc.RpcError:
                return False
            return True

        wait_for(serving, timeout=30, interval=0.1)
        return stub

    def running_jobs():
        return [j for j in hmc_sim.sim.dump(jobs=True)['jobs'] if j['status'] != 'complete']

    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(f'unix:{socket_path}', options=LOCAL) as channel:
            stub = stub_when_serving(channel)
            wwpns = _prepare(stub, instance_uuid).wwpns
            hmc_sim.sim.configure(start_seconds=2)
            pending = stub.Spawn.future(_spawn_request(instance_uuid, wwpns), timeout=T)
            wait_for(running_jobs, timeout=T)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(T)
            with pytest.raises(grpc.RpcError):
                pending.result()
    finally:
        if first.poll() is None:
            first.kill()
    # The job goes on without its client; the partition comes up on its own.
    assert [j['operation'] for j in running_jobs()] == ['start']
    second = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(f'unix:{socket_path}', options=LOCAL) as channel:
            stub = stub_when_serving(channel)
            # Nova retries the spawn (prepare first, as the driver does).
            assert list(_prepare(stub, instance_uuid).wwpns) == list(wwpns)
            stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=T)
            (partition,) = find_partitions(hmc_sim.sim.hmc, name)
            assert partition.properties['status'] == 'active'
            # One NIC per port and one vHBA per mapping: the dead backend's
            # NICs were reused by name, nothing duplicated; no job left running.
            names = [n.properties['name'] for n in partition.nics.list()]
            assert len(names) == len(set(names)) == 2 and len(partition.hbas.list()) == 2
            assert running_jobs() == []
    finally:
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output


def _start_posts(records, partition) -> list:
    start = f'{partition.uri}/operations/start'
    return [r for r in records if r.method == 'POST' and r.uri == start]


def test_a_start_is_not_begun_without_the_time_this_hmcs_starts_take(running):
    running.sim.configure(start_seconds=1.5)
    first = new_uuid()
    running.stub.Spawn(_spawn_request(first, _prepare(running.stub, first).wwpns), timeout=T)
    # The backend has learnt that a start takes about 1.5 s here.
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    wwpns = _prepare(running.stub, instance_uuid).wwpns
    (partition,) = find_partitions(running.hmc, name)
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=1.0)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Not begun: the partition is stopped, without the spawn's NICs, and stays so.
    wait_for(lambda: partition.nics.list() == [], timeout=T)
    assert _start_posts(running.sim.requests(), partition) == []
    assert partition.properties['status'] == 'stopped'
    running.stub.Spawn(_spawn_request(instance_uuid, wwpns), timeout=T)
    assert partition.properties['status'] == 'active'


def test_a_cancelled_spawn_does_not_start_the_partition(running):
    instance_uuid = new_uuid()
    name = naming.partition_name(HOST, instance_uuid)
    wwpns = _prepare(running.stub, instance_uuid).wwpns
    (partition,) = find_partitions(running.hmc, name)
    running.sim.configure(latency=0.3)  # each HMC request of the spawn takes 0.3 s
    running.sim.clear_requests()
    pending = running.stub.Spawn.future(_spawn_request(instance_uuid, wwpns), timeout=T)
    wait_for(lambda: running.sim.requests(), timeout=T)  # the spawn is under way
    assert pending.cancel()
    # The spawn ends without starting the partition and takes its NICs away.
    wait_for(lambda: running.backend.servicer.slots.in_use() == 0, timeout=T)
    assert _start_posts(running.sim.requests(), partition) == []
    assert partition.properties['status'] == 'stopped' and partition.nics.list() == []
