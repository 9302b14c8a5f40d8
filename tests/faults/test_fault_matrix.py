"""Every HMC request of every operation fails once, in every way; nothing is lost.

For each operation (prepare, spawn with two NICs and FC boot on a prepared
and on an unprepared partition, destroy, power off, power on from stopped and
from paused, reboot), each index k of the HMC requests it makes, and each
fault kind, the k-th request fails at zhmcclient's session seam (below the
backend's own interceptors, as a real HMC failure would arrive). Then:

- the RPC answers the mapped status, never INTERNAL or UNKNOWN;
- every other partition on every CPC is byte-identical to before;
- a retry of the same call succeeds and leaves exactly the instance state a
  fault-free run leaves (HMC-assigned ids, device numbers and WWPNs are
  compared through the objects they designate);
- destroy then leaves no partition of the instance and no NIC of its ports.

For the operations that create (prepare, spawn), the other branch too: destroy
right after the failure leaves nothing of the instance. A connection error
that turns into an outage (every later request of the call fails as well, so
the rollback fails too) is part of the matrix.

The HMC is the simulator over HTTPS (a real zhmcclient Session), reset for
every case; its jobs end at once, so every run makes the same requests.
A fault on a job check (``GET``/``DELETE /api/jobs/{id}``) may be absorbed: the
job goes on on the HMC, the next check sees it ended. Such a run must then
leave exactly what a fault-free one leaves.

An expired session (403 reason 5) normally never reaches the backend:
zhmcclient logs on again and repeats the request (tests/faults/test_recovery.py
proves that through the simulator); one injected above zhmcclient, as here,
stands for a re-logon that failed too: the backend answers UNAVAILABLE and
drops the session, so the retry logs on anew.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import PASSWORD
from dpmtest import Faults
from dpmtest import RequestLog
from dpmtest import boot_volume
from dpmtest import count_cases
from dpmtest import default_hosts
from dpmtest import differences
from dpmtest import find_partitions
from dpmtest import flavor
from dpmtest import instance_state
from dpmtest import load_config
from dpmtest import nic
from dpmtest import pristine
from dpmtest import snapshot
from dpmtest import wait_for
from dpmtest import write_config

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import naming
from dpm_backend.server import Backend

T = 10
# Each backend gets channels of its own: a subchannel shared with a channel to a
# stopped predecessor on the same socket path would wait out a reconnect backoff.
LOCAL = [('grpc.use_local_subchannel_pool', 1)]
HOST = 'cpc1'
UUID = '5d2c6a1e-8f3b-4c7d-9e0a-1b2c3d4e5f60'
NAME = naming.partition_name(HOST, UUID)
PORTS = ('0a1b2c3d-4e5f-4a6b-8c7d-000000000001', '0a1b2c3d-4e5f-4a6b-8c7d-000000000002')
TARGET = '500507680b2142e5'
STATUS = {
    'http409-state': grpc.StatusCode.FAILED_PRECONDITION,
    'http409-busy': grpc.StatusCode.ABORTED,
    'http500': grpc.StatusCode.UNAVAILABLE,
    'http503': grpc.StatusCode.UNAVAILABLE,
    'connection': grpc.StatusCode.UNAVAILABLE,
    'read-timeout': grpc.StatusCode.DEADLINE_EXCEEDED,
    'session-expired': grpc.StatusCode.UNAVAILABLE,
}


class Harness:
    """One backend on a pristine simulated HMC, with the fault injector innermost."""

    def __init__(self, config, served) -> None:
        pristine(served)
        self.served = served
        self.log = RequestLog()
        self.backend = Backend(config, interceptors=[self.log])
        self.faults = Faults()
        # Below reachability: where a real HMC failure arrives.
        self.backend.pool.interceptors.append(self.faults)
        self.backend.start()
        self.channel = grpc.insecure_channel(self.backend.address, options=LOCAL)
        self.stub = pb_grpc.DPMHostStub(self.channel)
        # The probe and the host checks run at start; let them finish, so that
        # the requests counted are those of the calls alone.
        wait_for(lambda: self.backend.pool.reachability.reachable and self.backend.hosts_checked())

    @property
    def hmc(self):
        return self.served.sim.hmc

    def close(self) -> None:
        self.channel.close()
        self.backend.stop(grace=0)


def spawn_request(wwpns) -> pb.SpawnRequest:
    return pb.SpawnRequest(
        host=HOST,
        instance_uuid=UUID,
        flavor=flavor(),
        nics=[
            nic(INVENTORY['vswitch_osa0'], 'fa:16:3e:00:00:01', port_id=PORTS[0]),
            nic(INVENTORY['vswitch_osa1'], 'fa:16:3e:00:00:02', port_id=PORTS[1]),
        ],
        boot_volume=boot_volume(list(wwpns), [TARGET]),
    )


def prepare(h: Harness):
    return h.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host=HOST, instance_uuid=UUID, flavor=flavor()), timeout=T
    )


def ids(method: str):
    request = getattr(pb, f'{method}Request')(host=HOST, instance_uuid=UUID)
    return lambda h, _: getattr(h.stub, method)(request, timeout=T)


def pause(h: Harness) -> None:
    # What an in-guest "shutdown -P" leaves.
    with h.served.sim.lock:
        find_partitions(h.hmc, NAME)[0].properties['status'] = 'paused'


def setup_running(h: Harness, wwpns) -> None:
    prepare(h)
    h.stub.Spawn(spawn_request(wwpns), timeout=T)


def warm(h: Harness, _) -> None:
    # Log on and read the CPC, so that the call under test starts at its own work.
    h.stub.GetHostStatus(pb.GetHostStatusRequest(host=HOST), timeout=T)


# operation -> (setup, call); setup and call get the harness and the boot WWPNs.
OPERATIONS = {
    'prepare': (lambda h, w: None, lambda h, w: prepare(h)),
    'spawn': (lambda h, w: prepare(h), lambda h, w: h.stub.Spawn(spawn_request(w), timeout=T)),
    'spawn-unprepared': (warm, lambda h, w: h.stub.Spawn(spawn_request(w), timeout=T)),
    'destroy': (setup_running, ids('Destroy')),
    'power-off': (setup_running, ids('PowerOff')),
    'power-on': (
        lambda h, w: (setup_running(h, w), ids('PowerOff')(h, w)),
        ids('PowerOn'),
    ),
    'power-on-paused': (lambda h, w: (setup_running(h, w), pause(h)), ids('PowerOn')),
    'reboot': (setup_running, ids('Reboot')),
}
CREATORS = ('prepare', 'spawn', 'spawn-unprepared')


@pytest.fixture(scope='module')
def served(simulators):
    return simulators()


@pytest.fixture(scope='module')
def config(tmp_path_factory, served):
    tmp: Path = tmp_path_factory.mktemp('faults')
    # One host: each case's backend checks only what the matrix uses at start.
    hosts = [h for h in default_hosts() if h.name == HOST]
    return load_config(write_config(tmp / 'b.conf', tmp / 'b.sock', hosts, hmc=served))


@pytest.fixture(scope='module')
def reference(config, served):
    """Per operation: requests made, the reply and the instance state, fault-free."""
    result = {}
    h = Harness(config, served)
    try:
        wwpns = list(prepare(h).wwpns)
    finally:
        h.close()
    for operation, (setup, call) in OPERATIONS.items():
        h = Harness(config, served)
        try:
            setup(h, wwpns)
            h.log.clear()
            reply = call(h, wwpns)
            result[operation] = (h.log.count(), reply, instance_state(h.hmc, NAME))
        finally:
            h.close()
    return wwpns, result


def comparable(reply):
    """A reply without the HMC-assigned object id and device numbers."""
    reply = type(reply).FromString(reply.SerializeToString())
    if hasattr(reply, 'info'):
        reply.info.partition_object_id = ''
    if hasattr(reply, 'boot_os_specific_parameters'):
        # The command line's match with the NICs is checked in the HMC state.
        reply.boot_os_specific_parameters = re.sub(
            r'(^| )[0-9a-fA-F]{4},', r'\1DEVNO,', reply.boot_os_specific_parameters
        )
    return reply


def nothing_left(hmc) -> list[str]:
    left = [f'partition {p.uri}' for p in find_partitions(hmc, NAME)]
    for cpc in hmc.cpcs.list():
        for p in cpc.partitions.list():
            left += [
                f'NIC {n.uri}'
                for n in p.nics.list()
                if n.properties['name'] in {naming.nic_name(port) for port in PORTS}
            ]
    return left


def absorbable(hit) -> bool:
    """A fault on a job check: the job goes on, a later check may see it end."""
    return hit is not None and hit[1].startswith('/api/jobs/')


def retry_problems(h: Harness, wwpns, want, operation: str, where: str) -> list[str]:
    """What a retry of the failed call leaves that a fault-free run does not."""
    _, want_reply, want_state = want
    problems = []
    reply = OPERATIONS[operation][1](h, wwpns)
    if operation == 'destroy':
        # The first call may have deleted it before its reply was lost: the
        # retry then finds nothing, and has no WWPNs left to return.
        wwpns = list(want_reply.wwpns)
        if (reply.existed, list(reply.wwpns)) not in ((True, wwpns), (False, [])):
            problems.append(f'{where}: retry replied {reply} (want the WWPNs {wwpns} or nothing)')
        reply = want_reply
    cmdline = getattr(reply, 'boot_os_specific_parameters', None)
    written = [p.properties['boot-os-specific-parameters'] for p in find_partitions(h.hmc, NAME)]
    if cmdline is not None and [cmdline] != written:
        problems.append(f'{where}: retry replied {cmdline!r}, the HMC has {written!r}')
    if comparable(reply) != comparable(want_reply):
        problems.append(f'{where}: retry replied {reply} (want {want_reply})')
    got_state = instance_state(h.hmc, NAME)
    if got_state != want_state:
        diff = differences(got_state, want_state) if got_state else ['no partition']
        problems.append(f'{where}: retry left ' + '; '.join(diff))
    return problems


def fail_once(h: Harness, call, kind: str, k: int, outage: bool, where: str) -> list[str]:
    """Run ``call`` with the k-th HMC request failing; what its answer got wrong."""
    problems = []
    h.faults.arm(k, kind, outage)
    try:
        call()
        if not (absorbable(h.faults.hit) and not outage):
            problems.append(f'{where}: succeeded despite the fault at {h.faults.hit}')
    except grpc.RpcError as exc:
        expected = STATUS['connection' if outage else kind]
        if exc.code() != expected:
            problems.append(
                f'{where}: {exc.code().name} (want {expected.name}) at {h.faults.hit}: '
                f'{exc.details()}'
            )
        if PASSWORD in exc.details() + repr(exc.trailing_metadata()):
            problems.append(f'{where}: password in the error')
    finally:
        h.faults.disarm()
    return problems


def run_case(config, served, wwpns, reference, operation, kind, k, outage, then) -> list[str]:
    """One fault; the problems found (empty if none)."""
    setup, call = OPERATIONS[operation]
    where = f'{operation} k={k} {kind}{" outage" if outage else ""} then {then}'
    problems = []
    h = Harness(config, served)
    try:
        setup(h, wwpns)
        others = snapshot(h.hmc, exclude={NAME})
        problems += fail_once(h, lambda: call(h, wwpns), kind, k, outage, where)
        if snapshot(h.hmc, exclude={NAME}) != others:
            problems.append(f'{where}: another partition changed')
        if then == 'retry':
            problems += retry_problems(h, wwpns, reference[operation], operation, where)
        h.stub.Destroy(pb.DestroyRequest(host=HOST, instance_uuid=UUID), timeout=T)
        left = nothing_left(h.hmc)
        if left:
            problems.append(f'{where}: destroy left {left}')
        if snapshot(h.hmc, exclude={NAME}) != others:
            problems.append(f'{where}: another partition changed by the end')
    finally:
        h.close()
    return problems


CASES = [
    (operation, kind, False, then)
    for operation in OPERATIONS
    for kind in Faults.KINDS
    for then in (('retry', 'destroy') if operation in CREATORS else ('retry',))
] + [
    (operation, 'connection', True, then)
    for operation in OPERATIONS
    for then in (('retry', 'destroy') if operation in CREATORS else ('retry',))
]


@pytest.mark.parametrize(
    ('operation', 'kind', 'outage', 'then'),
    CASES,
    ids=[f'{o}-{k}{"-outage" if out else ""}-then-{t}' for o, k, out, t in CASES],
)
def test_fault_at_every_request_is_answered_and_converges(
    config, served, reference, request, caplog, operation, kind, outage, then
):
    caplog.set_level(logging.INFO)
    wwpns, results = reference
    requests = results[operation][0]
    assert requests > 0
    problems = []
    for k in range(requests):
        problems += run_case(config, served, wwpns, results, operation, kind, k, outage, then)
    count_cases(
        request.config, 'fault matrix (operation x request index x fault kind x then)', requests
    )
    assert PASSWORD not in caplog.text
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('kind', Faults.KINDS)
def test_password_stays_out_of_debug_logs_and_errors_on_fault_paths(
    config, served, reference, caplog, kind
):
    caplog.set_level(logging.DEBUG)
    wwpns, _ = reference
    details = []
    h = Harness(config, served)
    try:
        for k in (0, 1):  # logon, then the first request after it
            h.faults.arm(k, kind)
            with pytest.raises(grpc.RpcError) as caught:
                prepare(h)
            details.append(caught.value.details() + repr(caught.value.trailing_metadata()))
            h.faults.disarm()
        prepare(h)
        # The start of the spawn: after the partition list, 2 vHBA GETs, the
        # virtual switch list, 2 NIC creations and the update of the partition.
        h.faults.arm(7, kind)
        with pytest.raises(grpc.RpcError) as caught:
            h.stub.Spawn(spawn_request(wwpns), timeout=T)
        details.append(caught.value.details())
    finally:
        h.faults.disarm()
        h.close()
    assert 'Session.logon' in caplog.text  # zhmcclient's DEBUG log of the logon is there
    assert PASSWORD not in caplog.text
    assert not any(PASSWORD in d for d in details)
