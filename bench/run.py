"""Run the scenarios on each HMC profile and judge them against the targets."""

from __future__ import annotations

from bench import events
from bench import ha
from bench import hmc as hmc_mod
from bench import keys
from bench import memory
from bench import moves
from bench import scenarios
from bench import soak
from dpm_backend.config import DEFAULT_CPC_CACHE_TTL

HANDFUL = 5  # HMC requests (besides polling) a destroy or power operation may cost
WAIT_OVERHEAD_S = 0.5  # seconds an RPC may take beyond the end of the HMC jobs it waited for
FIRST_SPAWN_FIELDS = ('nics', 'vswitches', 'nic_gets', 'vswitch_gets', 'vswitch_lists')
SMALL = ('destroy', 'power_off', 'power_on', 'power_on_from_paused', 'reboot')
# Seconds between the runs of Nova's resource tracker (update_resources_interval 0: 60 s).
RESOURCE_TRACKER_INTERVAL = 60
# Seconds a PowerOn/PowerOff may take beyond its HMC job while job-completion
# notifications wake the wait.
NOTIFIED_WAIT_S = 0.1

# The storage-group path: HMC requests besides polling per operation (jobs end
# at once, snapshots expired, the virtual switch known).
# - prepare: the partition looked up and created (2), the group looked up and
#   created (2), one read of its WWPNs (1);
# - volume_connector: the partition looked up (and read below HMC 2.16), the
#   group looked up and read;
# - spawn: 5 + n as on the vHBA path (partition lookup and read, a POST per NIC,
#   the boot properties, start, the final read) with no vHBAs, plus the group's
#   steps, SG_SPAWN_STEPS: the group looked up and its WWPNs read (2), the
#   volumes listed, the boot volume defined and read (3), Validate LUN Path and
#   Fulfill (2), one discovery (every volume fulfilled now is confirmed by one)
#   and the group and volume read after it (3), Attach (1);
# - attach_volume: the partition and the group looked up (2), the group's WWPNs
#   read (the group and its virtual storage resources, 3), the volumes listed
#   with their properties (2), the volume defined and read (2), Validate LUN
#   Path and Fulfill (2: every volume is pinned to Cinder's target and LUN, as
#   DPM alone matches by size), one discovery with its reads (3);
#   detach_volume: the group looked up, its volumes listed (names), the
#   volume deleted;
# - power off/on: a handful, as on the vHBA path; destroy: that handful plus
#   the group looked up once, detached and deleted.
# Exact today: a request more anywhere is a change to look at.
SG_SPAWN_STEPS = 11
SG_BUDGETS = {
    'prepare': 5,
    'volume_connector': 4,
    'attach_volume': 14,
    'detach_volume': 3,
    'power_off': HANDFUL,
    'power_on': HANDFUL,
    'destroy': HANDFUL + 3,
}
# HMC jobs per operation (Start, Stop, FCP discovery), and discoveries among them.
SG_JOBS = {
    'prepare': 0,
    'volume_connector': 0,
    'spawn': 2,
    'attach_volume': 1,
    'detach_volume': 0,
    'power_off': 1,
    'power_on': 1,
    'destroy': 1,
}
SG_DISCOVERIES = {'spawn': 1, 'attach_volume': 1}


def sg_budget(op: str, nics: int) -> int:
    """HMC requests besides polling the storage-group path may spend on ``op``."""
    return 5 + nics + SG_SPAWN_STEPS if op == 'spawn' else SG_BUDGETS[op]


# Moves (bench/moves.py): each step is an operation budgeted above, on the
# path of the host that runs it (m: its vHBAs; n: the NICs):
# - migrate_disk_and_power_off: a power off;
# - volume_connector on the destination (RESIZE_FINISH) prepares, creating
#   the partition: on the vHBA path its lookup and creation, and a POST and a
#   GET per vHBA (2 + 2m); on the storage-group path SG_BUDGETS['prepare'];
# - finish_migration prepares again, finding the partition as a volume
#   connector does (2 + m: the lookup, the partition, each vHBA; or
#   SG_BUDGETS['volume_connector']), then spawns;
# - confirm_migration (source) and the revert's destroy (destination): a
#   destroy;
# - finish_revert_migration: a spawn (the partition and its NICs exist).
# A resize or migration, confirmed or reverted, is judged against the sum of
# its steps' budgets.


def move_budget(step: str, end: dict, nics: int) -> int:
    """HMC requests besides polling a move's ``step`` may spend on the host ``end``."""
    if end['path'] == 'storage_groups':
        spawn = sg_budget('spawn', nics)
        prepare, found, destroy = (
            SG_BUDGETS[op] for op in ('prepare', 'volume_connector', 'destroy')
        )
    else:
        vhbas = end['vhbas']
        spawn = 5 + nics + vhbas
        prepare, found, destroy = 2 + 2 * vhbas, 2 + vhbas, HANDFUL
    return {
        'migrate_disk_and_power_off': HANDFUL,
        'volume_connector': prepare,
        'finish_migration': found + spawn,
        'confirm_migration': destroy,
        'revert_destroy': destroy,
        'finish_revert_migration': spawn,
    }[step]


def move_budgets(data: dict) -> dict[str, int]:
    """The budget of each step of a measured move."""
    return {step: move_budget(step, data[moves.STEPS[step]], data['nics']) for step in moves.STEPS}


def profile_run(profile: str, quick: bool) -> dict:
    """Every scenario that runs on one simulator of ``profile``; rejected requests counted.

    ``lifecycle`` lists the storage paths whose lifecycle ran: ``vhba`` on a
    z13 (2.14.1, 2.15.0), ``storage_groups`` on the z14 (2.15.0, 2.16.0).
    """
    definition = hmc_mod.definition(profile)
    cpc_name = hmc_mod.serving_cpc(profile)
    inventory = hmc_mod.inventory(definition, cpc_name)
    vhba = not inventory['storage_management']
    sg = profile in hmc_mod.SG_PROFILES
    lifecycle = [path for path, ran in (('vhba', vhba), ('storage_groups', sg)) if ran]
    result: dict = {'cpc': cpc_name, 'lifecycle': lifecycle}
    # Every job ends at once: the counts do not depend on the machine.
    jobs = {'start_seconds': 0, 'stop_seconds': 0, 'discover_seconds': 0}
    with hmc_mod.simulator(profile, **jobs) as served:
        result['hmc_version'] = served.sim.definition.hmc_version
        result['api_version'] = served.sim.definition.api_text
        if vhba:
            result['requests_per_operation'] = scenarios.requests_per_operation(
                served, inventory, repeats=1 if quick else 3
            )
            served.sim.reset()
            result['spawn_cold'] = scenarios.spawn_cold(served, inventory)
        else:
            result['skipped'] = (
                f'no vHBA lifecycle: HMC {profile} manages no CPC without DPM storage '
                f'management ({", ".join(hmc_mod.cpc_names(definition))}); its lifecycle runs '
                'on the storage-group path'
            )
        if sg:
            served.sim.reset()
            sg_inventory = hmc_mod.inventory(definition, hmc_mod.STORAGE_GROUP_CPC)
            result['storage_groups'] = {
                'cpc': hmc_mod.STORAGE_GROUP_CPC,
                **scenarios.sg_requests_per_operation(
                    served, sg_inventory, repeats=1 if quick else 3
                ),
            }
            if not quick:
                result['storage_groups']['discovery'] = scenarios.discovery_time(
                    served, sg_inventory
                )
            served.sim.reset()
        result['moves'] = moves.moves(served, profile, quick)
        result['power_sync'] = scenarios.power_sync(
            served,
            inventory,
            sizes=(0, 20) if quick else (0, 20, 80),
            repeats=1 if quick else 3,
        )
        if vhba and not quick:
            result['reads_during_destroys'] = scenarios.reads_during_destroys(served, inventory)
            result['wait_overhead'] = {
                f'{latency:g}': scenarios.wait_overhead(served, inventory, latency)
                for latency in (0.0, scenarios.HMC_LATENCY)
            }
        records = served.sim.requests()
    refused = hmc_mod.rejected(records)
    result['hmc_requests'] = len(records)
    result['rejected'] = {'count': len(refused), 'requests': hmc_mod.describe(refused)[:20]}
    result['events'] = events.events(profile, quick)
    return result


def run(quick: bool = False) -> dict:
    results: dict = {'quick': quick, 'profiles': {}}
    for profile in hmc_mod.PROFILES:
        results['profiles'][profile] = profile_run(profile, quick)
    if not quick:
        results['zhmcclient_wait'] = scenarios.zhmcclient_wait()
        results['grpc_hop'] = scenarios.grpc_hop()
        results['many_hosts'] = scenarios.many_hosts()
        results['memory'] = memory.backend_rss()
        results['soak'] = soak.soak()
        results['ha'] = ha.ha()
    results['targets'] = targets(results)
    return results


def _target(met: bool, measured, goal: str) -> dict:
    return {'met': bool(met), 'measured': measured, 'target': goal}


def below_2_16(profile: str) -> bool:
    return tuple(int(p) for p in profile.split('.')[:2]) < (2, 16)


def _lifecycle_targets(profile: str, data: dict) -> dict:
    judged = {}
    per_op = data['requests_per_operation']
    spawn = {}
    for combo, entry in per_op.items():
        nics, vhbas = entry['nics'], entry['vhbas']
        if (nics, vhbas) != keys.parse(combo):
            raise ValueError(f'{combo} holds nics={nics} vhbas={vhbas}')
        spawn[combo] = (entry['operations']['spawn']['work'], 5 + nics + vhbas)
    judged['spawn_requests'] = _target(
        all(work <= limit for work, limit in spawn.values()),
        {combo: work for combo, (work, _) in spawn.items()},
        '<= 5 + n + m besides polling',
    )
    worst = {op: max(e['operations'][op]['work'] for e in per_op.values()) for op in SMALL}
    judged['destroy_and_power_requests'] = _target(
        all(work <= HANDFUL for work in worst.values()), worst, f'<= {HANDFUL} besides polling'
    )
    warm = {}
    for combo, entry in per_op.items():
        reads = scenarios.device_reads(entry['operations']['spawn']['by_class'])
        warm[combo] = reads['nic_gets'] + reads['vswitch_gets']
    cold = data['spawn_cold']
    judged['spawn_no_get_per_nic_or_vswitch'] = _target(
        not any(warm.values())
        and cold['nic_gets'] == 0
        and (
            (cold['vswitch_lists'] <= 1 and cold['vswitch_gets'] == 0)
            or (cold['vswitch_lists'] == 0 and cold['vswitch_gets'] <= cold['vswitches'])
        ),
        {
            'warm_nic_or_vswitch_gets': warm,
            'first_spawn': {
                k: cold[k]
                for k in ('nics', 'vswitches', 'nic_gets', 'vswitch_gets', 'vswitch_lists')
            },
        },
        'no NIC or vswitch GET; a backend reads a vswitch once: one list where it has '
        'the ports (2.16), else one GET per switch',
    )
    differing = {
        f'{combo} {op}': e['seam_differs']
        for combo, entry in per_op.items()
        for op, e in entry['operations'].items()
        if e['seam_differs']
    }
    judged['seam_equals_hmc'] = _target(
        not differing, differing or 0, 'every request at the session seam reached the HMC once'
    )
    race = data.get('reads_during_destroys')
    if race:
        judged['reads_during_destroys'] = _target(
            race['failed_reads'] == 0,
            {k: race[k] for k in ('reads', 'failed_reads', 'destroyed')},
            'no read of an existing instance fails while others of its host are destroyed',
        )
    overhead = data.get('wait_overhead')
    if overhead:
        worst_wait = {
            f'{latency} s {op}': m['max_s']
            for latency, entry in overhead.items()
            for op, m in entry['operations'].items()
        }
        judged['wait_overhead'] = _target(
            all(v is not None and v <= WAIT_OVERHEAD_S for v in worst_wait.values()),
            worst_wait,
            f'<= {WAIT_OVERHEAD_S} s after the last HMC job ended (every run, first included)',
        )
    return {f'{profile} {name}': t for name, t in judged.items()}


def sg_targets(profile: str, data: dict) -> dict:
    """The storage-group path: requests within budget, no group left, the discovery's cost."""
    judged = {}
    over, measured = {}, {}
    for key, entry in data['per_nics'].items():
        for op, counts in entry['operations'].items():
            budget = sg_budget(op, entry['nics'])
            measured[f'{key} {op}'] = counts['work']
            if counts['work'] > budget or counts['seam_differs'] or counts['rejected']:
                over[f'{key} {op}'] = (counts['work'], budget)
    judged['sg_requests'] = _target(
        not over,
        over or measured,
        f'within the storage-group budgets (spawn <= {5 + SG_SPAWN_STEPS} + n besides '
        'polling; bench/run.py SG_BUDGETS)',
    )
    judged['sg_no_group_left'] = _target(
        not data['groups_left'], data['groups_left'], 'destroy leaves no storage group'
    )
    discovery = data.get('discovery')
    if discovery:
        limit = discovery['discover_seconds'] + WAIT_OVERHEAD_S
        judged['sg_discovery_added'] = _target(
            discovery['spawn_added_s'] <= limit,
            {
                k: discovery[k]
                for k in (
                    'spawn_added_s',
                    'spawn_discovery_wait_s',
                    'attach_added_s',
                    'worst_found_after_s',
                )
            },
            f'a discovery of {discovery["discover_seconds"]:g} s adds <= {limit:g} s to a spawn',
        )
    return {f'{profile} {name}': t for name, t in judged.items()}


def move_targets(profile: str, name: str, data: dict) -> dict:
    """A move: within the sum of its steps' budgets, nothing left behind, the wait after jobs."""
    judged = {}
    budgets = move_budgets(data)
    steps = data['steps']
    measured, limits = {}, {}
    for path, names in moves.PATHS.items():
        measured[path] = data['paths'][path]['work']
        limits[path] = sum(budgets[step] for step in names)
    faulty = {
        step: {k: counts[k] for k in ('seam_differs', 'rejected')}
        for step, counts in steps.items()
        if counts['seam_differs'] or counts['rejected']
    }
    judged['move_requests'] = _target(
        not faulty and all(measured[path] <= limits[path] for path in measured),
        faulty or measured,
        "<= the sum of its steps' budgets besides polling (confirmed "
        f'{limits["confirm"]}, reverted {limits["revert"]}; bench/run.py move_budget), '
        'every request reached the HMC once, none refused',
    )
    left = {k: data[k] for k in ('faults', 'partitions_left', 'groups_left') if data[k]}
    judged['move_leaves_nothing'] = _target(
        not left,
        left or 0,
        "each step leaves the partitions it should (the source's gone after confirm, the "
        "destination's after revert); no partition or storage group left",
    )
    timing = data.get('timing')
    if timing:
        waits = {
            f'{path} {step}': s['beyond_jobs_s']
            for path, entry in timing['paths'].items()
            for step, s in entry['steps'].items()
            if s['jobs']
        }
        judged['move_wait_overhead'] = _target(
            all(v is not None and v <= WAIT_OVERHEAD_S for v in waits.values())
            and not timing['faults']
            and not timing['rejected'],
            waits,
            f'<= {WAIT_OVERHEAD_S} s after the last HMC job a step waited for ended '
            f'({timing["latency_ms"]:g} ms per request, jobs of {timing["job_seconds"]:g} s)',
        )
    return {f'{profile} {name} {key}': t for key, t in judged.items()}


def _sync_targets(profile: str, data: dict) -> dict:
    judged = {}
    sync = data['power_sync']
    one = sync['1_host']['sizes']
    judged['sync_independent_of_instances'] = _target(
        len({size['requests'] for size in one.values()}) == 1,
        {key: size['requests'] for key, size in one.items()},
        'same requests per cycle for any number of partitions',
    )
    if below_2_16(profile):
        steady = {
            f'{label} +{key}': size['requests']
            for label, entry in sync.items()
            for key, size in entry['sizes'].items()
        }
        judged['sync_one_request_per_cpc'] = _target(
            all(v <= 1 for v in steady.values()),
            steady,
            '<= 1 request per CPC per cycle of all hosts (CPC facts young)',
        )
        # Nova's resource tracker cycles every 60 s; CPC facts are read again
        # once per cpc_cache_ttl, in one of those cycles.
        cycles = DEFAULT_CPC_CACHE_TTL / RESOURCE_TRACKER_INTERVAL
        averaged = {
            f'{label} +{key}': round(
                (size['requests'] * (cycles - 1) + size['facts_expired']) / cycles, 2
            )
            for label, entry in sync.items()
            for key, size in entry['sizes'].items()
        }
        judged['sync_requests_per_cpc_over_cpc_cache_ttl'] = _target(
            all(v <= 1.2 for v in averaged.values()),
            averaged,
            f'<= 1.2 requests per CPC per 60 s cycle on average over cpc_cache_ttl '
            f'({DEFAULT_CPC_CACHE_TTL} s: one cycle in {cycles:.0f} also reads the CPC)',
        )
    judged['zero_rejected'] = _target(
        data['rejected']['count'] == 0,
        data['rejected']['count'],
        'no HMC request answered with status >= 400',
    )
    return {f'{profile} {name}': t for name, t in judged.items()}


def events_targets(profile: str, data: dict) -> dict:
    """HMC notifications: periodic reads free, every change streamed, job waits woken."""
    judged = {}
    cycles = {
        f'{label} +{size}': (cell['requests'], cell['aged'])
        for label, entry in data['power_sync']['groups'].items()
        for size, cell in entry['sizes'].items()
    }
    seam = sum(
        cell['seam'] + cell['rejected']
        for entry in data['power_sync']['groups'].values()
        for cell in entry['sizes'].values()
    )
    judged['events_sync_requests'] = _target(
        not seam and all(cycle == (0, 0) for cycle in cycles.values()),
        {key: f'{steady} / {aged}' for key, (steady, aged) in cycles.items()},
        '0 HMC requests per power-sync cycle while notifications are live, as they come and '
        'with snapshots and CPC facts aged past cpc_cache_ttl (steady / aged)',
    )
    streamed = {
        f'{latency} ms': {
            'changes': entry['changes'],
            'missed': len(entry['missed']),
            'driver_events': entry['driver']['events'],
            'driver_missed': len(entry['driver']['missed']),
            'backend_requests': entry['backend_requests'],
        }
        for latency, entry in data['latency'].items()
    }
    judged['events_every_change_streamed'] = _target(
        all(
            not e['missed'] and not e['driver_missed'] and not e['backend_requests']
            for e in streamed.values()
        ),
        streamed,
        'every status change made on the HMC reaches a WatchInstances client, and the Nova '
        "driver's lifecycle event follows each power state change; the backend sends no HMC "
        'request for them',
    )
    notified = data['power']['modes']['notifications']
    checks = {op: notified[op]['job_checks'] for op in events.POWER_OPERATIONS}
    judged['events_one_job_check'] = _target(
        all(c == 1 for runs in checks.values() for c in runs)
        and all(j == 1 for op in checks for j in notified[op]['jobs']),
        checks,
        '1 job status check per PowerOn/PowerOff: the job-completion notification wakes it',
    )
    if data['timed']:
        waits = {
            f'{mode} {op}': m['max_s']
            for mode, ops in data['power']['modes'].items()
            for op, m in ops.items()
        }
        judged['events_wait_after_job'] = _target(
            all(
                m['max_s'] is not None and m['max_s'] <= NOTIFIED_WAIT_S for m in notified.values()
            ),
            waits,
            f'<= {NOTIFIED_WAIT_S} s from the end of its HMC job to the return of a PowerOn '
            f'or PowerOff with notifications (every run; polling shown for comparison)',
        )
    judged['events_zero_rejected'] = _target(
        data['rejected']['count'] == 0,
        data['rejected']['count'],
        'no HMC request answered with status >= 400',
    )
    return {f'{profile} {name}': t for name, t in judged.items()}


def targets(results: dict) -> dict:
    judged = {}
    for profile, data in results['profiles'].items():
        if data.get('requests_per_operation'):
            judged.update(_lifecycle_targets(profile, data))
        if data.get('storage_groups'):
            judged.update(sg_targets(profile, data['storage_groups']))
        for name, move in data.get('moves', {}).items():
            judged.update(move_targets(profile, name, move))
        judged.update(_sync_targets(profile, data))
        if data.get('events'):
            judged.update(events_targets(profile, data['events']))
    hop = results.get('grpc_hop')
    if hop:
        spawn_hop = hop['operations']['spawn']
        judged['grpc_hop_spawn'] = _target(
            spawn_hop['ratio'] <= 1.03, spawn_hop['ratio'], '<= 1.03 (3 % added)'
        )
        ops = hop['operations']
        judged['grpc_hop_cheap_call'] = _target(
            ops['get_info_from_snapshot']['added_ms'] < 1.0,
            {
                k: ops[k]['added_ms']
                for k in ('get_info_from_snapshot', 'get_info_one_request', 'bare_grpcio')
            },
            '< 1 ms median added (judged on get_info from the snapshot)',
        )
    storm = results.get('many_hosts')
    if storm:
        for call in ('get_info', 'health'):
            idle, busy = storm[call]['idle']['p99_ms'], storm[call]['storm']['p99_ms']
            judged[f'storm_{call}_p99'] = _target(
                busy <= 3 * idle, round(busy / idle, 2), '<= 3x idle p99'
            )
        judged['storm_sessions'] = _target(
            storm['sessions_opened'] <= storm['pool_size'] and storm['logoffs'] == storm['logons'],
            {k: storm[k] for k in ('sessions_opened', 'pool_size', 'logons', 'logoffs')},
            '<= pool size, all logged off',
        )
        judged['storm_reads_never_fail'] = _target(
            storm['probe_error_count'] == 0,
            storm['probe_errors'] or 0,
            'every get_info and health check of the watcher answered',
        )
        judged['storm_zero_rejected'] = _target(
            storm['rejected_count'] == 0, storm['rejected_count'], 'no HMC request refused'
        )
    if results.get('soak'):
        judged.update(soak.targets(results['soak']))
    if results.get('ha'):
        judged.update(ha.targets(results['ha']))
    return judged
