"""Prometheus metrics over HTTP: calls, HMC requests, job waits, sessions and hosts of a lifecycle.

``[backend] metrics_listen`` serves them at /metrics; each assertion compares
a scrape with what the caller saw or what the simulated HMC received.
"""

from __future__ import annotations

import collections
import importlib.metadata
import re
import socket
import threading
import time
import urllib.request

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import load_config
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import wait_for
from dpmtest import write_config
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import metrics as metrics_mod
from dpm_backend.hmc import LOGOFF_URI
from dpm_backend.server import Backend

T = 10
METRICS = {'metrics_listen': '127.0.0.1:0'}
TOKEN = 'token-of-cpc10-0123456789abcdef'
TARGET = '500507680B2142E5'
DPM_HOST = 'dpm_api.v1.DPMHost'
SERVING = health_pb2.HealthCheckResponse.SERVING
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', re.I)


def scrape(running) -> list:
    """Every sample /metrics serves now."""
    url = f'http://{running.backend.metrics_address}/metrics'
    with urllib.request.urlopen(url, timeout=T) as reply:
        assert reply.status == 200
        assert reply.headers['Content-Type'].startswith('text/plain')
        text = reply.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def values(samples, name: str, *keys: str) -> dict:
    """The samples called ``name`` by the values of labels ``keys`` (zeros left out)."""
    found: dict = collections.Counter()
    for sample in samples:
        if sample.name == name and sample.value:
            found[tuple(sample.labels.get(key) for key in keys)] += sample.value
    return dict(found)


def value(samples, name: str, **labels) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def refused(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def lifecycle(running) -> str:
    """Prepare, spawn, power off and destroy one instance on cpc1; its uuid."""
    stub = running.stub
    ids = {'host': 'cpc1', 'instance_uuid': new_uuid()}
    prepared = stub.PrepareInstance(pb.PrepareInstanceRequest(**ids, flavor=flavor()), timeout=T)
    stub.Spawn(
        pb.SpawnRequest(
            **ids,
            flavor=flavor(),
            nics=[nic(INVENTORY['vswitch_osa1'])],
            boot_volume=boot_volume(list(prepared.wwpns), [TARGET]),
        ),
        timeout=T,
    )
    stub.PowerOff(pb.PowerOffRequest(**ids), timeout=T)
    stub.Destroy(pb.DestroyRequest(**ids), timeout=T)
    return ids['instance_uuid']


def hmc_code(status: int) -> str:
    return metrics_mod.HMC_SUCCESS if 200 <= status < 300 else str(status)


def test_a_lifecycle_is_counted_as_the_caller_and_the_hmc_saw_it(backend_factory):
    running = backend_factory(extra={'backend': METRICS, 'host:cpc10': {'token': TOKEN}})
    instance_uuid = lifecycle(running)
    stub = running.stub
    unknown = pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=new_uuid())
    assert refused(lambda: stub.GetInstanceInfo(unknown, timeout=T)) == grpc.StatusCode.NOT_FOUND
    # cpc10 has a token, and this call carries none: the token check refuses it.
    no_token = refused(lambda: stub.GetHostStatus(pb.GetHostStatusRequest(host='cpc10'), timeout=T))
    assert no_token == grpc.StatusCode.UNAUTHENTICATED
    health = health_pb2_grpc.HealthStub(running.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=T).status == SERVING

    samples = scrape(running)
    records = running.sim.requests()

    handled = values(
        samples, 'grpc_server_handled_total', 'grpc_service', 'grpc_method', 'grpc_code'
    )
    assert {key[1:]: n for key, n in handled.items() if key[0] == DPM_HOST} == {
        ('PrepareInstance', 'OK'): 1,
        ('Spawn', 'OK'): 1,
        ('PowerOff', 'OK'): 1,
        ('Destroy', 'OK'): 1,
        ('GetInstanceInfo', 'NOT_FOUND'): 1,
        ('GetHostStatus', 'UNAUTHENTICATED'): 1,
    }
    assert handled[('grpc.health.v1.Health', 'Check', 'OK')] == 1
    started = values(samples, 'grpc_server_started_total', 'grpc_service', 'grpc_method')
    timed = values(samples, 'grpc_server_handling_seconds_count', 'grpc_service', 'grpc_method')
    ended: dict = collections.Counter()
    for (service, method, _), n in handled.items():
        ended[(service, method)] += n
    assert started == timed == dict(ended)
    assert value(samples, 'grpc_server_started_total', grpc_type='unary') == sum(ended.values())

    # Every request the HMC received, by method, URI class and status; nothing else.
    received = collections.Counter(
        (r.method, metrics_mod.uri_class(r.uri), hmc_code(r.status)) for r in records
    )
    counted = values(samples, 'dpm_backend_hmc_requests_total', 'method', 'uri_class', 'code')
    assert counted == dict(received)
    start = ('POST', '/api/partitions/{id}/operations/start', '2xx')
    stop = ('POST', '/api/partitions/{id}/operations/stop', '2xx')
    assert (counted[start], counted[stop]) == (1, 1)
    by_class: dict = collections.Counter()
    for (method, uri_class, _), n in received.items():
        by_class[(method, uri_class)] += n
    timed_hmc = values(samples, 'dpm_backend_hmc_request_seconds_count', 'method', 'uri_class')
    assert timed_hmc == dict(by_class)

    # One wait for the start job, one for the stop job.
    waits = values(samples, 'dpm_backend_hmc_job_wait_seconds_count', 'kind')
    assert waits == {('start',): 1, ('stop',): 1}
    assert value(samples, 'dpm_backend_hmc_job_wait_seconds_sum') > 0

    logons = sum(1 for r in records if (r.method, r.uri) == ('POST', '/api/sessions'))
    logoffs = sum(1 for r in records if (r.method, r.uri) == ('DELETE', LOGOFF_URI))
    assert value(samples, 'dpm_backend_hmc_sessions') == logons - logoffs >= 1
    assert value(samples, 'dpm_backend_hmc_sessions_in_use') == 0
    assert value(samples, 'dpm_backend_hmc_reachable') == 1
    assert value(samples, 'dpm_backend_hmc_session_waits_total') == 0

    # The classic-mode CPC fails its checks; the others serve, as health says.
    serving = values(samples, 'dpm_backend_host_serving', 'host')
    assert serving == {('cpc1',): 1, ('cpc10',): 1, ('z14host',): 1}
    assert value(samples, 'dpm_backend_host_serving', host='classic') == 0
    assert value(samples, 'dpm_backend_hosts_serving') == 3
    for host in ('cpc1', 'cpc10', 'z14host', 'classic'):
        service = running.backend.host_service_name(host)
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T).status
        assert (status == SERVING) == ((host,) in serving)

    release = importlib.metadata.version('nova-dpm-grpc')
    assert value(samples, 'dpm_backend_info', version=release) == 1

    # No label names an instance or an HMC object (the simulator's ids are UUIDs too).
    assert any(UUID.search(r.uri) for r in records)
    for sample in samples:
        for label in sample.labels.values():
            assert not UUID.search(label) and instance_uuid not in label, sample


def test_streaming_calls_are_counted_when_they_end(backend_factory):
    running = backend_factory(extra={'backend': METRICS})
    reflection = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services='')
    replies = list(reflection.ServerReflectionInfo(iter([request]), timeout=T))
    assert DPM_HOST in {s.name for s in replies[0].list_services_response.service}
    # The health service's Watch runs without a thread of its own until the caller leaves.
    watch = health_pb2_grpc.HealthStub(running.channel).Watch(
        health_pb2.HealthCheckRequest(), timeout=T
    )
    assert next(watch).status == SERVING
    watch.cancel()

    def handled(kind, method, code):
        return value(
            scrape(running),
            'grpc_server_handled_total',
            grpc_type=kind,
            grpc_method=method,
            grpc_code=code,
        )

    wait_for(lambda: handled('server_stream', 'Watch', 'CANCELLED') == 1)
    assert handled('bidi_stream', 'ServerReflectionInfo', 'OK') == 1


def test_a_wait_for_a_busy_session_is_counted_and_in_use_sessions_shown(backend_factory):
    running = backend_factory(extra={'backend': METRICS, 'hmc': {'pool_size': 1}})
    pool = running.backend.pool
    hold = 0.3
    reply = {}
    with pool.client(timeout=T):
        assert value(scrape(running), 'dpm_backend_hmc_sessions_in_use') == 1
        # Every PrepareInstance takes a session (nothing cached answers it).
        request = pb.PrepareInstanceRequest(host='cpc1', instance_uuid=new_uuid(), flavor=flavor())
        caller = threading.Thread(
            target=lambda: reply.update(r=running.stub.PrepareInstance(request, timeout=T))
        )
        caller.start()
        time.sleep(hold)
    caller.join(T)
    assert 'r' in reply
    samples = scrape(running)
    assert value(samples, 'dpm_backend_hmc_session_waits_total') == 1
    assert value(samples, 'dpm_backend_hmc_session_wait_seconds_count') == 1
    assert hold / 2 < value(samples, 'dpm_backend_hmc_session_wait_seconds_sum') < T
    assert value(samples, 'dpm_backend_hmc_sessions_in_use') == 0


def test_metrics_are_off_by_default_and_the_port_closes_at_stop(backend_factory):
    assert backend_factory().backend.metrics_address == ''
    running = backend_factory(extra={'backend': METRICS})
    host, _, port = running.backend.metrics_address.rpartition(':')
    assert host == '127.0.0.1' and int(port) > 0
    assert value(scrape(running), 'dpm_backend_hmc_reachable') == 1
    running.backend.stop(grace=0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=T).close()


def test_a_failed_start_leaves_no_metrics_listener(tmp_path):
    with socket.create_server(('127.0.0.1', 0)) as busy:
        port = busy.getsockname()[1]
        extra = {'backend': {'metrics_listen': f'127.0.0.1:{port}'}}
        config = load_config(write_config(tmp_path / 'a.conf', tmp_path / 'a.sock', extra=extra))
        with pytest.raises(OSError, match=f'metrics on 127.0.0.1:{port}'):
            Backend(config).start()
        assert not (tmp_path / 'a.sock').exists()
    # The metrics listener comes up first; a gRPC listener that cannot bind closes it.
    extra = {'backend': METRICS}
    socket_path = tmp_path / 'missing' / 'b.sock'
    backend = Backend(load_config(write_config(tmp_path / 'b.conf', socket_path, extra=extra)))
    with pytest.raises(OSError):
        backend.start()
    host, _, port_text = backend.metrics_address.rpartition(':')
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port_text)), timeout=T).close()
