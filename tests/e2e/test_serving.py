"""Serving: health, reflection, grpcurl, HMC outages, draining, sessions, secrets."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import PASSWORD
from dpmtest import USERID
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import write_config
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_api.v1 import dpm_host_pb2 as pb

T = 10
GRPCURL = str(Path(sys.executable).parent / 'grpcurl')
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(channel, service='') -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=T).status


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError('condition not reached')
        time.sleep(0.05)


def grpcurl(socket_path, *words, data: str | None = None) -> subprocess.CompletedProcess:
    """Run grpcurl as an operator would: flags, the socket, then verb or method."""
    flags = ['-plaintext', '-unix'] + (['-d', data] if data is not None else [])
    return subprocess.run(
        [GRPCURL, *flags, str(socket_path), *words],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_socket_is_created_with_the_configured_mode(running):
    path = running.backend.config.listen.unix_path
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_the_socket_never_appears_with_a_wider_mode_and_the_umask_is_left_alone(
    backend_factory, monkeypatch
):
    """Other threads create files meanwhile: the process umask must not change."""
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, 'umask', lambda mask: calls.append(mask) or real_umask(mask))
    seen = []
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        # The socket reaches its path by a hard link, with its final mode already.
        seen.append((dst, stat.S_IMODE(os.stat(src).st_mode)))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, 'link', link)
    running = backend_factory()
    path = running.backend.config.listen.unix_path
    assert calls == []
    assert seen == [(path, 0o660)]
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith('.dpm-backend-')]


def test_grpcurl_lists_describes_and_calls_through_reflection(running):
    sock = running.backend.config.listen.unix_path
    listed = grpcurl(sock, 'list')
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {'dpm_api.v1.DPMHost', 'grpc.health.v1.Health'}
    described = grpcurl(sock, 'describe', 'dpm_api.v1.DPMHost')
    assert 'rpc Spawn' in described.stdout and 'rpc GetHostStatus' in described.stdout
    status = grpcurl(sock, 'dpm_api.v1.DPMHost/GetHostStatus', data='{"host": "cpc1"}')
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)['status']['hypervisor_type'] == 'PRSM'
    checked = grpcurl(sock, 'grpc.health.v1.Health/Check')
    assert json.loads(checked.stdout) == {'status': 'SERVING'}
    missing = grpcurl(sock, 'dpm_api.v1.DPMHost/ListInstances', data='{"host": "nope"}')
    assert missing.returncode != 0 and 'NotFound' in missing.stderr + missing.stdout


def test_hmc_outage_turns_health_off_and_back_on(running):
    wait_for(lambda: health(running.channel) == SERVING)
    running.sim.configure(enabled=False)  # the HMC drops every connection
    with pytest.raises(grpc.RpcError) as caught:
        running.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert health(running.channel) == NOT_SERVING
    assert health(running.channel, 'dpm_api.v1.DPMHost') == NOT_SERVING
    running.sim.configure(enabled=True)
    # The probe notices by itself, without any DPMHost call.
    wait_for(lambda: health(running.channel) == SERVING)
    running.stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)


def test_backend_starts_while_the_hmc_is_unreachable_and_serves_once_a_probe_answers(
    backend_factory, hmc_sim
):
    hmc_sim.sim.configure(enabled=False)
    running = backend_factory()
    # Probes reach the HMC's address (and are dropped) while health stays off.
    wait_for(lambda: sum(1 for r in hmc_sim.sim.requests() if r.uri == '/api/version') >= 2)
    assert health(running.channel) == NOT_SERVING
    assert health(running.channel, running.backend.host_service_name('cpc1')) == NOT_SERVING
    hmc_sim.sim.configure(enabled=True)
    wait_for(lambda: health(running.channel) == SERVING)
    # The hosts are checked once the HMC answers, then served.
    wait_for(lambda: health(running.channel, running.backend.host_service_name('cpc1')) == SERVING)


def test_health_answers_while_every_operation_slot_waits_on_the_hmc(backend_factory):
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow_hmc(method, uri, proceed):
        if method == 'GET' and '/partitions' in uri:
            entered.release()
            release.wait(30)
        return proceed()

    running = backend_factory(
        extra={'backend': {'max_concurrent_operations': '4'}, 'hmc': {'pool_size': '4'}},
        interceptors=[slow_hmc],
    )
    wait_for(lambda: health(running.channel) == SERVING)
    calls = [
        running.stub.ListInstances.future(pb.ListInstancesRequest(host='cpc1'), timeout=30)
        for _ in range(4)
    ]
    try:
        for _ in range(4):
            assert entered.acquire(timeout=10)
        assert health(running.channel) == SERVING
        with pytest.raises(grpc.RpcError) as caught:
            running.stub.ListInstances(pb.ListInstancesRequest(host='cpc10'), timeout=T)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        release.set()
    assert all(call.result().instances == [] for call in calls)


def test_calls_for_different_hosts_do_not_wait_for_each_other(running):
    cpc10_done = threading.Event()
    held, waited = [], []

    def hold_cpc1_until_cpc10_answered(method, uri, proceed):
        # The first partition list is cpc1's (cpc10 has not called yet).
        if '/partitions' in uri and not held:
            held.append(uri)
            waited.append(cpc10_done.wait(10))
        return proceed()

    running.backend.pool.interceptors.insert(0, hold_cpc1_until_cpc10_answered)
    first = running.stub.ListInstances.future(pb.ListInstancesRequest(host='cpc1'), timeout=30)
    wait_for(lambda: held)  # cpc1's list is being held
    running.stub.ListInstances(pb.ListInstancesRequest(host='cpc10'), timeout=T)
    cpc10_done.set()
    first.result()
    # Had cpc10 queued behind cpc1, the wait above would have timed out.
    assert waited == [True]


def test_stop_logs_off_every_hmc_session(backend_factory):
    running = backend_factory()
    # The start-up checks logged one on already.
    before = set(running.backend.pool.logged_on_session_ids())
    calls = [
        running.stub.PrepareInstance.future(
            pb.PrepareInstanceRequest(host=h, instance_uuid=new_uuid(), flavor=flavor(1, 512)),
            timeout=T,
        )
        for h in ('cpc1', 'cpc10', 'cpc1', 'cpc10')
    ]
    for call in calls:
        call.result()
    sessions = running.backend.pool.logged_on_session_ids()
    assert 1 <= len(sessions) <= running.backend.config.hmc.pool_size
    open_before = running.sim.session_counts()['open']
    logons = running.log.requests.count(('POST', '/api/sessions'))
    assert logons == len(set(sessions) - before)
    running.log.clear()
    running.backend.stop(grace=1)
    assert running.log.requests == [('DELETE', '/api/sessions/this-session')] * len(sessions)
    assert running.backend.pool.logged_on_session_ids() == []
    # The HMC forgot them all.
    assert running.sim.session_counts()['open'] == open_before - len(sessions)


def run_backend_process(tmp_path: Path, hmc, extra=None) -> tuple[subprocess.Popen, Path]:
    """A dpm-backend process; its log goes to a file (a full pipe would block it)."""
    socket_path = tmp_path / 'p.sock'
    config = write_config(tmp_path / 'p.conf', socket_path, extra=extra, hmc=hmc)
    with open(tmp_path / 'p.log', 'w') as log:
        process = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return process, socket_path


def stopped_output(process: subprocess.Popen, tmp_path: Path) -> str:
    process.wait(timeout=30)
    return (tmp_path / 'p.log').read_text()


def test_sigterm_drains_and_exits_cleanly(tmp_path, hmc_sim):
    def counts():
        return hmc_sim.sim.session_counts()['userids'].get(USERID, {'logons': 0, 'logoffs': 0})

    before = counts()
    process, socket_path = run_backend_process(tmp_path, hmc_sim)
    try:
        wait_for(socket_path.exists)
        with grpc.insecure_channel(f'unix:{socket_path}') as channel:
            wait_for(lambda: health(channel) == SERVING)
            stub = __import__('dpm_api.v1.dpm_host_pb2_grpc', fromlist=['x']).DPMHostStub(channel)
            stub.ListInstances(pb.ListInstancesRequest(host='cpc1'), timeout=T)
        process.send_signal(signal.SIGTERM)
        output = stopped_output(process, tmp_path)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    after = counts()
    logons = after['logons'] - before['logons']
    # Every session it logged on (start-up checks, the call) is logged off.
    assert logons >= 1 and after['logoffs'] - before['logoffs'] == logons
    assert f'logged off {logons} HMC sessions' in output
    assert not socket_path.exists()


def test_password_never_appears_in_debug_logs_or_errors(tmp_path, hmc_sim):
    process, socket_path = run_backend_process(
        tmp_path, hmc_sim, extra={'DEFAULT': {'debug': 'true'}, 'hmc': {'log_requests': 'true'}}
    )
    try:
        wait_for(socket_path.exists)
        with grpc.insecure_channel(f'unix:{socket_path}') as channel:
            wait_for(lambda: health(channel) == SERVING)
            from dpm_api.v1 import dpm_host_pb2_grpc

            stub = dpm_host_pb2_grpc.DPMHostStub(channel)
            instance_uuid = new_uuid()
            prepared = stub.PrepareInstance(
                pb.PrepareInstanceRequest(
                    host='cpc1', instance_uuid=instance_uuid, flavor=flavor()
                ),
                timeout=T,
            )
            stub.Spawn(
                pb.SpawnRequest(
                    host='cpc1',
                    instance_uuid=instance_uuid,
                    flavor=flavor(),
                    nics=[nic(INVENTORY['vswitch_osa0'])],
                    boot_volume=boot_volume(list(prepared.wwpns), ['500507680b2142e5']),
                ),
                timeout=T,
            )
            details = []
            for request in (
                pb.GetHostStatusRequest(host='classic'),
                pb.GetHostStatusRequest(host='nope'),
            ):
                try:
                    stub.GetHostStatus(request, timeout=T)
                except grpc.RpcError as exc:
                    details.append(exc.details() + repr(exc.trailing_metadata()))
        process.send_signal(signal.SIGTERM)
        output = stopped_output(process, tmp_path)
    finally:
        if process.poll() is None:
            process.kill()
    assert 'DEBUG' in output and 'POST /api/sessions' in output
    assert PASSWORD not in output
    assert len(details) == 2 and not any(PASSWORD in d for d in details)


def test_loopback_tcp_listener_serves_the_same_api(backend_factory):
    running = backend_factory(
        extra={'backend': {'listen': '127.0.0.1:0', 'allow_insecure_loopback': 'true'}}
    )
    address = running.backend.address
    assert address.startswith('127.0.0.1:') and not address.endswith(':0')
    with grpc.insecure_channel(address) as channel:
        wait_for(lambda: health(channel) == SERVING)
        from dpm_api.v1 import dpm_host_pb2_grpc

        reply = dpm_host_pb2_grpc.DPMHostStub(channel).GetHostStatus(
            pb.GetHostStatusRequest(host='cpc1'), timeout=T
        )
    assert reply.status.cpc_name == 'CPCZ13'
