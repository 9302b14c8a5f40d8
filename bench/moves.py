"""Moving servers: resize and cold migration, driven as nova-compute drives the driver.

Nova's resize and cold migration call the driver in this order: the source's
``migrate_disk_and_power_off``; on the destination ``get_volume_connector``
(the instance in task_state RESIZE_FINISH with the new flavor: the driver
creates the partition there) and ``finish_migration``; then the source's
``confirm_migration``, or, on a revert, the destination's ``destroy`` and the
source's ``finish_revert_migration`` (after the source's connector, stored
since the boot: no request). Each flow boots an instance on the source, moves
it, reverts, moves it again and confirms; every step is checked against the
partitions the HMC holds afterwards.

The moves, where a profile has their CPCs: a resize between two hosts on the
z13 (vHBAs; HMC 2.14.1, 2.15.0) and between two on the z14 (storage groups;
2.15.0, 2.16.0), and a cold migration from a z13 host to a z14 host (2.14.1,
2.15.0). HMC requests are counted per step with jobs that end at once; the
full run also times each step with HMC_LATENCY per request and Start, Stop and
discovery jobs of JOB_SECONDS, at the backend's default job polling.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

from bench import hmc as hmc_mod
from bench import rig as rig_mod
from bench.rig import FAST_JOBS
from bench.rig import HostDef
from bench.scenarios import BOOT_VOLUME_GIB
from bench.scenarios import HMC_LATENCY
from bench.scenarios import SG_PORTS
from bench.scenarios import _job_timing
from bench.scenarios import _storage_groups_left
from bench.scenarios import _summary

SOURCE = 'source'
DESTINATION = 'destination'
# The steps in Nova's order, each with the host that runs it (and the key of its end in a
# result).
STEPS = {
    'migrate_disk_and_power_off': SOURCE,
    'volume_connector': DESTINATION,
    'finish_migration': DESTINATION,
    'confirm_migration': SOURCE,
    'revert_destroy': DESTINATION,
    'finish_revert_migration': SOURCE,
}
FORWARD = ('migrate_disk_and_power_off', 'volume_connector', 'finish_migration')
PATHS = {
    'confirm': (*FORWARD, 'confirm_migration'),
    'revert': (*FORWARD, 'revert_destroy', 'finish_revert_migration'),
}
OLD_FLAVOR = (1, 512)  # vcpus, memory_mb
NEW_FLAVOR = (2, 1024)  # a resize's; a cold migration keeps OLD_FLAVOR
NICS = 1
JOB_SECONDS = 1.0  # Start, Stop and discovery jobs of the timed run


@dataclasses.dataclass(frozen=True)
class Move:
    """A move between a host on ``source`` and one on ``destination`` (bench.hmc inventories)."""

    kind: str  # Nova's migration_type: 'resize' or 'migration' (cold)
    source: dict
    destination: dict

    @property
    def hosts(self) -> list[HostDef]:
        return [_host(SOURCE, self.source), _host(DESTINATION, self.destination)]

    @property
    def flavors(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return OLD_FLAVOR, (NEW_FLAVOR if self.kind == 'resize' else OLD_FLAVOR)


def _path(inventory: dict) -> str:
    return 'storage_groups' if inventory['storage_management'] else 'vhba'


def _host(name: str, inventory: dict) -> HostDef:
    """A host on the CPC of ``inventory``: one vHBA, or a storage group on two adapter ports."""
    vhbas = SG_PORTS if inventory['storage_management'] else 1
    return HostDef(name, vhbas=vhbas, inventory=inventory)


def plan(profile: str) -> dict[str, Move]:
    """The moves that apply to ``profile``, by name."""
    definition = hmc_mod.definition(profile)
    names = hmc_mod.cpc_names(definition)
    z13 = z14 = None
    if hmc_mod.VHBA_CPC in names:
        z13 = hmc_mod.inventory(definition, hmc_mod.VHBA_CPC)
    if hmc_mod.STORAGE_GROUP_CPC in names:
        z14 = hmc_mod.inventory(definition, hmc_mod.STORAGE_GROUP_CPC)
    moves = {}
    if z13 is not None:
        moves['resize_vhba'] = Move('resize', z13, z13)
    if z14 is not None and profile in hmc_mod.SG_PROFILES:
        moves['resize_storage_groups'] = Move('resize', z14, z14)
    if z13 is not None and z14 is not None:
        moves['cold_migration_vhba_to_storage_groups'] = Move('migration', z13, z14)
    return moves


class _Flow:
    """One instance booted on the source, moved and reverted, moved again and confirmed."""

    def __init__(self, running, move: Move) -> None:
        _, objects, _, _, _, _ = rig_mod.nova()
        self.served = running.served
        self.drivers = running.drivers
        self.move = move
        self.context = rig_mod.nova_context()
        old, new = move.flavors
        self.old_flavor = objects.Flavor(vcpus=old[0], memory_mb=old[1])
        self.new_flavor = objects.Flavor(vcpus=new[0], memory_mb=new[1])
        self.instance = rig_mod.new_instance(SOURCE, *old)
        self.migration = objects.Migration(
            id=1,
            instance_uuid=self.instance.uuid,
            source_compute=SOURCE,
            dest_compute=DESTINATION,
            migration_type=move.kind,
            status='migrating',
        )
        vifs = rig_mod.network_info(move.source['vswitches'], NICS)
        # Neutron binds the same ports on the destination (its CPC's virtual switch).
        self.vifs = {
            SOURCE: vifs,
            DESTINATION: rig_mod.bound_to(vifs, move.destination['vswitches']),
        }
        self.volume_id = str(uuid.uuid4())
        self.wwpns: dict[str, list[str]] = {}
        self.faults: list[str] = []

    def run(self, measure) -> None:
        """Every step in Nova's order; ``measure(name, step)`` runs each measured one."""
        self._boot()
        for name in FORWARD:
            measure(name, getattr(self, name))
        self._expect(DESTINATION, 'active', self.new_flavor, 'finish_migration')
        measure('revert_destroy', self.revert_destroy)
        self._expect(DESTINATION, None, None, 'revert_destroy')
        measure('finish_revert_migration', self.finish_revert_migration)
        self._expect(SOURCE, 'active', self.old_flavor, 'finish_revert_migration')
        for name in FORWARD:
            measure(name, getattr(self, name))
        measure('confirm_migration', self.confirm_migration)
        self._expect(SOURCE, None, None, 'confirm_migration')
        self._expect(DESTINATION, 'active', self.new_flavor, 'confirm_migration')
        self.drivers[DESTINATION].destroy(self.context, self.instance, self.vifs[DESTINATION])

    def _bdi(self, host: str) -> dict:
        """The boot volume, connected to ``host``'s initiators (one volume, both ends)."""
        return rig_mod.block_device_info(
            self.wwpns[host], volume_id=self.volume_id, volume_size=BOOT_VOLUME_GIB
        )

    def _boot(self) -> None:
        driver = self.drivers[SOURCE]
        driver.prepare_for_spawn(self.instance)
        self.wwpns[SOURCE] = driver.get_volume_connector(self.instance)['wwpns']
        driver.spawn(
            self.context, self.instance, None, [], None, {}, self.vifs[SOURCE], self._bdi(SOURCE)
        )
        self.instance.vm_state = 'active'

    def migrate_disk_and_power_off(self) -> None:
        from nova.compute import task_states

        _, objects, _, _, _, _ = rig_mod.nova()
        instance = self.instance
        instance.task_state = task_states.RESIZE_MIGRATING
        # The destination's claim (resize_claim) recorded the move.
        instance.migration_context = objects.MigrationContext(
            migration_id=self.migration.id, instance_uuid=instance.uuid
        )
        flavor, address = self.new_flavor, '192.0.2.2'  # the destination's (unused)
        with rig_mod.migration_lookup(self.migration):
            self.drivers[SOURCE].migrate_disk_and_power_off(
                self.context, instance, address, flavor, self.vifs[SOURCE], self._bdi(SOURCE)
            )
        # _resize_instance: the instance is the destination's from now on.
        instance.host, instance.task_state = DESTINATION, task_states.RESIZE_MIGRATED

    def volume_connector(self) -> None:
        """_finish_resize: the new flavor set, RESIZE_FINISH, then the attachments updated."""
        from nova.compute import task_states

        instance = self.instance
        instance.old_flavor, instance.new_flavor = self.old_flavor, self.new_flavor
        instance.flavor = self.new_flavor
        instance.task_state = task_states.RESIZE_FINISH
        self.wwpns[DESTINATION] = self.drivers[DESTINATION].get_volume_connector(instance)['wwpns']

    def finish_migration(self) -> None:
        from nova.compute import vm_states

        self.drivers[DESTINATION].finish_migration(
            self.context,
            self.migration,
            self.instance,
            '',
            self.vifs[DESTINATION],
            None,
            self.move.kind == 'resize',
            {},
            self._bdi(DESTINATION),
            True,
        )
        self.instance.vm_state, self.instance.task_state = vm_states.RESIZED, None

    def confirm_migration(self) -> None:
        self.drivers[SOURCE].confirm_migration(
            self.context, self.migration, self.instance, self.vifs[SOURCE]
        )
        self.instance.vm_state = 'active'

    def revert_destroy(self) -> None:
        """revert_resize on the destination (the instance still its own)."""
        from nova.compute import task_states

        self.instance.task_state = task_states.RESIZE_REVERTING
        self.drivers[DESTINATION].destroy(
            self.context, self.instance, self.vifs[DESTINATION], self._bdi(DESTINATION)
        )

    def finish_revert_migration(self) -> None:
        """finish_revert_resize: back to the source and the old flavor, attachments updated."""
        instance = self.instance
        instance.host, instance.flavor = SOURCE, self.old_flavor
        driver = self.drivers[SOURCE]
        self.wwpns[SOURCE] = driver.get_volume_connector(instance)['wwpns']
        driver.finish_revert_migration(
            self.context, instance, self.vifs[SOURCE], self.migration, self._bdi(SOURCE), True
        )
        instance.vm_state, instance.task_state = 'active', None

    def _expect(self, host: str, status: str | None, flavor, after: str) -> None:
        """The partition of ``host`` after a step: gone (None), or in ``status`` with the flavor."""
        from dpm_backend import naming

        properties = hmc_mod.partition_properties(
            self.served, naming.partition_name(host, self.instance.uuid)
        )
        if status is None:
            seen = None if properties is None else properties['status']
            wanted = None
        else:
            seen = properties and (
                properties['status'],
                properties['ifl-processors'],
                properties['initial-memory'],
            )
            wanted = (status, flavor.vcpus, flavor.memory_mb)
        if seen != wanted:
            self.faults.append(f'after {after}: the {host} partition is {seen}, not {wanted}')


def _end(host: HostDef, inventory: dict) -> dict:
    end = {'host': host.name, 'cpc': inventory['name'], 'path': _path(inventory)}
    if end['path'] == 'vhba':
        end['vhbas'] = host.vhbas
    return end


def _describe(move: Move) -> dict:
    old, new = move.flavors
    source, destination = move.hosts
    return {
        'kind': move.kind,
        SOURCE: _end(source, move.source),
        DESTINATION: _end(destination, move.destination),
        'nics': NICS,
        'flavors': {'old': list(old), 'new': list(new)},
    }


def _warm(running, move: Move) -> None:
    """A boot on each host with a NIC on every virtual switch: the backend knows them."""
    for host, inventory in ((SOURCE, move.source), (DESTINATION, move.destination)):
        driver = running.drivers[host]
        driver.get_available_resource(host)
        instance = rig_mod.new_instance(host)
        vswitches = inventory['vswitches']
        vifs = rig_mod.boot(
            driver, instance, vswitches, len(vswitches), volume_size=BOOT_VOLUME_GIB
        )
        driver.destroy(None, instance, vifs)


def _partitions_left(served) -> list[str]:
    from dpm_backend import naming

    prefixes = tuple(naming.partition_name_prefix(host) for host in (SOURCE, DESTINATION))
    sim = served.sim
    with sim.lock:
        return [
            p.properties['name']
            for cpc in sim.hmc.cpcs.list()
            for p in cpc.partitions.list()
            if p.properties['name'].startswith(prefixes)
        ]


def move_requests(served, move: Move, repeats: int = 3) -> dict:
    """HMC requests per step of ``move`` (jobs end at once; snapshots expired before each).

    Each flow measures the forward steps twice (the revert's move and the
    confirmed one): their medians.
    """
    samples: dict[str, list] = {name: [] for name in STEPS}
    faults: list[str] = []
    with rig_mod.rig(served, move.source, move.hosts, {'hmc': FAST_JOBS}) as running:
        _warm(running, move)
        for _ in range(repeats):
            flow = _Flow(running, move)
            flow.run(lambda name, step: samples[name].append(running.measure(step)))
            faults += flow.faults
    steps = {name: _summary(measured) for name, measured in samples.items()}
    return {
        **_describe(move),
        'repeats': repeats,
        'steps': steps,
        'paths': {
            path: {
                'work': sum(steps[name]['work'] for name in names),
                'polling': sum(steps[name]['polling'] for name in names),
            }
            for path, names in PATHS.items()
        },
        'faults': faults,
        'partitions_left': _partitions_left(served),
        'groups_left': _storage_groups_left(served),
    }


def move_time(
    served, move: Move, job_seconds: float = JOB_SECONDS, latency: float = HMC_LATENCY
) -> dict:
    """Wall seconds per step of one flow, and the wait beyond the HMC jobs each step waited for.

    The simulator answers each request after ``latency``; its Start, Stop and
    discovery jobs take ``job_seconds``; a fresh backend polls jobs at its
    defaults, learning each kind's length as it goes. The revert path is
    timed on the first move of the flow (the backend has seen a Start job, at
    the boot, and no Stop job yet), the confirm path on the second.
    """
    sim = served.sim
    sim.reset()
    settings = sim.configure(
        start_seconds=job_seconds,
        stop_seconds=job_seconds,
        discover_seconds=job_seconds,
        latency=latency,
    )
    timed: list[tuple[str, dict]] = []
    try:
        with rig_mod.rig(served, move.source, move.hosts) as running:
            flow = _Flow(running, move)

            def measure(name: str, step) -> None:
                rig_mod.expire_caches(running.backend)
                before = len(sim.requests())
                started = time.time()
                step()
                returned = time.time()
                records = sim.requests()[before:]
                timing = _job_timing(records, settings, returned)
                timed.append(
                    (
                        name,
                        {
                            'wall_s': round(returned - started, 3),
                            'jobs': [j['operation'] for j in timing['jobs']],
                            'jobs_s': round(sum(j['seconds'] for j in timing['jobs']), 3),
                            'beyond_jobs_s': timing['overhead_s'],
                            'requests': len(records),
                            'rejected': len(hmc_mod.rejected(records)),
                        },
                    )
                )

            flow.run(measure)
    finally:
        sim.configure(start_seconds=0, stop_seconds=0, discover_seconds=0, latency=0)
    # The revert path: the first move and the revert; the confirm path: the second move.
    first = dict(timed[: len(PATHS['revert'])])
    second = dict(timed[len(PATHS['revert']) :])
    paths = {}
    for path, names, source in (
        ('revert', PATHS['revert'], first),
        ('confirm', PATHS['confirm'], second),
    ):
        steps = {name: source[name] for name in names}
        paths[path] = {
            'steps': steps,
            'wall_s': round(sum(s['wall_s'] for s in steps.values()), 3),
            'jobs_s': round(sum(s['jobs_s'] for s in steps.values()), 3),
            'requests': sum(s['requests'] for s in steps.values()),
        }
    return {
        'latency_ms': latency * 1000,
        'job_seconds': job_seconds,
        'paths': paths,
        'faults': flow.faults,
        'rejected': sum(s['rejected'] for _, s in timed),
    }


def moves(served, profile: str, quick: bool) -> dict:
    """Every move that applies to ``profile``: requests per step; timed too unless ``quick``."""
    results = {}
    for name, move in plan(profile).items():
        served.sim.reset()
        results[name] = move_requests(served, move, repeats=1 if quick else 3)
        if not quick:
            results[name]['timing'] = move_time(served, move)
    served.sim.reset()
    return results
