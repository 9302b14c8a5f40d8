"""The benchmark scenarios; each returns a JSON-able dict of its measurements.

Every scenario runs the backend against dpm-hmc-sim over HTTPS (``bench.hmc``)
and counts what reached the simulator. Seconds are measured only where a
scenario says so; the counts do not depend on the machine.
"""

from __future__ import annotations

import functools
import pathlib
import re
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent import futures

from bench import hmc as hmc_mod
from bench import keys
from bench import rig as rig_mod
from bench.rig import FAST_JOBS
from bench.rig import HostDef

# Seconds the watcher measures the idle backend before the storm.
IDLE_SECONDS = 4.0
# Seconds each HMC request takes where a scenario measures wall time (an HMC
# round trip over a site network, the appliance's own work included).
HMC_LATENCY = 0.02

OPERATIONS = (
    'prepare',
    'volume_connector',
    'spawn',
    'get_info',
    'list_instance_uuids',
    'resource_refresh',
    'power_off',
    'power_on',
    'power_on_from_paused',
    'reboot',
    'destroy',
)
# The operations whose wait for HMC jobs is measured (scenario 3).
WAITING_OPERATIONS = ('spawn', 'power_off', 'power_on', 'reboot', 'destroy')
JOB_POST = re.compile(r'/api/partitions/[^/?]+/operations/(start|stop)')
# URI classes of the budget "no GET per NIC or per virtual switch".
NIC_GET = r'/api/partitions/\{id\}/nics/\{id\}'
VSWITCH_GET = r'/api/virtual-switches/\{id\}(\?.*)?'
VSWITCH_LIST = r'/api/cpcs/\{id\}/virtual-switches(\?.*)?'


def device_reads(by_class: dict) -> dict:
    """GETs of NICs and virtual switches, and lists of virtual switches, in URI classes."""

    def count(pattern: str) -> int:
        return sum(n for cls, n in by_class.items() if re.fullmatch(f'GET {pattern}', cls))

    return {
        'nic_gets': count(NIC_GET),
        'vswitch_gets': count(VSWITCH_GET),
        'vswitch_lists': count(VSWITCH_LIST),
    }


def _median(values):
    return statistics.median(values) if values else None


def _percentile(values, q: float):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _partition_name(instance) -> str:
    from dpm_backend import naming

    return naming.partition_name(instance.host, instance.uuid)


# --- Scenario 1: HMC requests per Nova operation ------------------------------------------


def _lifecycle_steps(running, driver, host: str, nics: int):
    """The operations of scenario 1 in order, as (name, callable)."""
    instance = rig_mod.new_instance(host)
    vifs = rig_mod.network_info(running.inventory['vswitches'], nics)
    state = {}

    def connector():
        # Nova's first ask, before the WWPNs are in system_metadata.
        fresh = rig_mod.new_instance(host, instance_uuid=instance.uuid)
        state['wwpns'] = driver.get_volume_connector(fresh)['wwpns']

    def refresh():
        driver.get_available_resource(host)
        driver.update_provider_tree(rig_mod.provider_tree_for(driver, host), host)

    def spawn():
        bdi = rig_mod.block_device_info(state['wwpns'])
        driver.spawn(None, instance, None, [], None, {}, vifs, bdi)

    def paused_then_on():
        # An in-guest shutdown left the partition 'paused': stop, then start.
        hmc_mod.set_status(running.served, _partition_name(instance), 'paused')
        driver.power_on(None, instance, vifs)

    return instance, [
        ('prepare', lambda: driver.prepare_for_spawn(instance)),
        ('volume_connector', connector),
        ('spawn', spawn),
        ('get_info', lambda: driver.get_info(instance)),
        ('list_instance_uuids', driver.list_instance_uuids),
        ('resource_refresh', refresh),
        ('power_off', lambda: driver.power_off(instance)),
        ('power_on', lambda: driver.power_on(None, instance, vifs)),
        ('power_on_from_paused', paused_then_on),
        ('reboot', lambda: driver.reboot(None, instance, vifs, 'HARD')),
        ('destroy', lambda: driver.destroy(None, instance, vifs)),
    ]


def _summary(measured: list) -> dict:
    """Medians of repeated measurements of one operation; the last one's URI classes."""
    return {
        'work': _median([m.hmc.work for m in measured]),
        'polling': _median([m.hmc.polling for m in measured]),
        'total': _median([m.hmc.total for m in measured]),
        'rejected': sum(m.hmc.rejected for m in measured),
        'seam_differs': sum(1 for m in measured if m.seam.total != m.hmc.total),
        'by_class': measured[-1].hmc.as_dict()['by_class'],
    }


def requests_per_operation(served, inventory: dict, repeats: int = 3) -> dict:
    """HMC requests per Nova operation, n NICs x m vHBAs (jobs end at once).

    Spawn comes after prepare, with the CPC's virtual switches known; read
    operations run with the partition snapshot expired.
    """
    hosts = [HostDef('m1', vhbas=1), HostDef('m4', vhbas=4)]
    results = {}
    with rig_mod.rig(served, inventory, hosts, {'hmc': FAST_JOBS}) as running:
        for host in hosts:  # warm: the driver's channel
            running.drivers[host.name].get_available_resource(host.name)
        # Warm: a boot with a NIC on every virtual switch, as a backend that
        # has run a while has seen them (spawn_cold measures the first spawn).
        warm = rig_mod.new_instance('m1')
        vifs = rig_mod.boot(
            running.drivers['m1'], warm, inventory['vswitches'], len(inventory['vswitches'])
        )
        running.drivers['m1'].destroy(None, warm, vifs)
        for nics in (1, 4):
            for vhbas in (1, 4):
                host = f'm{vhbas}'
                driver = running.drivers[host]
                samples: dict[str, list] = {op: [] for op in OPERATIONS}
                for _ in range(repeats):
                    _, steps = _lifecycle_steps(running, driver, host, nics)
                    for name, step in steps:
                        samples[name].append(running.measure(step))
                results[keys.key(nics, vhbas)] = {
                    'nics': nics,
                    'vhbas': vhbas,
                    'operations': {op: _summary(m) for op, m in samples.items()},
                }
    return results


def spawn_cold(served, inventory: dict, nics: int = 4) -> dict:
    """The first spawn of a fresh backend: the virtual switches are not known yet.

    ``nics`` NICs spread over every virtual switch of the CPC. Later spawns
    reuse what this one learnt (scenario 1 measures them).
    """
    host = HostDef('cold', vhbas=1)
    with rig_mod.rig(served, inventory, [host], {'hmc': FAST_JOBS}) as running:
        driver = running.drivers[host.name]
        instance = rig_mod.new_instance(host.name)
        vifs = rig_mod.network_info(inventory['vswitches'], nics)
        driver.prepare_for_spawn(instance)
        wwpns = driver.get_volume_connector(instance)['wwpns']
        bdi = rig_mod.block_device_info(wwpns)
        measured = running.measure(
            lambda: driver.spawn(None, instance, None, [], None, {}, vifs, bdi)
        )
        driver.destroy(None, instance, vifs)
    counts = measured.hmc.as_dict()
    return {
        'nics': nics,
        'vswitches': len({vif['details']['object_id'] for vif in vifs}),
        'work': counts['work'],
        'polling': counts['polling'],
        'rejected': counts['rejected'],
        **device_reads(counts['by_class']),
        'by_class': counts['by_class'],
    }


# --- Scenario 1b: the storage-group path (a CPC with DPM storage management) ------------------

SG_OPERATIONS = (
    'prepare',
    'volume_connector',
    'spawn',
    'attach_volume',
    'detach_volume',
    'power_off',
    'power_on',
    'destroy',
)
SG_NICS = (1, 4)
# The adapter ports the host maps (both FCP adapters of CPCZ14), and the
# storage group's connectivity (the backend's default): WWPNs per group.
SG_PORTS = 2
SG_CONNECTIVITY = 2
BOOT_VOLUME_GIB = 20
DATA_VOLUME_GIB = 5
DISCOVERY_POST = re.compile(r'/api/storage-groups/[^/?]+/operations/start-fcp-storage-discovery')


def _sg_lifecycle_steps(driver, host: str, vswitches: list[str], nics: int):
    """The operations of the storage-group lifecycle in order, as (name, callable)."""
    instance = rig_mod.new_instance(host)
    vifs = rig_mod.network_info(vswitches, nics)
    state: dict = {}

    def connector():
        # Nova's first ask, before the WWPNs are in system_metadata.
        fresh = rig_mod.new_instance(host, instance_uuid=instance.uuid)
        state['wwpns'] = driver.get_volume_connector(fresh)['wwpns']

    def spawn():
        bdi = rig_mod.block_device_info(
            state['wwpns'], volume_id=str(uuid.uuid4()), volume_size=BOOT_VOLUME_GIB
        )
        driver.spawn(None, instance, None, [], None, {}, vifs, bdi)

    def attach():
        state['data'] = rig_mod.fc_connection_info(state['wwpns'], 2, str(uuid.uuid4()))
        with rig_mod.bdm_lookup(DATA_VOLUME_GIB):
            driver.attach_volume(rig_mod.nova_context(), state['data'], instance, '/dev/sdb')

    def detach():
        driver.detach_volume(rig_mod.nova_context(), state['data'], instance, '/dev/sdb')

    return instance, [
        ('prepare', lambda: driver.prepare_for_spawn(instance)),
        ('volume_connector', connector),
        ('spawn', spawn),
        ('attach_volume', attach),
        ('detach_volume', detach),
        ('power_off', lambda: driver.power_off(instance)),
        ('power_on', lambda: driver.power_on(None, instance, vifs)),
        ('destroy', lambda: driver.destroy(None, instance, vifs)),
    ]


def _storage_groups_left(served) -> list[str]:
    sim = served.sim
    with sim.lock:
        return [g.properties['name'] for g in sim.hmc.consoles.console.storage_groups.list()]


def sg_requests_per_operation(served, inventory: dict, repeats: int = 3) -> dict:
    """HMC requests per Nova operation on the storage-group path, n NICs (jobs end at once).

    A host on the CPC with DPM storage management, its groups on both FCP
    adapter ports (connectivity 2). Spawn defines the boot volume, validates
    its path, fulfils it, runs FCP discovery (an HMC job), attaches the group
    and starts; attach_volume defines a data volume and runs discovery;
    detach_volume deletes the volume; destroy detaches and deletes the group.
    Job status checks and deletes (Start, Stop, discovery) are polling.
    """
    host = HostDef('sg', vhbas=SG_PORTS)
    vswitches = inventory['vswitches']
    results: dict = {}
    with rig_mod.rig(served, inventory, [host], {'hmc': FAST_JOBS}) as running:
        driver = running.drivers[host.name]
        driver.get_available_resource(host.name)  # warm: the driver's channel
        # Warm: a boot that has seen the virtual switch (as scenario 1).
        warm = rig_mod.new_instance(host.name)
        vifs = rig_mod.boot(driver, warm, vswitches, 1, volume_size=BOOT_VOLUME_GIB)
        driver.destroy(None, warm, vifs)
        for nics in SG_NICS:
            samples: dict[str, list] = {op: [] for op in SG_OPERATIONS}
            for _ in range(repeats):
                _, steps = _sg_lifecycle_steps(driver, host.name, vswitches, nics)
                for name, step in steps:
                    samples[name].append(running.measure(step))
            results[f'n{nics}'] = {
                'nics': nics,
                'ports': SG_PORTS,
                'connectivity': SG_CONNECTIVITY,
                'operations': {op: _summary(m) for op, m in samples.items()},
            }
    return {'per_nics': results, 'groups_left': _storage_groups_left(served)}


def _discovery_timing(records, seconds: float) -> dict | None:
    """The discovery job of a span: how long the call waited for it, and its lag after its end.

    The job ends ``seconds`` after the HMC accepted it (the POST's record);
    the backend's checks of it follow, the last one deletes it.
    """
    for index, record in enumerate(records):
        if record.method != 'POST' or not DISCOVERY_POST.fullmatch(record.uri.partition('?')[0]):
            continue
        end = record.time + seconds
        checks, found, done = 0, None, None
        for later in records[index + 1 :]:
            if not later.uri.startswith('/api/jobs/'):
                continue
            if later.method == 'GET':
                checks += 1
                if found is None and later.time >= end:
                    found = later.time
            elif later.method == 'DELETE':
                done = later.time
                break
        return {
            'waited_s': None if done is None else round(done - record.time, 3),
            'found_after_s': None if found is None else round(found - end, 3),
            'checks': checks,
        }
    return None


def discovery_time(
    served, inventory: dict, seconds: float = 1.0, repeats: int = 4, latency: float = 0.0
) -> dict:
    """The time FCP discovery adds to a spawn (and to attach_volume).

    The simulator's discovery jobs take ``seconds``; Start/Stop jobs end at
    once. The same lifecycle runs ``repeats`` times on a fresh backend with
    discovery jobs of ``seconds``, then on another with discovery jobs of 0 s
    (default job polling, as in production: the first run meets a backend
    that has not timed a discovery yet). A spawn always runs one discovery,
    so there is no spawn without one: the 0 s job is the floor (submit, one
    check after the first poll interval, delete). Measured: the calls'
    seconds (the difference of the medians is what the job's length adds),
    and from the simulator's records the wait for the discovery job itself
    (submission to delete) and how long after its end the backend saw it.
    """
    sim = served.sim
    host = HostDef('disc', vhbas=SG_PORTS)
    vswitches = inventory['vswitches']
    runs: dict[str, dict[str, list]] = {}
    before = len(sim.requests())
    try:
        for label, job_seconds in (('discovery', seconds), ('instant', 0.0)):
            sim.reset()
            sim.configure(
                start_seconds=0, stop_seconds=0, discover_seconds=job_seconds, latency=latency
            )
            slot = runs[label] = {
                'spawn_s': [],
                'attach_s': [],
                'spawn_jobs': [],
                'attach_jobs': [],
            }
            with rig_mod.rig(served, inventory, [host]) as running:
                driver = running.drivers[host.name]
                for _ in range(repeats):
                    _, steps = _sg_lifecycle_steps(driver, host.name, vswitches, 1)
                    for name, step in steps:
                        if name not in ('spawn', 'attach_volume'):
                            step()
                            continue
                        measured = running.measure(step)
                        key = 'spawn' if name == 'spawn' else 'attach'
                        slot[f'{key}_s'].append(round(measured.seconds, 3))
                        slot[f'{key}_jobs'].append(_discovery_timing(measured.records, job_seconds))
    finally:
        sim.configure(start_seconds=0, stop_seconds=0, discover_seconds=0, latency=0)
    with_job, instant = runs['discovery'], runs['instant']
    spawn_added = _median(with_job['spawn_s']) - _median(instant['spawn_s'])
    attach_added = _median(with_job['attach_s']) - _median(instant['attach_s'])
    lags = [j['found_after_s'] for j in with_job['spawn_jobs'] + with_job['attach_jobs'] if j]

    def waits(jobs) -> float | None:
        return _median([j['waited_s'] for j in jobs if j and j['waited_s'] is not None])

    return {
        'discover_seconds': seconds,
        'latency_ms': latency * 1000,
        'repeats': repeats,
        'runs': runs,
        # The spawn's wait for its discovery job: from its submission to its delete.
        'spawn_discovery_wait_s': waits(with_job['spawn_jobs']),
        'spawn_discovery_wait_instant_s': waits(instant['spawn_jobs']),
        'spawn_s': _median(with_job['spawn_s']),
        'spawn_instant_s': _median(instant['spawn_s']),
        'spawn_added_s': round(spawn_added, 3),
        'attach_s': _median(with_job['attach_s']),
        'attach_instant_s': _median(instant['attach_s']),
        'attach_added_s': round(attach_added, 3),
        'worst_found_after_s': max((v for v in lags if v is not None), default=None),
        'rejected': len(hmc_mod.rejected(sim.requests()[before:])),
    }


# --- Scenario 2: the reads Nova repeats (power-sync cycle) --------------------------------


def _seed_partitions(running, owners: list[str], foreign: int) -> list:
    """Partitions created behind the backend: one per owner host, and foreign ones."""
    instances, partitions = partitions_behind(owners, foreign)
    hmc_mod.add_partitions(running.served, running.inventory['cpc'], partitions)
    return instances


def partitions_behind(owners: list[str], foreign: int) -> tuple[list, list[dict]]:
    """The instances of the owner hosts' partitions, and every partition's properties.

    One partition per owner host (every third stopped, the others active),
    then ``foreign`` ones (another OpenStack's, other LPARs; all active).
    """
    instances, partitions = [], []
    for index, host in enumerate(owners):
        instance = rig_mod.new_instance(host)
        partitions.append(
            {
                'name': f'OpenStack-{host}-{instance.uuid}',
                'description': f'OpenStack CPCSubset={host}',
                'status': 'active' if index % 3 else 'stopped',
                'type': 'linux',
                'ifl-processors': 1,
                'initial-memory': 512,
                'maximum-memory': 512,
            }
        )
        instances.append(instance)
    for index in range(foreign):
        name = f'OpenStack-other-{uuid.uuid4()}' if index % 2 else f'LPAR{index:04d}'
        partitions.append(
            {
                'name': name,
                'status': 'active',
                'type': 'linux',
                'ifl-processors': 2,
                'initial-memory': 4096,
                'maximum-memory': 4096,
            }
        )
    return instances, partitions


def _sync_cycle(running, host: str, instances) -> None:
    """One resource-tracker pass plus one power-state sync, as nova-compute runs them."""
    driver = running.drivers[host]
    driver.get_available_resource(host)
    driver.update_provider_tree(rig_mod.provider_tree_for(driver, host), host)
    driver.list_instance_uuids()
    for instance in instances:
        if instance.host == host:
            driver.get_info(instance)


def _sync_all(running, names, instances) -> None:
    for name in names:
        _sync_cycle(running, name, instances)


def _reads(running, host: str, instance) -> dict:
    """Each read alone, snapshots expired: HMC requests (CPC facts cached / expired)."""
    driver = running.drivers[host]
    reads = {
        'GetHostStatus': lambda: driver.get_available_resource(host),
        'ListInstances': driver.list_instance_uuids,
        'GetInstanceInfo': lambda: driver.get_info(instance),
    }
    result = {}
    for name, read in reads.items():
        cached = running.measure(read)
        expired = running.measure(read, cpc_facts=True)
        result[name] = {
            'facts_cached': cached.hmc.total,
            'facts_expired': expired.hmc.total,
            'rejected': cached.hmc.rejected + expired.hmc.rejected,
            'by_class': expired.hmc.as_dict()['by_class'],
        }
    return result


def power_sync(served, inventory: dict, sizes=(0, 20, 80), repeats: int = 3) -> dict:
    """Requests per power-sync cycle, 1 host and 8 hosts on one CPC.

    For each number of partitions added behind the backend (half of them the
    hosts' own, half foreign): the first cycle after they appeared, then
    ``repeats`` cycles with the snapshots expired (Nova's cycles are a
    minute or more apart) and CPC facts still young, and one cycle that
    finds the CPC facts expired too (cycles farther apart than
    ``[hmc] cpc_cache_ttl``).
    """
    results = {}
    for hosts in ([HostDef('sync0')], [HostDef(f'sync{i}') for i in range(8)]):
        served.sim.reset()
        per_size = {}
        names = [h.name for h in hosts]
        with rig_mod.rig(served, inventory, hosts, {'hmc': FAST_JOBS}) as running:
            instances = []
            seeded = 0
            for size in sizes:
                add = size - seeded
                owners = [names[i % len(names)] for i in range(add // 2)]
                instances += _seed_partitions(running, owners, add - len(owners))
                seeded = size
                cycle = functools.partial(_sync_all, running, names, list(instances))
                first = running.measure(cycle)
                steady = [running.measure(cycle) for _ in range(repeats)]
                expired = running.measure(cycle, cpc_facts=True)
                per_size[str(size)] = {
                    'partitions_added': size,
                    'instances': len(instances),
                    'first': first.hmc.total,
                    'requests': _median([m.hmc.total for m in steady]),
                    'facts_expired': expired.hmc.total,
                    'rejected': sum(m.hmc.rejected for m in (first, *steady, expired)),
                    'by_class': steady[-1].hmc.as_dict()['by_class'],
                    'by_class_facts_expired': expired.hmc.as_dict()['by_class'],
                }
            reads = None
            if instances:
                reads = _reads(running, instances[0].host, instances[0])
        results[f'{len(hosts)}_host' if len(hosts) == 1 else f'{len(hosts)}_hosts'] = {
            'hosts': len(hosts),
            'sizes': per_size,
            **({'reads': reads} if reads else {}),
        }
    return results


def reads_during_destroys(served, inventory: dict, rounds: int = 3, per_round: int = 24) -> dict:
    """get_info of one instance, snapshot expired each time, while others of its host go.

    Nova reads an instance's power state while other instances of the host
    are deleted. Every read must answer: the watched instance always exists.
    """
    import threading

    served.sim.reset()
    host = HostDef('race', max_processors=32, max_memory=65536)
    options = {'hmc': {**FAST_JOBS, 'pool_size': 8}}
    reads, failures = [0], []
    with rig_mod.rig(served, inventory, [host], options) as running:
        driver = running.drivers[host.name]
        vswitches = inventory['vswitches']
        watched = rig_mod.new_instance(host.name)
        watched_vifs = rig_mod.boot(driver, watched, vswitches, 1)
        for _ in range(rounds):
            others = [rig_mod.new_instance(host.name) for _ in range(per_round)]
            with futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: rig_mod.boot(driver, i, vswitches, 1), others))
            stop = threading.Event()

            def read(stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    rig_mod.expire_caches(running.backend)
                    try:
                        driver.get_info(watched)
                        reads[0] += 1
                    except Exception as exc:  # the measured outcome
                        failures.append(f'{type(exc).__name__}: {exc}')

            reader = threading.Thread(target=read, name='bench-reader')
            reader.start()
            try:
                with futures.ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda i: driver.destroy(None, i, None), others))
            finally:
                stop.set()
                reader.join()
        driver.destroy(None, watched, watched_vifs)
    return {
        'destroyed': rounds * per_round,
        'reads': reads[0],
        'failed_reads': len(failures),
        'failures': failures[:10],
    }


# --- Scenario 3: time waited beyond the HMC jobs ----------------------------------------------


def _job_of(record, settings) -> tuple[str, float] | None:
    """The kind and length of the HMC job a request submitted; None if it submitted none."""
    if record.method != 'POST' or record.status != 202:
        return None
    path = record.uri.partition('?')[0]
    match = JOB_POST.fullmatch(path)
    if match is not None:
        operation = match.group(1)
        return operation, settings.start_seconds if operation == 'start' else settings.stop_seconds
    if DISCOVERY_POST.fullmatch(path):
        return 'discovery', settings.discover_seconds
    return None


def _job_timing(records, settings, returned_at: float) -> dict:
    """When each HMC job of a span ended, and how long after that the call returned.

    A Start, Stop or FCP discovery job ends ``start_seconds``,
    ``stop_seconds`` or ``discover_seconds`` after the HMC accepted it (its
    202, the record's time); the check that found it ended is the first job
    status GET after that.
    """
    jobs, ends = [], []
    for index, record in enumerate(records):
        job = _job_of(record, settings)
        if job is None:
            continue
        operation, seconds = job
        end = record.time + seconds
        later = records[index + 1 :]
        found = next(
            (r.time for r in later if _is_job_check(r) and r.time >= end),
            None,
        )
        checks = 0
        for r in later:
            if _job_of(r, settings) is not None:
                break  # the next job's checks are its own
            checks += _is_job_check(r)
        ends.append(end)
        jobs.append(
            {
                'operation': operation,
                'seconds': seconds,
                'found_after_s': None if found is None else round(found - end, 3),
                'checks': checks,
            }
        )
    overhead = round(returned_at - max(ends), 3) if ends else None
    return {'jobs': jobs, 'overhead_s': overhead}


def _is_job_check(record) -> bool:
    return record.method == 'GET' and record.uri.startswith('/api/jobs/')


def wait_overhead(served, inventory: dict, latency: float, cycles: int = 3) -> dict:
    """Seconds each job-waiting RPC took beyond the end of its last HMC job.

    The simulator's Start/Stop jobs take ``start_seconds`` / ``stop_seconds``;
    the backend runs with its default job polling (``[hmc] job_poll_interval``
    0.2 s, ``job_poll_max_interval`` 2 s). The first cycle meets a backend
    that has not seen a job of either kind yet.
    """
    sim = served.sim
    sim.reset()
    settings = sim.configure(start_seconds=1.0, stop_seconds=1.0, latency=latency)
    host = HostDef('wait', vhbas=1)
    per_op: dict[str, list] = {op: [] for op in WAITING_OPERATIONS}
    try:
        with rig_mod.rig(served, inventory, [host]) as running:
            driver = running.drivers[host.name]
            for _ in range(cycles):
                instance = rig_mod.new_instance(host.name)
                vifs = rig_mod.network_info(inventory['vswitches'], 1)
                driver.prepare_for_spawn(instance)
                wwpns = driver.get_volume_connector(instance)['wwpns']
                bdi = rig_mod.block_device_info(wwpns)
                steps = {
                    'spawn': lambda i=instance, v=vifs, b=bdi: driver.spawn(
                        None, i, None, [], None, {}, v, b
                    ),
                    'power_off': lambda i=instance: driver.power_off(i),
                    'power_on': lambda i=instance, v=vifs: driver.power_on(None, i, v),
                    'reboot': lambda i=instance, v=vifs: driver.reboot(None, i, v, 'HARD'),
                    'destroy': lambda i=instance, v=vifs: driver.destroy(None, i, v),
                }
                for name in WAITING_OPERATIONS:
                    before = len(sim.requests())
                    started = time.time()
                    steps[name]()
                    returned = time.time()
                    records = sim.requests()[before:]
                    timing = _job_timing(records, settings, returned)
                    timing['rpc_s'] = round(returned - started, 3)
                    timing['rejected'] = len(hmc_mod.rejected(records))
                    per_op[name].append(timing)
    finally:
        sim.configure(start_seconds=0, stop_seconds=0, latency=0)
    result = {'latency_s': latency, 'job_seconds': settings.start_seconds, 'operations': {}}
    for name, runs in per_op.items():
        # None: the call waited for no job (then it is not judged, and max_s is None).
        overheads = [r['overhead_s'] for r in runs]
        measured = [v for v in overheads if v is not None]
        complete = bool(runs) and len(measured) == len(runs)
        result['operations'][name] = {
            'overhead_s': overheads,
            'first_s': overheads[0] if overheads else None,
            'warm_median_s': _median([v for v in overheads[1:] if v is not None]),
            'max_s': max(measured) if complete else None,
            'job_checks': [sum(j['checks'] for j in r['jobs']) for r in runs],
            'rpc_s': [r['rpc_s'] for r in runs],
            'rejected': sum(r['rejected'] for r in runs),
            'runs': runs,
        }
    return result


def zhmcclient_wait(profile: str = '2.15.0', seconds: float = 1.0) -> dict:
    """zhmcclient's own wait: ``Partition.start(wait_for_completion=True)``, one run.

    A real zhmcclient Session on the simulator; the Start job takes
    ``seconds``. zhmcclient checks the job, then every 10 s.
    """
    with hmc_mod.simulator(profile, start_seconds=seconds, stop_seconds=0) as served:
        inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
        session = served.session()
        try:
            import zhmcclient

            client = zhmcclient.Client(session)
            cpc = client.cpcs.resource_object(inventory['cpc'])
            partition = cpc.partitions.create(
                {
                    'name': 'bench-zhmcclient-wait',
                    'ifl-processors': 1,
                    'initial-memory': 512,
                    'maximum-memory': 512,
                }
            )
            before = len(served.sim.requests())
            started = time.time()
            partition.start(wait_for_completion=True)
            returned = time.time()
            records = served.sim.requests()[before:]
        finally:
            session.logoff()
    timing = _job_timing(records, served.sim.settings, returned)
    return {
        'profile': profile,
        'job_seconds': seconds,
        'overhead_s': timing['overhead_s'],
        'rpc_s': round(returned - started, 3),
        'job_checks': sum(j['checks'] for j in timing['jobs']),
        'job_found_after_s': timing['jobs'][0]['found_after_s'] if timing['jobs'] else None,
        'requests': [f'{r.method} {r.uri} -> {r.status}' for r in records],
        'rejected': hmc_mod.describe(hmc_mod.rejected(records)),
    }


# --- Scenario 4: the gRPC hop -------------------------------------------------------------------


class _Context:
    """A stand-in grpc.ServicerContext for calling the servicer in-process."""

    def __init__(self) -> None:
        self.code = None
        self.details = ''

    def time_remaining(self):
        return None

    def is_active(self) -> bool:
        return True

    def add_callback(self, callback) -> bool:
        return False

    def invocation_metadata(self):
        return ()

    def set_trailing_metadata(self, metadata) -> None:
        pass

    def set_code(self, code) -> None:
        self.code = code

    def set_details(self, details) -> None:
        self.details = details


def _in_process(servicer, method: str, request):
    context = _Context()
    reply = getattr(servicer, method)(request, context)
    if context.code is not None:
        raise RuntimeError(f'{method}: {context.code} {context.details}')
    return reply


def _inproc_steps(running, host: str, nics: int):
    """Scenario 1's operations as the servicer's methods, without gRPC."""
    from dpm_api.v1 import dpm_host_pb2 as pb
    from dpm_frontend import translate

    servicer = running.backend.servicer
    instance = rig_mod.new_instance(host)
    vifs = rig_mod.network_info(running.inventory['vswitches'], nics)
    ids = {'host': host, 'instance_uuid': instance.uuid}
    flavor = translate.flavor(instance)
    state = {}

    def call(method, request):
        return lambda: _in_process(servicer, method, request)

    def connector():
        state['wwpns'] = list(
            _in_process(servicer, 'GetVolumeConnector', pb.GetVolumeConnectorRequest(**ids)).wwpns
        )

    def spawn():
        bdi = rig_mod.block_device_info(state['wwpns'])
        request = pb.SpawnRequest(
            **ids,
            flavor=flavor,
            nics=translate.nics(vifs),
            boot_volume=translate.boot_volume(bdi, state['wwpns']),
        )
        _in_process(servicer, 'Spawn', request)

    return [
        ('prepare', call('PrepareInstance', pb.PrepareInstanceRequest(**ids, flavor=flavor))),
        ('volume_connector', connector),
        ('spawn', spawn),
        ('get_info', call('GetInstanceInfo', pb.GetInstanceInfoRequest(**ids))),
        ('list_instance_uuids', call('ListInstances', pb.ListInstancesRequest(host=host))),
        ('resource_refresh', call('GetHostStatus', pb.GetHostStatusRequest(host=host))),
        ('power_off', call('PowerOff', pb.PowerOffRequest(**ids))),
        ('power_on', call('PowerOn', pb.PowerOnRequest(**ids))),
        ('reboot', call('Reboot', pb.RebootRequest(**ids))),
        # As the driver sends it for an instance it prepared: its WWPNs are stored.
        ('destroy', call('Destroy', pb.DestroyRequest(**ids, wwpns_known=True))),
    ]


def _timed(running, step, expire: bool = True) -> float:
    if expire:
        rig_mod.expire_caches(running.backend)
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _bare_grpcio(latency: float, repeats: int) -> dict:
    """The floor: a bare grpcio server whose handler sleeps ``latency``, no project code."""
    import grpc
    from grpc_health.v1 import health_pb2
    from grpc_health.v1 import health_pb2_grpc

    class Sleepy(health_pb2_grpc.HealthServicer):
        def Check(self, request, context):
            time.sleep(latency)
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    server = grpc.server(futures.ThreadPoolExecutor(4))
    servicer = Sleepy()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port('127.0.0.1:0')
    server.start()
    slot: dict[str, list] = {'grpc': [], 'in_process': []}
    channel = grpc.insecure_channel(f'127.0.0.1:{port}')
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        stub.Check(request, timeout=30)
        for _ in range(repeats):
            for path, call in (
                ('grpc', lambda: stub.Check(request, timeout=30)),
                ('in_process', lambda: servicer.Check(request, None)),
            ):
                started = time.perf_counter()
                call()
                slot[path].append(time.perf_counter() - started)
    finally:
        channel.close()
        server.stop(0).wait()
    return slot


def grpc_hop(
    profile: str = '2.15.0',
    latency: float = HMC_LATENCY,
    job_seconds: float = 0.05,
    repeats: int = 5,
) -> dict:
    """Each operation through the driver over gRPC vs the servicer called in-process."""
    host = 'hop'
    times: dict[str, dict[str, list]] = {}
    settings = {'start_seconds': job_seconds, 'stop_seconds': job_seconds, 'latency': latency}
    inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
    with (
        hmc_mod.simulator(profile, **settings) as served,
        rig_mod.rig(served, inventory, [HostDef(host)], {'hmc': FAST_JOBS}) as running,
    ):
        driver = running.drivers[host]
        for repeat in range(repeats):
            _, over_grpc = _lifecycle_steps(running, driver, host, 1)
            over_grpc = [s for s in over_grpc if s[0] != 'power_on_from_paused']
            in_process = _inproc_steps(running, host, 1)
            for (name, via_grpc), (_, direct) in zip(over_grpc, in_process, strict=True):
                slot = times.setdefault(name, {'grpc': [], 'in_process': []})
                order = [('grpc', via_grpc), ('in_process', direct)]
                for path, step in order if repeat % 2 == 0 else reversed(order):
                    slot[path].append(_timed(running, step))
        # A cheap call, many times, interleaved: with the backend's snapshot
        # expired (one HMC request), and as Nova mostly meets it (answered
        # from the snapshot when the backend has one).
        instance = rig_mod.new_instance(host)
        rig_mod.boot(driver, instance, inventory['vswitches'], 1)
        from dpm_api.v1 import dpm_host_pb2 as pb

        request = pb.GetInstanceInfoRequest(host=host, instance_uuid=instance.uuid)
        servicer = running.backend.servicer
        cheap = {}
        for label, expire in (('get_info_one_request', True), ('get_info_from_snapshot', False)):
            slot = cheap[label] = {'grpc': [], 'in_process': []}
            for _ in range(repeats * 6):
                slot['grpc'].append(_timed(running, lambda: driver.get_info(instance), expire))
                slot['in_process'].append(
                    _timed(
                        running,
                        lambda: _in_process(servicer, 'GetInstanceInfo', request),
                        expire,
                    )
                )
        driver.destroy(None, instance, None)
        rejected = len(hmc_mod.rejected(served.sim.requests()))
    cheap['bare_grpcio'] = _bare_grpcio(latency, repeats * 6)
    result = {
        'profile': profile,
        'latency_ms': latency * 1000,
        'job_ms': job_seconds * 1000,
        'rejected': rejected,
        'operations': {},
    }
    for name, slot in {**times, **cheap}.items():
        grpc_ms = _median(slot['grpc']) * 1000
        direct_ms = _median(slot['in_process']) * 1000
        result['operations'][name] = {
            'grpc_ms': round(grpc_ms, 2),
            'in_process_ms': round(direct_ms, 2),
            'added_ms': round(grpc_ms - direct_ms, 2),
            'ratio': round(grpc_ms / direct_ms, 4) if direct_ms else None,
        }
    return result


# --- Scenario 5: many hosts -----------------------------------------------------------------------


class _Prober:
    """The watcher process (bench.probe) and the latencies it measured."""

    def __init__(self, address: str, host: str, instance_uuid: str, workdir) -> None:
        import subprocess
        import sys

        self._output = workdir / 'probe.json'
        self._process = subprocess.Popen(
            [sys.executable, '-m', 'bench.probe', address, host, instance_uuid, str(self._output)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._process.stdout.readline().strip() != 'ready':
            self._process.kill()
            self._process.wait(timeout=10)
            raise RuntimeError('the probe process did not start')
        self.rows: list = []
        self.errors: list = []

    def finish(self) -> None:
        import json

        self._process.stdin.close()
        self._process.wait(timeout=60)
        self._process.stdout.close()
        measured = json.loads(self._output.read_text())
        self.rows, self.errors = measured['rows'], measured['errors']

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def latencies(self, kind: str, start: float, end: float) -> list[float]:
        return [took for k, started, took in self.rows if k == kind and start <= started < end]


def _storm(running, vswitches, hosts: list[str], per_host: int, nics: int):
    jobs = [(h, rig_mod.new_instance(h)) for h in hosts for _ in range(per_host)]
    started = time.perf_counter()
    with futures.ThreadPoolExecutor(len(jobs)) as pool:
        booted = list(
            pool.map(
                lambda job: (
                    job[1],
                    rig_mod.boot(
                        running.drivers[job[0]], job[1], vswitches, nics, seed=hash(job[1].uuid)
                    ),
                ),
                jobs,
            )
        )
    elapsed = time.perf_counter() - started
    return elapsed, booted


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (this one without ``pid``)."""
    import os

    if pid is None:
        times = os.times()
        return times.user + times.system
    with open(f'/proc/{pid}/stat', encoding='ascii') as stream:
        fields = stream.read().rpartition(')')[2].split()
    # utime and stime are fields 14 and 15 of stat(5); 'fields' starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _destroy_all(running, booted) -> None:
    with futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: running.drivers[item[0].host].destroy(None, item[0], item[1]), booted
            )
        )


def _ms(values) -> dict:
    return {
        'p50_ms': round(_median(values) * 1000, 2),
        'p99_ms': round(_percentile(values, 0.99) * 1000, 2),
        'max_ms': round(max(values) * 1000, 2),
        'samples': len(values),
    }


def many_hosts(
    profile: str = '2.15.0',
    hosts: int = 8,
    per_host: int = 8,
    latency: float = HMC_LATENCY,
    job_seconds: float = 0.05,
    repeats: int = 3,
) -> dict:
    """8 hosts x 8 concurrent boots through one backend; HMC, backend and probe in own processes."""
    defs = [HostDef(f'storm{i}') for i in range(hosts)]
    names = [h.name for h in defs]
    options = {
        'hmc': {'pool_size': 8},
        'backend': {'max_concurrent_operations': hosts * per_host + 16},
    }
    settings = {'start_seconds': job_seconds, 'stop_seconds': job_seconds, 'latency': latency}
    inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
    vswitches = inventory['vswitches']
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-probe-'))
    prober = None
    try:
        with hmc_mod.simulator_process(profile, **settings) as sim:
            with rig_mod.served(sim, inventory, defs, options) as running:
                # The watched instance, read by a process of its own.
                watched = rig_mod.new_instance(names[0])
                watched_vifs = rig_mod.boot(running.drivers[names[0]], watched, vswitches, 1)
                prober = _Prober(running.address, names[0], watched.uuid, workdir)
                idle_start = time.monotonic()
                time.sleep(IDLE_SECONDS)
                idle_end = time.monotonic()
                singles, storms, windows = [], [], []
                pids = {'hmc_sim': sim.process.pid, 'backend': running.process.pid}
                cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                cpu_before['drivers'] = _cpu_seconds()
                for _ in range(repeats):
                    single, booted = _storm(running, vswitches, names[1:2], per_host, 1)
                    _destroy_all(running, booted)
                    singles.append(single)
                    start = time.monotonic()
                    storm, booted = _storm(running, vswitches, names, per_host, 1)
                    windows.append((start, time.monotonic()))
                    storms.append(storm)
                    _destroy_all(running, booted)
                cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                cpu['drivers'] = _cpu_seconds()
                prober.finish()
                running.drivers[names[0]].destroy(None, watched, watched_vifs)
            records = sim.requests()
            sessions = sim.session_counts()['userids'].get(hmc_mod.USERID, {})
    finally:
        if prober is not None:
            prober.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    idle_info = prober.latencies('get_info', idle_start, idle_end)
    idle_health = prober.latencies('health', idle_start, idle_end)
    storm_info = [x for w in windows for x in prober.latencies('get_info', *w)]
    storm_health = [x for w in windows for x in prober.latencies('health', *w)]
    single, storm = _median(singles), _median(storms)
    report = running.report
    return {
        'profile': profile,
        'latency_ms': latency * 1000,
        'job_ms': job_seconds * 1000,
        'hosts': hosts,
        'boots_per_host': per_host,
        'repeats': repeats,
        'single_host_s': round(single, 3),
        'all_hosts_s': round(storm, 3),
        'ratio_all_vs_single': round(storm / single, 2),
        'pool_size': report.get('pool_size'),
        'sessions_opened': report.get('sessions_opened'),
        'logons': sessions.get('logons'),
        'logoffs': sessions.get('logoffs'),
        'hmc_requests': len(records),
        'seam_requests': report.get('seam_requests'),
        'rejected': hmc_mod.describe(hmc_mod.rejected(records))[:20],
        'rejected_count': len(hmc_mod.rejected(records)),
        # Reads of the watched instance (which always exists) that failed.
        'probe_errors': [f'{kind}: {error}' for kind, _, error in prober.errors][:20],
        'probe_error_count': len(prober.errors),
        'get_info': {'idle': _ms(idle_info), 'storm': _ms(storm_info)},
        'health': {'idle': _ms(idle_health), 'storm': _ms(storm_health)},
        # CPU seconds each process used over the boots (single and all hosts):
        # the simulator shares this machine's cores, where an HMC would not.
        'cpu_s': {name: round(cpu[name] - cpu_before[name], 1) for name in cpu},
        'boots_s': round(sum(singles) + sum(storms), 1),
    }
