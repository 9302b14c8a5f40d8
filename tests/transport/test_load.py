"""Load: 200 concurrent mixed calls with long spawns in flight, over the unix socket.

Long spawns (their HMC start job does not end until the test says so) hold
operation slots and HMC sessions. Meanwhile 200 mixed calls arrive at once:
the backend answers each of them (RESOURCE_EXHAUSTED when it is full, never
a hang; a call for an instance that a long spawn holds waits its turn until
its own deadline), and every health check is answered SERVING meanwhile.
Latencies depend on the machine: they are printed here and measured in
``make bench``, not asserted.
"""

from __future__ import annotations

import statistics
import threading
import time

import grpc
from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import wait_for
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc

T = 30
# The deadline of calls for the instances the long spawns hold.
BUSY_T = 2
LONG_SPAWNS = 4
CALLS = 200
PROBES = 50


class StartGate:
    """Interceptor: partition start jobs block until opened (a long HMC job)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def __call__(self, method, uri, proceed):
        if method == 'POST' and uri.endswith('/operations/start'):
            with self._lock:
                self.waiting += 1
            self.open.wait(T)
        return proceed()


def mixed_requests(prepared: list[tuple[str, list[str]]]) -> list[tuple[str, object]]:
    """CALLS (method name, request) pairs of every kind; most need the HMC."""
    calls = []
    for index in range(CALLS):
        host = ('cpc1', 'cpc10', 'z14host')[index % 3]
        uuid, wwpns = prepared[index % len(prepared)]
        ids = {'host': 'cpc1', 'instance_uuid': uuid}
        calls.append(
            [
                ('GetHostStatus', pb.GetHostStatusRequest(host=host)),
                ('ListInstances', pb.ListInstancesRequest(host=host)),
                ('GetInstanceInfo', pb.GetInstanceInfoRequest(**ids)),
                ('GetVolumeConnector', pb.GetVolumeConnectorRequest(**ids)),
                ('PowerOff', pb.PowerOffRequest(**ids)),
                ('Spawn', spawn_request(new_uuid(), wwpns, host='cpc10')),
                ('Destroy', pb.DestroyRequest(host='cpc10', instance_uuid=new_uuid())),
                ('ListInstances', pb.ListInstancesRequest(host='no-such-host')),
            ][index % 8]
        )
    return calls


def spawn_request(uuid: str, wwpns, host: str = 'cpc1') -> pb.SpawnRequest:
    return pb.SpawnRequest(
        host=host,
        instance_uuid=uuid,
        flavor=flavor(1, 512),
        nics=[nic(INVENTORY['vswitch_osa0'])],
        boot_volume=boot_volume(list(wwpns), ['500507680b2142e5']),
    )


def test_health_stays_fast_and_excess_calls_are_shed_under_load(backend_factory):
    gate = StartGate()
    running = backend_factory(
        extra={
            'backend': {'max_concurrent_operations': '16'},
            'hmc': {'pool_size': '4', 'pool_wait': '1'},
        },
        interceptors=[gate],
    )
    health = health_pb2_grpc.HealthStub(running.channel)
    wait_for(
        lambda: (
            health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    )
    stub = running.stub
    prepared = []
    for _ in range(LONG_SPAWNS):
        uuid = new_uuid()
        reply = stub.PrepareInstance(
            pb.PrepareInstanceRequest(host='cpc1', instance_uuid=uuid, flavor=flavor(1, 512)),
            timeout=T,
        )
        prepared.append((uuid, list(reply.wwpns)))
    # Long spawns in flight: each holds a slot and an HMC session.
    spawns = [stub.Spawn.future(spawn_request(u, w), timeout=T) for u, w in prepared]
    wait_for(lambda: gate.waiting == LONG_SPAWNS)

    # Several client channels, as several nova-compute hosts would be.
    channels = [grpc.insecure_channel(running.backend.address) for _ in range(4)]
    stubs = [pb_grpc.DPMHostStub(c) for c in channels]
    latencies = []
    try:
        started = time.monotonic()
        pending = []
        mixed = mixed_requests(prepared)
        for i, (name, request) in enumerate(mixed):
            timeout = BUSY_T if name == 'PowerOff' else T
            pending.append(getattr(stubs[i % 4], name).future(request, timeout=timeout))
        for _ in range(PROBES):
            begin = time.perf_counter()
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            latencies.append(time.perf_counter() - begin)
            assert status == health_pb2.HealthCheckResponse.SERVING
            time.sleep(0.01)
        # Every call of the burst is answered while the long spawns still run.
        wait_for(lambda: all(call.done() for call in pending), timeout=15, interval=0.05)
        answered_by = time.monotonic() - started
        codes = [call.code() for call in pending]
    finally:
        gate.open.set()
        for channel in channels:
            channel.close()
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND}
    busy = [call for call, (name, _) in zip(pending, mixed, strict=True) if name == 'PowerOff']
    others = [call for call, (name, _) in zip(pending, mixed, strict=True) if name != 'PowerOff']
    assert {call.code() for call in others} <= allowed, {c.code() for c in others} - allowed
    # A call for an instance a long spawn holds: shed, or answered at its deadline.
    assert {call.code() for call in busy} <= {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    shed = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert shed > 0
    assert len(latencies) == PROBES  # every health check answered SERVING
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f'load: {len(codes)} calls answered in {answered_by:.1f} s, {shed} shed; '
        f'health p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms'
    )
    for spawn in spawns:
        assert spawn.result().info.partition_status == 'active'
