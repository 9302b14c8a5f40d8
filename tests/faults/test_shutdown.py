"""SIGTERM with spawns in flight and slow HMC jobs: drain, halt, log off, exit.

A real backend process on the simulator (in this process, so it outlives the
backend): 8 spawns are in flight, their start jobs take 5 s, ``grace_period``
is 2 s. After the grace period no HMC request but logoffs may start, every
session is logged off, and the process exits within the grace plus a few
seconds, with code 0.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
from dpmtest import INVENTORY
from dpmtest import USERID
from dpmtest import boot_volume
from dpmtest import default_hosts
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import wait_for
from dpmtest import write_config
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
HOST = 'cpc1'
# Long enough that a loaded machine sees the drain well inside it; shorter than the jobs.
GRACE = 4
JOB_SECONDS = 6.0
SPAWNS = 8
# An HMC request sent just before the grace ended still gets its reply.
SLACK = 0.5


def _spawn(stub, instance_uuid: str, wwpns) -> None:
    stub.Spawn(
        pb.SpawnRequest(
            host=HOST,
            instance_uuid=instance_uuid,
            flavor=flavor(1, 1024),
            nics=[nic(INVENTORY['vswitch_osa0'], 'fa:16:3e:00:00:01')],
            boot_volume=boot_volume(list(wwpns), ['500507680b2142e5']),
        ),
        timeout=60,
    )


def test_sigterm_with_spawns_in_flight_halts_after_the_grace_and_logs_off(tmp_path, hmc_sim):
    socket_path = tmp_path / 's.sock'
    hosts = [h for h in default_hosts() if h.name == HOST]
    for host in hosts:
        host.max_processors, host.max_memory = 16, 16384
    config = write_config(
        tmp_path / 's.conf',
        socket_path,
        hosts,
        {'backend': {'grace_period': GRACE}, 'hmc': {'pool_size': 4}},
        hmc=hmc_sim,
    )
    counts_before = hmc_sim.sim.session_counts()
    # Sessions that earlier tests' killed backends left open on the shared simulator.
    open_before = counts_before['open']
    before = counts_before['userids'].get(USERID, {'logons': 0, 'logoffs': 0})
    log_path = tmp_path / 'backend.log'
    # A file, not a pipe nobody reads while the backend runs: it never blocks on a write.
    log_file = log_path.open('w')
    backend = subprocess.Popen(
        [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
        cwd=REPO,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    channel = grpc.insecure_channel(f'unix:{socket_path}')
    pool = futures.ThreadPoolExecutor(SPAWNS)
    try:
        stub = pb_grpc.DPMHostStub(channel)

        def serving() -> bool:
            try:
                stub.ListInstances(pb.ListInstancesRequest(host=HOST), timeout=5)
            except grpc.RpcError:
                return False
            return True

        wait_for(serving, timeout=30, interval=0.1)
        uuids = [new_uuid() for _ in range(SPAWNS)]
        connectors = {
            u: stub.PrepareInstance(
                pb.PrepareInstanceRequest(host=HOST, instance_uuid=u, flavor=flavor(1, 1024)),
                timeout=10,
            ).wwpns
            for u in uuids
        }
        hmc_sim.sim.configure(start_seconds=JOB_SECONDS)
        spawns = [pool.submit(_spawn, stub, u, connectors[u]) for u in uuids]

        def starts() -> list:
            return [r for r in hmc_sim.sim.requests() if r.uri.endswith('/operations/start')]

        wait_for(lambda: len(starts()) >= 2, timeout=10)
        sigterm = time.time()
        backend.send_signal(signal.SIGTERM)

        def refused() -> bool:
            # A new channel each time: what a health checker arriving now sees.
            with grpc.insecure_channel(f'unix:{socket_path}') as fresh:
                try:
                    health_pb2_grpc.HealthStub(fresh).Check(
                        health_pb2.HealthCheckRequest(), timeout=0.5
                    )
                except grpc.RpcError as exc:
                    return exc.code() == grpc.StatusCode.UNAVAILABLE
            return False

        # While the spawns drain, new calls (health checks included) are refused.
        wait_for(refused, timeout=GRACE / 2, interval=0.05)
        assert backend.poll() is None and not all(spawn.done() for spawn in spawns)
        backend.wait(timeout=GRACE + 15)
        exited = time.time()
        errors = []
        for spawn in spawns:
            try:
                spawn.result(timeout=10)
            except grpc.RpcError as exc:
                errors.append(exc.code())
    finally:
        if backend.poll() is None:
            backend.kill()
        channel.close()
        pool.shutdown(wait=False, cancel_futures=True)
        log_file.close()

    output = log_path.read_text()
    assert backend.returncode == 0, output
    # Grace, then at most the halt wait for a request already sent, not the 5 s jobs.
    assert exited - sigterm < GRACE + 4, output
    # The callers of spawns that could not finish were told (none hangs).
    assert errors and set(errors) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    late = [
        (r.method, r.uri)
        for r in hmc_sim.sim.requests()
        if r.time > sigterm + GRACE + SLACK and r.userid == USERID
    ]
    assert {uri for _, uri in late} <= {'/api/sessions/this-session'}, late
    sessions = hmc_sim.sim.session_counts()
    counts = sessions['userids'][USERID]
    logons, logoffs = (counts[k] - before[k] for k in ('logons', 'logoffs'))
    assert sessions['open'] == open_before and logons == logoffs > 0, (sessions, before)
    assert 'Stopped; logged off' in output
