"""HMC notifications: the periodic reads they make free, how fast changes arrive, job waits.

The simulator of each profile runs with its STOMP broker (``notifications=True``);
the backend subscribes as it would to an HMC's (bench.rig's config names the
broker's port). Measured once the backend's notifications are live:

- the power-sync cycle (scenarios.power_sync's reads: GetHostStatus and the
  provider tree, ListInstances, GetInstanceInfo of each instance) of one host
  and of all eight hosts of one backend on one CPC, with partitions created
  behind the backend by another HMC session (as another tool or an HMC
  operator creates them, with the inventory notifications the HMC sends):
  the first cycle after they appeared, then cycles with nothing expired by
  the bench, then one with the snapshots and CPC facts made older than
  ``[hmc] cpc_cache_ttl`` (rig.age_caches; nothing in the backend is shortened);
- the latency of a change: from the moment the HMC changed a partition's
  status to the CHANGE a WatchInstances client receives (and to the Nova
  driver's lifecycle event where the power state changed), for the three ways
  a status changes outside the backend: an API request of another session
  (Start/Stop Partition: starting, stopping), the end of that request's job
  (active, stopped), and the guest or an operator outside the API
  (``Simulator.guest_status``: paused);
- PowerOn and PowerOff with Start/Stop jobs of JOB_SECONDS: the call's return
  minus the moment the simulator ended its job, and the job status checks
  (GET /api/jobs/{id}) per call, with notifications and with job polling alone.

The moment a job ended is read in this process from the served simulator
(``job_ends``: it watches ``dpm_hmc_sim.operations.finish_job``, which the
simulator calls when a Start/Stop job's time has come; nothing changes in how
it runs). The quick run counts (a few changes, short jobs, no timing judged).
Changes are measured to a WatchInstances client and to the Nova lifecycle
event the driver emits (dpm_frontend.events, ``[dpm]
lifecycle_stopped_event_delay`` 0).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import queue
import threading
import time
from collections.abc import Iterator
from unittest import mock

from bench import hmc as hmc_mod
from bench import rig as rig_mod
from bench import scenarios
from bench.meter import Counts
from bench.rig import HostDef
from dpm_backend.snapshot import SNAPSHOT_MAX_AGE

SYNC_HOSTS = 8
# Nova's resource tracker runs every 60 s: the aged cycle comes one interval
# after cpc_cache_ttl and after the longest any snapshot is reused without
# notifications (snapshot.SNAPSHOT_MAX_AGE).
RESOURCE_TRACKER_INTERVAL = 60
JOB_SECONDS = 1.0  # Start and Stop jobs of the timed PowerOn/PowerOff
QUICK_JOB_SECONDS = 0.3  # polled at the defaults: two checks; woken: one
EVENT_JOB_SECONDS = 0.05  # Start and Stop jobs of the operator's changes
# Operator cycles (start, paused, stop: five changes each) of the latency run.
CYCLES = 50
QUICK_CYCLES = 2
POWER_REPEATS = 5
# Seconds a change may take to reach the stream before it counts as missed.
CHANGE_TIMEOUT = 10.0
# What changes a partition's status outside the backend, and the statuses of
# one operator cycle, each with the source of its change.
SOURCES = ('request', 'job', 'guest')
CYCLE = (
    ('start', 'request', 'starting'),
    ('start', 'job', 'active'),
    ('guest', 'guest', 'paused'),
    ('stop', 'request', 'stopping'),
    ('stop', 'job', 'stopped'),
)
# The Nova lifecycle event the driver emits for a status of CYCLE, where the power
# state changes (dpm_frontend.events: starting and stopping have none, stopped
# after paused is no change).
DRIVER_EVENTS = {'active': 'STARTED', 'paused': 'STOPPED'}
POWER_OPERATIONS = ('power_on', 'power_off')
# Backend options of each mode of the PowerOn/PowerOff runs.
MODES = {'notifications': {}, 'polling': {'hmc': {'notifications': 'false'}}}


@contextlib.contextmanager
def job_ends() -> Iterator[dict[str, float]]:
    """When the simulators of this process end each Start/Stop job: job URI -> time.time()."""
    from dpm_hmc_sim import operations

    ended: dict[str, float] = {}
    finish_job = operations.finish_job

    def finished(hmc, job) -> None:
        finish_job(hmc, job)
        ended[job.uri] = time.time()

    with mock.patch.object(operations, 'finish_job', finished):
        yield ended


def _foreign_partition(served, cpc_object_id: str) -> tuple[str, str, str]:
    """A partition of the CPC no host of the bench owns: name, URI, status."""
    sim = served.sim
    with sim.lock:
        cpc = sim.hmc.cpcs.lookup_by_oid(cpc_object_id)
        for partition in cpc.partitions.list():
            name = partition.properties['name']
            if not name.startswith('OpenStack-'):
                return name, partition.uri, partition.properties['status']
    raise RuntimeError(f'CPC {cpc_object_id} has no foreign partition')


def settle(running, barrier: tuple[str, str, str], timeout: float = CHANGE_TIMEOUT) -> None:
    """Return once the backend applied every notification the HMC has sent so far.

    The HMC sends them in order and the backend applies them in order: a
    status change of ``barrier`` (a foreign partition its snapshot lists),
    seen in the snapshot, comes after all the others. The partition's status
    is changed and then changed back.
    """
    name, uri, status = barrier
    snapshots = running.backend.servicer.snapshots
    for flip in ('paused' if status != 'paused' else 'active', status):
        running.served.sim.guest_status(name, flip)
        end = time.monotonic() + timeout
        while (located := snapshots.locate(uri)) is None or located[1].status != flip:
            if time.monotonic() > end:
                raise RuntimeError(f'the backend did not apply the status change of {name}')
            time.sleep(0.005)


def create_behind(client, cpc_object_id: str, owners: list[str], foreign: int) -> list:
    """scenarios.partitions_behind created through another session: the HMC notifies them."""
    instances, partitions = scenarios.partitions_behind(owners, foreign)
    cpc = client.cpcs.resource_object(cpc_object_id)
    for properties in partitions:
        properties = dict(properties)
        status = properties.pop('status')
        partition = cpc.partitions.create(properties)
        if status == 'active':
            partition.start(wait_for_completion=False)
    return instances


# --- 1: HMC requests per power-sync cycle ---------------------------------------------


def power_sync(running, client, sizes=(0, 20), repeats: int = 1) -> dict:
    """Requests per power-sync cycle while notifications are live: one host, all of them.

    ``running`` serves SYNC_HOSTS hosts on one CPC. For each number of
    partitions added behind it (half of them the hosts' own, half foreign,
    as scenarios.power_sync adds them, but created by ``client``, another
    HMC session): the first cycle of all hosts after they appeared, then per
    group (one host; all hosts) ``repeats`` cycles as they come, then one
    with the snapshots and CPC facts aged past ``cpc_cache_ttl``.
    """
    inventory = running.inventory
    names = list(running.drivers)
    groups = {'1_host': names[:1], f'{len(names)}_hosts': names}
    results: dict = {label: {'hosts': len(group), 'sizes': {}} for label, group in groups.items()}
    barrier = _foreign_partition(running.served, inventory['cpc'])
    age = max(running.backend.config.hmc.cpc_cache_ttl, SNAPSHOT_MAX_AGE)
    age += RESOURCE_TRACKER_INTERVAL
    # The first cycle that finds them older than cpc_cache_ttl reads the CPC facts
    # read before the notifications flowed (at the hosts' checks) once more.
    rig_mod.age_caches(running.backend, age)
    refresh = running.measure(
        functools.partial(scenarios._sync_all, running, names, []), expire=False
    ).hmc
    instances: list = []
    seeded = 0
    for size in sizes:
        add = size - seeded
        owners = [names[i % len(names)] for i in range(add // 2)]
        instances += create_behind(client, inventory['cpc'], owners, add - len(owners))
        seeded = size
        settle(running, barrier)
        first = running.measure(
            functools.partial(scenarios._sync_all, running, names, list(instances)), expire=False
        )
        for label, group in groups.items():
            cycle = functools.partial(scenarios._sync_all, running, group, list(instances))
            steady = [running.measure(cycle, expire=False) for _ in range(repeats)]
            rig_mod.age_caches(running.backend, age)
            aged = running.measure(cycle, expire=False)
            measured = (*steady, aged)
            results[label]['sizes'][str(size)] = {
                'partitions_added': size,
                'instances': sum(1 for i in instances if i.host in group),
                # The first cycle of all hosts after the partitions appeared.
                'first': first.hmc.total if len(group) == len(names) else None,
                'requests': max(m.hmc.total for m in steady),
                'aged': aged.hmc.total,
                'seam': max(m.seam.total for m in measured),
                'rejected': sum(m.hmc.rejected for m in measured),
                'by_class': _merged(m.hmc for m in measured),
                'by_class_first': first.hmc.as_dict()['by_class'],
            }
    return {
        'aged_s': age,
        'facts_read_before_live': {
            'requests': refresh.total,
            'by_class': refresh.as_dict()['by_class'],
        },
        'groups': results,
    }


def _merged(counts) -> dict:
    merged: dict[str, int] = {}
    for c in counts:
        for cls, n in c.by_class.items():
            merged[cls] = merged.get(cls, 0) + n
    return dict(sorted(merged.items()))


# --- 2: latency of a change to the WatchInstances stream ---------------------------------


class Stream:
    """A WatchInstances client in a thread of its own: each response with when it came."""

    def __init__(self, address: str, host: str) -> None:
        import grpc

        from dpm_api.v1 import dpm_host_pb2 as pb
        from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc

        self._grpc = grpc
        self._channel = grpc.insecure_channel(address)
        stub = pb_grpc.DPMHostStub(self._channel)
        self._call = stub.WatchInstances(pb.WatchInstancesRequest(host=host))
        self._responses: queue.Queue = queue.Queue()
        self.unexpected: list[str] = []
        self._thread = threading.Thread(target=self._read, name='bench-watch', daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put((time.time(), response))
        except self._grpc.RpcError as exc:
            self._responses.put((time.time(), exc))

    def next(self, timeout: float):
        """(arrival time, response); queue.Empty after ``timeout``; the RpcError that ended it."""
        arrived, response = self._responses.get(timeout=timeout)
        if isinstance(response, Exception):
            raise response
        return arrived, response

    def arrival(self, instance_uuid: str, status: str, timeout: float) -> float | None:
        """When the CHANGE of ``instance_uuid`` to ``status`` came (None: not in time).

        Other responses before it are kept in ``unexpected``.
        """
        end = time.monotonic() + timeout
        while True:
            try:
                arrived, response = self.next(max(end - time.monotonic(), 0.0))
            except queue.Empty:
                return None
            for state in response.instances:
                if state.instance_uuid == instance_uuid and state.partition_status == status:
                    return arrived
            self.unexpected.append(
                ', '.join(f'{s.instance_uuid} {s.partition_status}' for s in response.instances)
            )

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=5)
        self._channel.close()


class DriverEvents:
    """A DPMDriver of the host following its backend's stream as nova-compute's does.

    Started as the compute service starts it (init_host, then Nova's listener),
    with ``[dpm] lifecycle_stopped_event_delay`` 0: a STOPPED is not held back.
    Each lifecycle event it emits is kept with the time it came.
    """

    def __init__(self, host: str) -> None:
        conf, _, _, _, _, _ = rig_mod.nova()
        conf.set_override('lifecycle_stopped_event_delay', 0, group='dpm')
        try:
            self.driver = rig_mod.host_driver(host)
        finally:
            conf.clear_override('lifecycle_stopped_event_delay', group='dpm')
        self._host = host
        self._events: queue.Queue = queue.Queue()
        self.driver.init_host(host)
        self.driver.register_event_listener(lambda event: self._events.put((time.time(), event)))

    def arrival(self, instance_uuid: str, transition: str, timeout: float) -> float | None:
        """When the driver emitted ``transition`` (STARTED, STOPPED) for the instance."""
        from nova.virt import event as virtevent

        wanted = getattr(virtevent, f'EVENT_LIFECYCLE_{transition}')
        end = time.monotonic() + timeout
        while True:
            try:
                arrived, event = self._events.get(timeout=max(end - time.monotonic(), 0.0))
            except queue.Empty:
                return None
            # Other instances of the host: their current state when the stream opened.
            if event.uuid == instance_uuid and event.transition == wanted:
                return arrived

    def close(self) -> None:
        self.driver.cleanup_host(self._host)


def _post_time(records, operation: str) -> float | None:
    """When the HMC answered the Start or Stop Partition request among ``records``."""
    suffix = f'/operations/{operation}'
    return next(
        (
            r.time
            for r in records
            if r.method == 'POST' and r.uri.partition('?')[0].endswith(suffix)
        ),
        None,
    )


def _ms(values: list[float]) -> dict:
    if not values:
        return {'samples': 0, 'p50_ms': None, 'p99_ms': None, 'max_ms': None}
    return {
        'samples': len(values),
        'p50_ms': round(scenarios._median(values) * 1000, 2),
        'p99_ms': round(scenarios._percentile(values, 0.99) * 1000, 2),
        'max_ms': round(max(values) * 1000, 2),
    }


def event_latency(
    running,
    client,
    ended: dict[str, float],
    latency: float,
    cycles: int = CYCLES,
    job_seconds: float = EVENT_JOB_SECONDS,
) -> dict:
    """Seconds from a status change on the HMC to its CHANGE on a stream, and to the driver.

    A new instance of the first host (prepared by the driver: its partition
    exists, stopped; the ListInstances Nova makes after a boot reads it into
    the snapshot). Each cycle: ``client`` (another session) starts the
    partition (starting: the request; active: its job's end), the guest
    pauses it (paused), ``client`` stops it (stopping, stopped). The simulator
    answers each request after ``latency``. The moment of a change: the
    record of the request's answer, the end of the job (``job_ends``), just
    before ``guest_status`` was called. Measured to a WatchInstances client
    of this process and to the lifecycle event a DPMDriver of the host emits
    (DriverEvents: its own stream, as nova-compute's). Also counted: the HMC
    requests the backend made meanwhile (at its seam: none expected).
    """
    from dpm_backend import naming

    sim = running.sim
    host = next(iter(running.drivers))
    driver = running.drivers[host]
    samples: dict[str, list[float]] = {source: [] for source in SOURCES}
    missed: list[str] = []
    instance = rig_mod.new_instance(host)
    driver.prepare_for_spawn(instance)
    driver.list_instance_uuids()
    name = naming.partition_name(host, instance.uuid)
    partition = client.cpcs.resource_object(running.inventory['cpc']).partitions.find(name=name)
    sim.configure(start_seconds=job_seconds, stop_seconds=job_seconds, latency=latency)
    emitted: dict[str, list[float]] = {DRIVER_EVENTS[status]: [] for status in DRIVER_EVENTS}
    missed_events: list[str] = []
    lifecycle = DriverEvents(host)
    stream = Stream(running.address, host)
    try:
        stream.next(CHANGE_TIMEOUT)  # the current state
        # The driver's first events: the current state (this instance stopped).
        if lifecycle.arrival(instance.uuid, 'STOPPED', CHANGE_TIMEOUT) is None:
            missed_events.append('current state STOPPED')
        running.meter.reset()
        for _ in range(cycles):
            job_uri = ''
            for action, source, status in CYCLE:
                changed: float | None = None
                if source == 'request':
                    before = len(sim.requests())
                    job_uri = getattr(partition, action)(wait_for_completion=False).uri
                    changed = _post_time(sim.requests()[before:], action)
                elif source == 'guest':
                    changed = time.time()
                    sim.guest_status(name, status)
                arrived = stream.arrival(instance.uuid, status, CHANGE_TIMEOUT)
                if source == 'job':
                    changed = ended.get(job_uri)
                if arrived is None or changed is None:
                    missed.append(f'{action} {status}')
                    continue
                samples[source].append(arrived - changed)
                transition = DRIVER_EVENTS.get(status)
                if transition is not None:
                    event = lifecycle.arrival(instance.uuid, transition, CHANGE_TIMEOUT)
                    if event is None:
                        missed_events.append(f'{action} {status} {transition}')
                    else:
                        emitted[transition].append(event - changed)
        backend_requests = running.meter.take().total
    finally:
        stream.close()
        lifecycle.close()
        sim.configure(start_seconds=0, stop_seconds=0, latency=0)
    driver.destroy(None, instance, None)
    every = [v for values in samples.values() for v in values]
    return {
        'latency_ms': latency * 1000,
        'job_seconds': job_seconds,
        'cycles': cycles,
        'changes': len(every),
        'missed': missed,
        'unexpected': stream.unexpected[:10],
        'backend_requests': backend_requests,
        'by_source': {source: _ms(values) for source, values in samples.items()},
        'all': _ms(every),
        # To the lifecycle event the Nova driver emits (STARTED at active: the job's
        # end; STOPPED at paused: the guest), STOPPED not held back.
        'driver': {
            'stopped_delay_s': 0,
            'events': sum(len(values) for values in emitted.values()),
            'missed': missed_events,
            'by_event': {transition: _ms(values) for transition, values in emitted.items()},
            'all': _ms([v for values in emitted.values() for v in values]),
        },
    }


# --- 3: PowerOn and PowerOff beyond their job --------------------------------------------


def _is_job(uri: str) -> bool:
    return uri.startswith('/api/jobs/')


def _job_uris(records) -> list[str]:
    return sorted({r.uri.partition('?')[0] for r in records if _is_job(r.uri)})


class GcPauses:
    """Seconds this process spent collecting garbage: simulator, backend and driver share it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == 'start':
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)


def _timed_call(sim, ended: dict[str, float], step) -> dict:
    """One call: its seconds beyond its job's end, when the job was seen ended, its requests.

    ``checked_s``: from the job's end to the HMC's answer to the status check that
    found it ended (a notified wait: the wake-up, plus one request's latency).
    """
    before = len(sim.requests())
    with GcPauses() as pauses:
        started = time.time()
        step()
        returned = time.time()
    records = sim.requests()[before:]
    ends = [ended[uri] for uri in _job_uris(records) if uri in ended]
    checks = [r for r in records if r.method == 'GET' and _is_job(r.uri)]
    end = max(ends) if ends else None
    checked = next((r.time for r in checks if end is not None and r.time >= end), None)
    counts = Counts.of_records(records)
    return {
        'rpc_s': round(returned - started, 3),
        'beyond_job_s': None if end is None else round(returned - end, 3),
        'checked_s': None if checked is None or end is None else round(checked - end, 3),
        'gc_s': round(pauses.seconds, 3),
        'jobs': len(ends),
        'job_checks': len(checks),
        'work': counts.work,
        'polling': counts.polling,
        'rejected': counts.rejected,
    }


def power_runs(running, ended: dict[str, float], repeats: int) -> dict:
    """PowerOn then PowerOff of a new instance of the first host, ``repeats`` times."""
    host = next(iter(running.drivers))
    driver = running.drivers[host]
    instance = rig_mod.new_instance(host)
    driver.prepare_for_spawn(instance)
    steps = {
        'power_on': lambda: driver.power_on(None, instance, None),
        'power_off': lambda: driver.power_off(instance),
    }
    runs: dict[str, list] = {op: [] for op in POWER_OPERATIONS}
    for _ in range(repeats):
        for op in POWER_OPERATIONS:
            runs[op].append(_timed_call(running.sim, ended, steps[op]))
    driver.destroy(None, instance, None)
    return {op: _power_summary(r) for op, r in runs.items()}


def _power_summary(runs: list[dict]) -> dict:
    beyond = [r['beyond_job_s'] for r in runs]
    measured = [v for v in beyond if v is not None]
    return {
        'beyond_job_s': beyond,
        'median_s': scenarios._median(measured),
        'max_s': max(measured) if len(measured) == len(runs) else None,
        'checked_s': [r['checked_s'] for r in runs],
        'gc_s': [r['gc_s'] for r in runs],
        'job_checks': [r['job_checks'] for r in runs],
        'jobs': [r['jobs'] for r in runs],
        'work': [r['work'] for r in runs],
        'rpc_s': [r['rpc_s'] for r in runs],
        'rejected': sum(r['rejected'] for r in runs),
    }


# --- the profile's run ------------------------------------------------------------------------


def events(profile: str, quick: bool) -> dict:
    """Every notifications scenario on a simulator of ``profile`` with its broker on.

    One backend with notifications serves SYNC_HOSTS hosts on the profile's
    CPC for the three scenarios (power-sync cycles first, then the changes,
    then PowerOn/PowerOff on the first host); the full run times PowerOn and
    PowerOff on a second backend without notifications too. The quick run
    counts: two sizes, a few changes at no latency, short jobs.
    """
    definition = hmc_mod.definition(profile)
    cpc_name = hmc_mod.serving_cpc(profile)
    inventory = hmc_mod.inventory(definition, cpc_name)
    jobs = {'start_seconds': 0, 'stop_seconds': 0, 'discover_seconds': 0}
    job_seconds = QUICK_JOB_SECONDS if quick else JOB_SECONDS
    latency = 0.0 if quick else scenarios.HMC_LATENCY
    repeats = 1 if quick else POWER_REPEATS
    result: dict = {'cpc': cpc_name, 'timed': not quick}
    power: dict = {
        'job_seconds': job_seconds,
        'latency_ms': latency * 1000,
        'repeats': repeats,
        'modes': {},
    }
    hosts = [HostDef(f'live{i}') for i in range(SYNC_HOSTS)]
    with (
        hmc_mod.simulator(profile, notifications=True, **jobs) as served,
        job_ends() as ended,
    ):
        with rig_mod.rig(served, inventory, hosts) as running, served.logged_on() as client:
            rig_mod.wait_until_live(running.backend)
            result['power_sync'] = power_sync(
                running, client, (0, 20) if quick else (0, 20, 80), 1 if quick else 3
            )
            result['latency'] = {
                f'{seconds * 1000:g}': event_latency(
                    running, client, ended, seconds, QUICK_CYCLES if quick else CYCLES
                )
                for seconds in ((0.0,) if quick else (0.0, scenarios.HMC_LATENCY))
            }
            served.sim.configure(
                start_seconds=job_seconds, stop_seconds=job_seconds, latency=latency
            )
            power['modes']['notifications'] = power_runs(running, ended, repeats)
            result['reconnects'] = running.backend.notifications.reconnects
        if not quick:
            with rig_mod.rig(served, inventory, [HostDef('polled')], MODES['polling']) as running:
                power['modes']['polling'] = power_runs(running, ended, repeats)
        served.sim.configure(start_seconds=0, stop_seconds=0, latency=0)
        result['power'] = power
        records = served.sim.requests()
    refused = hmc_mod.rejected(records)
    result['hmc_requests'] = len(records)
    result['rejected'] = {'count': len(refused), 'requests': hmc_mod.describe(refused)[:20]}
    return result
