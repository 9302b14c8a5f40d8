"""The fault matrix of moving a server: every HMC request of each move step fails once.

One instance moves between the two hosts of one backend, on a vHBA CPC (z13,
HMC 2.15.0) and on a storage-group CPC (z14, HMC 2.16.0). Each step sends the
DPMHost calls DPMDriver sends for it (dpm_frontend/driver.py):

- finish-migration (destination): PrepareInstance with the new flavor, then
  Spawn of the destination's boot volume, started; the source partition was
  stopped (migrate_disk_and_power_off), and Nova's connector request
  (RESIZE_FINISH) prepared the destination before;
- confirm (source): Destroy; the destination runs the new flavor;
- revert: Destroy on the destination, then Spawn of the source with the old
  flavor, started (finish_revert_migration);
- evacuate (destination), while the source partition runs: the connector
  request (REBUILDING: PrepareInstance), then Spawn with
  stop_other_hosts_partitions (REBUILD_SPAWNING).

For each step, each index k of its HMC requests and each fault kind
(tests/faults/test_fault_matrix.py: its Harness, kinds and status map), the
k-th request fails at the session seam; an outage (every later request
fails too) for the steps that spawn on the destination. Then what Nova does
next: confirm and revert send the failed call and the rest of the step
again; a failed evacuation leaves the server in ERROR on the destination
and is evacuated again; a failed finish_migration leaves it in ERROR on the
destination with its old flavor back (compute/manager.py _finish_resize),
and a hard reboot there (driver._recover) sends PowerOff, then Spawn with
stop_other_hosts_partitions. Checked:

- after every HMC request of setup, failed call and recovery, never do two
  partitions of the instance, of any host, run at once (status active,
  degraded, starting, stopping or paused): simulated jobs end within their
  request, so the HMC changes nowhere in between;
- the failed call answers the mapped status; nothing else on the HMC changes;
- at the end exactly one partition of the instance runs, on the host that
  should have it, with the flavor's sizes, booting the volume through its
  own initiators (its vHBA, or its storage group's volume); both hosts
  hold exactly what a fault-free run (and recovery) leaves: the side
  confirm or revert removes is gone entirely (partition, NICs, vHBAs,
  storage group); the source a finish-migration or evacuation leaves is
  stopped with its own devices, as Nova leaves it (an operator, or its
  returning nova-compute, deletes it).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import PASSWORD
from dpmtest import Faults
from dpmtest import HostSpec
from dpmtest import boot_volume
from dpmtest import count_cases
from dpmtest import differences
from dpmtest import find_partitions
from dpmtest import flavor
from dpmtest import load_config
from dpmtest import nic
from dpmtest import snapshot
from dpmtest import write_config
from faults.test_fault_matrix import Harness
from faults.test_fault_matrix import fail_once
from faults.test_fault_matrix_storage_groups import state
from faults.test_fault_matrix_storage_groups import storage_group

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming

T = 10
UUID = '7a1c3e5f-2b4d-4f6a-8c0e-1d3f5a7b9c04'
PORT = '0a1b2c3d-4e5f-4a6b-8c7d-000000000021'
MAC = 'fa:16:3e:00:00:21'
VOLUME_ID = '9b2d4f6a-3c5e-4a7b-9d1f-2e4a6b8c0d15'
OLD = flavor(2, 2048)
NEW = flavor(3, 3072)
# Statuses of a partition that holds its boot volume (or may any moment).
RUNNING = frozenset({'active', 'degraded', 'starting', 'stopping', 'paused'})
SOURCE, DESTINATION = 0, 1


@dataclasses.dataclass(frozen=True)
class StoragePath:
    """Two hosts of one backend on one CPC, and what a server there boots from."""

    profile: str
    cpc: str  # INVENTORY keys
    adapters: str
    vswitch: str
    target: str
    hosts: tuple[str, str]  # source, destination
    boot_device: str

    def names(self) -> tuple[str, str]:
        return tuple(naming.partition_name(host, UUID) for host in self.hosts)


PATHS = {
    'vhba': StoragePath(
        '2.15.0', 'z13', 'fcp', 'vswitch_osa1', '500507680b2142e5', ('hosta', 'hostb'),
        'storage-adapter',
    ),
    'storage-groups': StoragePath(
        '2.16.0', 'z14', 'fcp_z14', 'vswitch_z14', '5005076810260382', ('hostz1', 'hostz2'),
        'storage-volume',
    ),
}  # fmt: skip


def running(served) -> list[str]:
    """The instance's partitions, of any host on any CPC, that run now."""
    with served.sim.lock:
        return sorted(
            p.properties['name']
            for cpc in served.sim.hmc.cpcs.list()
            for p in cpc.partitions.list()
            if p.properties.get('name', '').startswith(naming.PARTITION_PREFIX)
            and p.properties['name'].endswith(f'-{UUID}')
            and p.properties.get('status') in RUNNING
        )


class Watch:
    """Samples the HMC after every request: never two partitions of the instance running.

    Innermost at the session seam, so it sees each request the HMC handled
    (including one whose reply a fault then loses).
    """

    def __init__(self, served) -> None:
        self.served = served
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def check(self, when: str) -> None:
        """Record the first moment two run (the later ones add nothing)."""
        if self.violations:
            return
        now = running(self.served)
        if len(now) > 1:
            with self._lock:
                self.violations.append(f'{when}: {now} run at once')

    def __call__(self, method, uri, proceed):
        try:
            return proceed()
        finally:
            self.check(f'after {method} {uri}')


class Move:
    """The instance on the two hosts of a path, driven as DPMDriver drives the backend."""

    def __init__(self, h: Harness, path: StoragePath) -> None:
        self.h = h
        self.path = path
        self.wwpns: dict[int, list[str]] = {}

    def prepare(self, end: int, fl: pb.Flavor) -> None:
        request = pb.PrepareInstanceRequest(
            host=self.path.hosts[end], instance_uuid=UUID, flavor=fl
        )
        # The driver stores them; every later Spawn on that host uses them.
        self.wwpns[end] = list(self.h.stub.PrepareInstance(request, timeout=T).wwpns)

    def spawn(self, end: int, fl: pb.Flavor, fence: bool = False) -> None:
        # The connection Cinder made for this host's initiators: the same
        # volume, LUN and port on either host.
        volume = boot_volume(self.wwpns[end], [self.path.target])
        volume.volume_id, volume.size_gib = VOLUME_ID, 10
        request = pb.SpawnRequest(
            host=self.path.hosts[end],
            instance_uuid=UUID,
            flavor=fl,
            nics=[nic(INVENTORY[self.path.vswitch], MAC, port_id=PORT)],
            boot_volume=volume,
            stop_other_hosts_partitions=fence,
        )
        self.h.stub.Spawn(request, timeout=T)

    def destroy(self, end: int) -> None:
        # The WWPNs are stored for both hosts: the driver sends wwpns_known.
        request = pb.DestroyRequest(host=self.path.hosts[end], instance_uuid=UUID, wwpns_known=True)
        self.h.stub.Destroy(request, timeout=T)

    def power_off(self, end: int) -> None:
        request = pb.PowerOffRequest(host=self.path.hosts[end], instance_uuid=UUID)
        self.h.stub.PowerOff(request, timeout=T)

    def hard_reboot(self, end: int, fl: pb.Flavor) -> None:
        """driver.reboot of an instance in ERROR (driver._recover)."""
        self.power_off(end)
        self.spawn(end, fl, fence=True)


def resized(m: Move) -> None:
    """The source ran the old flavor and was stopped; Nova's connector request prepared
    the destination with the new flavor."""
    m.prepare(SOURCE, OLD)
    m.spawn(SOURCE, OLD)
    m.power_off(SOURCE)
    m.prepare(DESTINATION, NEW)


def finished(m: Move) -> None:
    """finish_migration done: the destination runs the new flavor."""
    resized(m)
    m.prepare(DESTINATION, NEW)
    m.spawn(DESTINATION, NEW)


def evacuating(m: Move) -> None:
    """The source runs; its nova-compute is down."""
    m.prepare(SOURCE, OLD)
    m.spawn(SOURCE, OLD)


def evacuate(m: Move) -> None:
    """rebuild_instance on the destination: the connector (REBUILDING: the partition
    prepared), Cinder's connection to it, then spawn (REBUILD_SPAWNING: fenced)."""
    m.prepare(DESTINATION, OLD)
    m.spawn(DESTINATION, OLD, fence=True)


@dataclasses.dataclass(frozen=True)
class Step:
    setup: Callable[[Move], None]
    calls: tuple[Callable[[Move], None], ...]
    # What Nova does after a call failed; None: that call and the rest again.
    recover: Callable[[Move], None] | None
    # Where the instance runs when the step completed, and with which flavor.
    winner: int
    flavor: pb.Flavor
    # Where it runs after the recovery, and with which flavor (if another).
    recovered: tuple[int, pb.Flavor] | None = None
    # Whether the other host's partition is gone at the end (else: stopped, kept).
    removes_loser: bool = False


STEPS = {
    'finish-migration': Step(
        resized,
        (lambda m: m.prepare(DESTINATION, NEW), lambda m: m.spawn(DESTINATION, NEW)),
        recover=lambda m: m.hard_reboot(DESTINATION, OLD),
        winner=DESTINATION,
        flavor=NEW,
        # Nova gives the instance its old flavor back when finish_migration fails.
        recovered=(DESTINATION, OLD),
    ),
    'confirm': Step(
        finished,
        (lambda m: m.destroy(SOURCE),),
        recover=None,
        winner=DESTINATION,
        flavor=NEW,
        removes_loser=True,
    ),
    'revert': Step(
        finished,
        (lambda m: m.destroy(DESTINATION), lambda m: m.spawn(SOURCE, OLD)),
        recover=None,
        winner=SOURCE,
        flavor=OLD,
        removes_loser=True,
    ),
    'evacuate': Step(
        evacuating,
        (lambda m: m.prepare(DESTINATION, OLD), lambda m: m.spawn(DESTINATION, OLD, fence=True)),
        # The server is in ERROR on the destination, its source still down: evacuate again.
        recover=evacuate,
        winner=DESTINATION,
        flavor=OLD,
    ),
}


def hosts_of(path: StoragePath) -> list[HostSpec]:
    ports = tuple(f'{a}:0' for a in INVENTORY[path.adapters])
    return [HostSpec(host, INVENTORY[path.cpc], mappings=ports) for host in path.hosts]


def both(hmc, path: StoragePath) -> dict[str, dict]:
    """Each host's partition of the instance and its storage group, HMC-assigned ids resolved."""
    return {name: state(hmc, name) for name in path.names()}


def others_of(hmc, path: StoragePath) -> tuple:
    """Every partition and storage group that is not one of the instance's."""
    names = set(path.names())
    groups = sorted(
        (g.properties['name'], g.properties.get('fulfillment-state'))
        for g in hmc.consoles.lookup_by_oid(None).storage_groups.list()
        if g.properties['name'] not in names
    )
    return snapshot(hmc, exclude=names), groups


class World:
    """Per path: the simulator, the backend's config and the fault-free references."""

    def __init__(self, simulators, tmp_path_factory) -> None:
        self.simulators = simulators
        self.tmp_path_factory = tmp_path_factory
        self.ready: dict[str, tuple] = {}

    def __call__(self, name: str) -> tuple:
        if name not in self.ready:
            path = PATHS[name]
            served = self.simulators(path.profile)
            tmp: Path = self.tmp_path_factory.mktemp(f'moves-{name}')
            config = load_config(
                write_config(tmp / 'b.conf', tmp / 'b.sock', hosts_of(path), hmc=served)
            )
            self.ready[name] = (path, config, served, self._references(path, config, served))
        return self.ready[name]

    @staticmethod
    def _references(path: StoragePath, config, served) -> dict:
        """Per step: the requests it makes, what it leaves, and what its recovery leaves."""
        result = {}
        for step_name, step in STEPS.items():
            h = Harness(config, served)
            try:
                m = Move(h, path)
                step.setup(m)
                h.log.clear()
                for call in step.calls:
                    call(m)
                requests = h.log.count()
                done = both(h.hmc, path)
                recovered = done
                if step.recover is not None:
                    step.recover(m)
                    recovered = both(h.hmc, path)
                result[step_name] = (requests, done, recovered)
            finally:
                h.close()
        return result


@pytest.fixture(scope='module')
def world(simulators, tmp_path_factory):
    return World(simulators, tmp_path_factory)


def boot_problems(hmc, path: StoragePath, partition) -> list[str]:
    """Whether the partition boots the instance's volume through its own initiators."""
    props = partition.properties
    name = props['name']
    if props.get('boot-device') != path.boot_device:
        return [f'{name} boots from {props.get("boot-device")!r} (want {path.boot_device})']
    if path.boot_device == 'storage-adapter':
        own = {hba.properties['element-uri'] for hba in partition.hbas.list()}
        if props.get('boot-storage-device') not in own:
            return [f'{name} boots through {props.get("boot-storage-device")}, not its vHBA']
        if props.get('boot-world-wide-port-name') != path.target:
            return [f'{name} boots from target {props.get("boot-world-wide-port-name")}']
        return []
    group = storage_group(hmc, name)
    volume = props.get('boot-storage-volume') or ''
    if group is None or not volume.startswith(f'{group.uri}/'):
        return [f'{name} boots from {volume!r}, not a volume of its storage group']
    return []


def end_problems(h: Harness, path: StoragePath, step: Step, want: dict, completed: bool) -> list:
    """What the HMC holds at the end that it should not."""
    winner, fl = (step.winner, step.flavor)
    if not completed and step.recovered is not None:
        winner, fl = step.recovered
    names = path.names()
    problems = []
    now = running(h.served)
    if now != [names[winner]]:
        problems.append(f'running: {now} (want {names[winner]} alone)')
    found = find_partitions(h.hmc, names[winner])
    if found:
        props = found[0].properties
        sizes = tuple(props[k] for k in ('ifl-processors', 'initial-memory', 'maximum-memory'))
        if sizes != (fl.vcpus, fl.memory_mb, fl.memory_mb):
            problems.append(
                f'{names[winner]} has sizes {sizes} (want {(fl.vcpus, *[fl.memory_mb] * 2)})'
            )
        problems += boot_problems(h.hmc, path, found[0])
    got = both(h.hmc, path)
    loser = names[1 - winner]
    if step.removes_loser and got[loser] != {'partition': None, 'storage': None}:
        problems.append(f'{loser} is not gone: {got[loser]}')
    if got != want:
        problems.append('left ' + '; '.join(differences(got, want)))
    return problems


def run_case(world, path_name: str, step_name: str, kind: str, k: int, outage: bool) -> list:
    path, config, served, references = world(path_name)
    step = STEPS[step_name]
    _, done, recovered = references[step_name]
    where = f'{path_name} {step_name} k={k} {kind}{" outage" if outage else ""}'
    h = Harness(config, served)
    watch = Watch(served)
    h.backend.pool.interceptors.append(watch)
    problems = []
    try:
        m = Move(h, path)
        step.setup(m)
        others = others_of(h.hmc, path)
        finished_calls: list[int] = []

        def calls() -> None:
            for index, call in enumerate(step.calls):
                call(m)
                finished_calls.append(index)

        problems += fail_once(h, calls, kind, k, outage, where)
        failed = len(finished_calls)
        completed = failed == len(step.calls)
        watch.check(f'{where}: after the failed call')
        if others_of(h.hmc, path) != others:
            problems.append(f'{where}: something of someone else changed')
        # A fault absorbed on a job check lets the step complete (fail_once
        # reports any other that does): Nova then recovers nothing.
        if not completed and step.recover is not None:
            step.recover(m)
        elif not completed:
            for call in step.calls[failed:]:
                call(m)
        want = done if completed else recovered
        problems += [f'{where}: {p}' for p in end_problems(h, path, step, want, completed)]
        if others_of(h.hmc, path) != others:
            problems.append(f'{where}: something of someone else changed by the end')
    except grpc.RpcError as exc:
        problems.append(f'{where}: a call without fault failed: {exc.code().name} {exc.details()}')
    finally:
        h.close()
    problems += [f'{where}: {v}' for v in watch.violations]
    return problems


# An outage (every later request fails too, rollbacks included) for the steps
# whose Spawn creates NICs and storage pieces and, on evacuate, stops the
# source: the Destroy of confirm and revert has its outage cases in the
# spawn and destroy matrices already.
OUTAGE_STEPS = ('finish-migration', 'evacuate')
CASES = [(path, step, kind, False) for path in PATHS for step in STEPS for kind in Faults.KINDS] + [
    (path, step, 'connection', True) for path in PATHS for step in OUTAGE_STEPS
]


@pytest.mark.parametrize(
    ('path', 'step', 'kind', 'outage'),
    CASES,
    ids=[f'{p}-{s}-{k}{"-outage" if o else ""}' for p, s, k, o in CASES],
)
def test_a_fault_at_every_request_of_a_move_converges_and_never_runs_two_partitions(
    world, request, caplog, path, step, kind, outage
):
    caplog.set_level(logging.INFO)
    requests = world(path)[3][step][0]
    assert requests > 0
    problems = []
    for k in range(requests):
        problems += run_case(world, path, step, kind, k, outage)
    count_cases(
        request.config, 'fault matrix, moves (path x step x request index x kind)', requests
    )
    assert PASSWORD not in caplog.text
    assert not problems, '\n'.join(problems)
