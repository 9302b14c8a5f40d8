"""The DPMHost servicer through grpc_testing: validation at the edge, error details.

No socket here: grpc_testing invokes the servicer directly. The pool still
talks to the mock HMC, so "zero HMC requests" is measured at the session seam.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc_testing
import pytest
from dpmtest import INVENTORY
from dpmtest import RequestLog
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import load_config
from dpmtest import new_uuid
from dpmtest import nic
from dpmtest import wait_for
from dpmtest import write_config
from google.rpc import error_details_pb2
from google.rpc import status_pb2

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend.server import Backend

SERVICE = pb.DESCRIPTOR.services_by_name['DPMHost']
WWPN = 'c05076ffe5000001'
TARGET = '500507680b2142e5'


def _harness(tmp_path, hmc_sim, extra=None, interceptors=()):
    config = load_config(
        write_config(tmp_path / 'b.conf', tmp_path / 'unused.sock', extra=extra, hmc=hmc_sim)
    )
    log = RequestLog()
    backend = Backend(config, interceptors=[log, *interceptors])
    server = grpc_testing.server_from_dictionary(
        {SERVICE: backend.servicer}, grpc_testing.strict_real_time()
    )

    def call(method: str, request, timeout: float | None = 10):
        rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], (), request, timeout)
        response, trailing, code, details = rpc.termination()
        return response, dict(trailing), code, details

    call.backend = backend
    return call, log


@pytest.fixture
def harness(tmp_path, hmc_sim):
    call, log = _harness(tmp_path, hmc_sim)
    yield call, log
    call.backend.pool.close()


def error_info(trailing: dict) -> error_details_pb2.ErrorInfo:
    status = status_pb2.Status.FromString(trailing['grpc-status-details-bin'])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def good_spawn(**changes) -> pb.SpawnRequest:
    request = pb.SpawnRequest(
        host='cpc1',
        instance_uuid=new_uuid(),
        flavor=flavor(),
        nics=[nic(INVENTORY['vswitch_osa0'])],
        boot_volume=boot_volume([WWPN], [TARGET]),
    )
    for name, value in changes.items():
        if value is None:
            request.ClearField(name)
        elif name == 'nics':
            del request.nics[:]
            request.nics.extend(value)
        else:
            field = getattr(request, name)
            if hasattr(field, 'CopyFrom'):
                field.CopyFrom(value)
            else:
                setattr(request, name, value)
    return request


INVALID_SPAWNS = {
    'uuid upper case': (good_spawn(instance_uuid=new_uuid().upper()), 'INVALID_FIELD'),
    'uuid garbage': (good_spawn(instance_uuid='../../etc/passwd'), 'INVALID_FIELD'),
    'no flavor': (good_spawn(flavor=None), 'INVALID_FIELD'),
    'zero vcpus': (good_spawn(flavor=flavor(0, 512)), 'INVALID_FIELD'),
    'image boot': (good_spawn(boot_volume=None), 'IMAGE_BOOT_UNSUPPORTED'),
    'ovs vif': (
        good_spawn(nics=[nic(INVENTORY['vswitch_osa0'], vif_type='ovs')]),
        'VIF_UNSUPPORTED',
    ),
    'vlan': (good_spawn(nics=[nic(INVENTORY['vswitch_osa0'], vlan=100)]), 'VIF_UNSUPPORTED'),
    'bad mac': (
        good_spawn(nics=[nic(INVENTORY['vswitch_osa0'], mac='fa:16:3e:00:00')]),
        'INVALID_FIELD',
    ),
    'multicast mac': (
        good_spawn(nics=[nic(INVENTORY['vswitch_osa0'], mac='fb:16:3e:00:00:01')]),
        'INVALID_FIELD',
    ),
    'universal mac': (
        good_spawn(nics=[nic(INVENTORY['vswitch_osa0'], mac='00:16:3e:00:00:01')]),
        'INVALID_FIELD',
    ),
    'bad port id': (
        good_spawn(nics=[nic(INVENTORY['vswitch_osa0'], port_id='x;rm -rf /')]),
        'INVALID_FIELD',
    ),
    'bad vswitch': (good_spawn(nics=[nic('.*')]), 'INVALID_FIELD'),
    'bad wwpn': (good_spawn(boot_volume=boot_volume(['0x12'], [TARGET])), 'INVALID_FIELD'),
    'no targets': (good_spawn(boot_volume=boot_volume([WWPN], [])), 'INVALID_FIELD'),
    'empty map': (good_spawn(boot_volume=pb.FcBootVolume(target_lun=1)), 'INVALID_FIELD'),
    'lun beyond 4 bytes': (
        good_spawn(boot_volume=boot_volume([WWPN], [TARGET], lun=0x100000000)),
        'INVALID_FIELD',
    ),
}


@pytest.mark.parametrize('case', sorted(INVALID_SPAWNS))
def test_invalid_spawn_is_refused_with_the_field_and_makes_no_hmc_request(harness, case):
    call, log = harness
    request, reason = INVALID_SPAWNS[case]
    _, trailing, code, details = call('Spawn', request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    info = error_info(trailing)
    assert info.reason == reason and info.domain == 'dpm_api.v1'
    assert log.requests == []


def test_thirteen_nics_exhaust_the_kernel_command_line(harness):
    call, log = harness
    nics = [nic(INVENTORY['vswitch_osa0'], f'fa:16:3e:00:00:{i:02x}') for i in range(13)]
    _, trailing, code, details = call('Spawn', good_spawn(nics=nics))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(trailing).reason == 'TOO_MANY_NICS' and '12' in details
    assert log.requests == []


def test_duplicate_port_ids_are_refused(harness):
    call, log = harness
    port = new_uuid()
    nics = [
        nic(INVENTORY['vswitch_osa0'], port_id=port),
        nic(INVENTORY['vswitch_osa1'], 'fa:16:3e:00:00:02', port_id=port),
    ]
    _, _, code, details = call('Spawn', good_spawn(nics=nics))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and 'nics[1].port_id' in details
    assert log.requests == []


@pytest.mark.parametrize('host', ['nope', 'cpc1 ', 'CPC1', 'cpc.*', 'cpc', '', 'x' * 10000])
def test_unknown_host_is_not_found_without_hmc_requests(harness, host):
    call, log = harness
    for method, request in (
        ('GetHostStatus', pb.GetHostStatusRequest(host=host)),
        ('ListInstances', pb.ListInstancesRequest(host=host)),
        ('Destroy', pb.DestroyRequest(host=host, instance_uuid=new_uuid())),
        (
            'PrepareInstance',
            pb.PrepareInstanceRequest(host=host, instance_uuid=new_uuid(), flavor=flavor()),
        ),
    ):
        _, trailing, code, details = call(method, request)
        assert code == grpc.StatusCode.NOT_FOUND, method
        assert error_info(trailing).reason == 'HOST_NOT_FOUND'
        assert len(details) < 200
    assert log.requests == []


@pytest.mark.parametrize(
    'method', ['GetInstanceInfo', 'GetVolumeConnector', 'Destroy', 'PowerOff', 'PowerOn', 'Reboot']
)
def test_instance_calls_check_the_uuid_first(harness, method):
    call, log = harness
    request_type = getattr(pb, f'{method}Request')
    _, trailing, code, _ = call(method, request_type(host='cpc1', instance_uuid='not-a-uuid'))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(trailing).metadata['field'] == 'instance_uuid'
    assert log.requests == []


def test_missing_instance_is_not_found_with_its_reason(harness):
    call, _ = harness
    _, trailing, code, _ = call(
        'GetInstanceInfo', pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=new_uuid())
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert error_info(trailing).reason == 'INSTANCE_NOT_FOUND'


def test_prepare_and_info_through_the_servicer(harness):
    call, log = harness
    instance_uuid = new_uuid()
    response, _, code, _ = call(
        'PrepareInstance',
        pb.PrepareInstanceRequest(host='cpc1', instance_uuid=instance_uuid, flavor=flavor(1, 1024)),
    )
    assert code == grpc.StatusCode.OK
    assert len(response.wwpns) == 2 and response.info.partition_status == 'stopped'
    log.clear()
    response, _, code, _ = call(
        'GetInstanceInfo', pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=instance_uuid)
    )
    assert code == grpc.StatusCode.OK
    assert (response.info.vcpus, response.info.memory_mb) == (1, 1024)
    # HMC 2.15 lists partitions with their status but not their sizes: the size
    # of the new partition is known from its create, that of cpc10's older one
    # is read once.
    assert log.requests == [
        ('GET', f'/api/cpcs/{INVENTORY["z13"]}/partitions'),
        ('GET', '/api/partitions/7c1d2e3f-8a9b-4c0d-9e1f-2a3b4c5d6e02'),
    ]
    # The next power-sync cycle costs one request.
    call.backend.servicer.snapshots.clear()
    log.clear()
    response, _, code, _ = call(
        'GetInstanceInfo', pb.GetInstanceInfoRequest(host='cpc1', instance_uuid=instance_uuid)
    )
    assert (response.info.vcpus, response.info.memory_mb) == (1, 1024)
    assert log.requests == [('GET', f'/api/cpcs/{INVENTORY["z13"]}/partitions')]


def test_list_hosts_says_why_each_host_is_not_served_without_hmc_requests(harness):
    call, log = harness
    backend = call.backend

    def listed():
        reply, _, code, details = call('ListHosts', pb.ListHostsRequest())
        assert code == grpc.StatusCode.OK, details
        return {h.host: (h.serving, h.problem) for h in reply.hosts}

    # Nothing has answered yet: the HMC is not known to be reachable.
    hosts = listed()
    assert list(hosts) == ['cpc1', 'cpc10', 'z14host', 'classic']  # as configured
    assert all(not serving and 'the HMC does not answer' in why for serving, why in hosts.values())
    backend.pool.reachability.set(True)
    assert listed()['cpc1'] == (False, 'its start-up checks have not run yet')
    assert log.requests == []
    backend.check_hosts()
    log.clear()
    hosts = listed()
    assert hosts['cpc1'] == hosts['cpc10'] == hosts['z14host'] == (True, '')
    serving, why = hosts['classic']
    assert not serving and 'is not in DPM mode' in why
    # What a call for the host answers says the same.
    _, _, code, details = call('ListInstances', pb.ListInstancesRequest(host='classic'))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and 'is not in DPM mode' in details
    backend.pool.reachability.set(False)
    assert not any(serving for serving, _ in listed().values())
    assert log.requests == []


class Gate:
    """Interceptor that holds every HMC request until opened; counts the arrivals."""

    def __init__(self) -> None:
        self.arrived = 0
        self._lock = threading.Lock()
        self._open = threading.Event()

    def __call__(self, method, uri, proceed):
        with self._lock:
            self.arrived += 1
        self._open.wait(10)
        return proceed()

    def open(self) -> None:
        self._open.set()


def test_calls_beyond_the_concurrency_limit_are_shed_without_hmc_requests(tmp_path, hmc_sim):
    limit = 3
    gate = Gate()
    call, _ = _harness(
        tmp_path,
        hmc_sim,
        extra={'backend': {'max_concurrent_operations': limit}, 'hmc': {'pool_size': limit + 1}},
        interceptors=[gate],
    )
    # Changing calls, each for an instance of its own: `limit` of them at once.
    requests = [pb.PowerOffRequest(host='cpc1', instance_uuid=new_uuid()) for _ in range(limit)]
    try:
        with ThreadPoolExecutor(limit) as pool:
            try:
                held = [pool.submit(call, 'PowerOff', request) for request in requests]
                # Each one is inside the backend, held at its first HMC request.
                wait_for(lambda: gate.arrived == limit, timeout=5)
                started = time.monotonic()
                beyond = pb.PowerOffRequest(host='cpc1', instance_uuid=new_uuid())
                _, trailing, code, _ = call('PowerOff', beyond, 5)
                shed_after = time.monotonic() - started
                arrived = gate.arrived
            finally:
                gate.open()
            results = [future.result(timeout=10) for future in held]
        # The call beyond the limit is shed at once, before any HMC request...
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(trailing).reason == 'BACKEND_BUSY'
        assert shed_after < 1
        assert arrived == limit
        # ...and every call within it was carried out (their instances have no partition).
        for _, trailing, code, details in results:
            assert code == grpc.StatusCode.NOT_FOUND, details
            assert error_info(trailing).reason == 'INSTANCE_NOT_FOUND'
        # Once they are done, a new call is accepted.
        _, _, code, details = call('PowerOff', beyond)
        assert code == grpc.StatusCode.NOT_FOUND, details
    finally:
        call.backend.pool.close()
