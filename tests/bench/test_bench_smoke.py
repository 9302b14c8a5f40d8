"""`make bench` in its quick form: it runs, it counts, and the counts meet the budgets.

Benchmarks are not timed tests: nothing here asserts seconds (the wait
overhead beyond HMC jobs is judged by the full `make bench` only). The quick
run measures HMC requests per Nova operation and per power-sync cycle,
through the real driver over gRPC and a real zhmcclient Session over HTTPS,
on dpm-hmc-sim's HMC 2.14.1, 2.15.0 and 2.16.0; the counts are what reached
the simulator. The vHBA lifecycle runs on the z13 of 2.14.1 and 2.15.0, the
storage-group lifecycle on the z14 of 2.15.0 and 2.16.0; its budgets are
explained in bench/run.py (SG_BUDGETS). Moves (bench/moves.py): a resize
between two hosts of one CPC on each path and a cold migration from a z13
host to a z14 host, each step counted (budgets: bench/run.py move_budget).
HMC notifications (bench/events.py, the simulator's STOMP broker on): no
request per power-sync cycle while they flow, every status change made on the
HMC streamed without a request and turned into the driver's lifecycle event,
one check per job a notification woke.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from bench import __main__ as bench_main
from bench import hmc as hmc_mod
from bench import keys
from bench import report
from bench import run
from bench import soak
from bench.meter import Counts
from bench.meter import Meter
from bench.meter import kind_of
from bench.meter import uri_class

VHBA_PROFILES = ('2.14.1', '2.15.0')
SG_PROFILES = ('2.15.0', '2.16.0')


def _children() -> set[int]:
    """Processes this test process started that are still running (or not reaped)."""
    pids = set()
    for task in os.listdir('/proc/self/task'):
        with open(f'/proc/self/task/{task}/children', encoding='ascii') as stream:
            pids.update(int(pid) for pid in stream.read().split())
    return pids


def _simulator_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith('hmc-sim')}


@pytest.fixture(scope='module')
def results(tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp('bench') / 'results.json'
    children, threads = _children(), _simulator_threads()
    assert bench_main.main(['--quick', '--output', str(output)]) == 0
    # Every simulator, backend and process the run started is gone (other
    # tests' simulators may live on in this process).
    assert _children() <= children
    assert _simulator_threads() <= threads
    return json.loads(output.read_text())


# --- the pieces, without a run ------------------------------------------------------------


def test_uri_classes_hide_ids_and_keep_query_keys():
    uri = '/api/partitions/7c1d2e3f-8a9b-4c0d-9e1f-2a3b4c5d6e01/nics/8001?properties=status'
    assert uri_class('GET', uri) == 'GET /api/partitions/{id}/nics/{id}?properties'
    assert kind_of('GET', '/api/partitions/7c1d2e3f-8a9b?properties=status') == 'polling'
    assert kind_of('GET', '/api/jobs/a523f4a26b114a55') == 'polling'
    assert kind_of('DELETE', '/api/jobs/a523f4a26b114a55') == 'polling'
    assert kind_of('POST', '/api/sessions') == 'session'
    assert kind_of('POST', '/api/partitions/x/operations/start') == 'work'


def test_meter_counts_what_passes_the_seam():
    meter = Meter()
    assert meter('POST', '/api/partitions/x/operations/start', lambda: 'done') == 'done'
    counts = meter.take()
    assert (counts.work, counts.total) == (1, 1)
    assert meter.take().total == 0


@pytest.mark.parametrize(
    ('key', 'numbers'),
    [('n1_m1', (1, 1)), ('n4_m4', (4, 4)), ('n12_m4', (12, 4)), ('n1_m10', (1, 10))],
)
def test_result_keys_round_trip(key, numbers):
    assert keys.parse(key) == numbers
    assert keys.key(*numbers) == key


@pytest.mark.parametrize('key', ['n1m1', 'n_m1', 'n1_m', 'x1_m1', 'n1_m1_', 'n-1_m1', '1_1'])
def test_malformed_result_keys_are_refused(key):
    with pytest.raises(ValueError):
        keys.parse(key)


def test_report_and_targets_read_multi_digit_keys():
    """A run with 12 NICs and 10 vHBAs: the table and the budget use the real numbers."""
    op = {'work': 1, 'polling': 0, 'total': 1, 'rejected': 0, 'seam_differs': 0, 'by_class': {}}
    per_op = {
        keys.key(nics, vhbas): {
            'nics': nics,
            'vhbas': vhbas,
            'operations': {
                name: dict(op, work=5 + nics + vhbas if name == 'spawn' else 1)
                for name in run.scenarios.OPERATIONS
            },
        }
        for nics, vhbas in ((1, 1), (12, 10), (2, 10))
    }
    data = {
        'cpc': 'CPCZ13',
        'api_version': '3.4',
        'lifecycle': ['vhba'],
        'requests_per_operation': per_op,
        'spawn_cold': {
            'nics': 4,
            'vswitches': 3,
            'work': 14,
            'polling': 2,
            'nic_gets': 0,
            'vswitch_gets': 0,
            'vswitch_lists': 1,
        },
    }
    judged = run._lifecycle_targets('2.15.0', data)
    assert judged['2.15.0 spawn_requests']['met']
    assert judged['2.15.0 spawn_requests']['measured'] == {'n1_m1': 7, 'n12_m10': 27, 'n2_m10': 17}
    lines = report._requests_per_operation('2.15.0', data)
    header = next(line for line in lines if line.startswith('| operation'))
    assert header == '| operation | n=1 m=1 | n=2 m=10 | n=12 m=10 |'
    per_op['n12_m10']['operations']['spawn']['work'] = 28
    assert not run._lifecycle_targets('2.15.0', data)['2.15.0 spawn_requests']['met']


def test_counts_of_simulator_records_count_rejections():
    class Record:
        def __init__(self, method, uri, status):
            self.method, self.uri, self.status = method, uri, status

    counts = Counts.of_records(
        [Record('GET', '/api/cpcs/1/partitions', 200), Record('GET', '/api/partitions/1', 400)]
    )
    assert (counts.total, counts.rejected) == (2, 1)


def test_a_short_soak_counts_six_rpcs_per_lifecycle_and_stops_its_processes():
    """The soak (full bench only) on 2 hosts, 4 lifecycles: what it counts, not how fast."""
    children = _children()
    data = soak.soak(hosts=2, target_rpcs=24, warmup_rpcs=0, round_lifecycles=1)
    assert _children() <= children
    lifecycles = data['lifecycles']
    assert lifecycles == 4
    assert data['rpcs'] == 6 * lifecycles
    by_method = data['rpcs_by_method']
    assert by_method.pop('ListInstances') == 2  # the final check that nothing is left
    assert by_method == dict.fromkeys(
        ('Destroy', 'GetInstanceInfo', 'PowerOff', 'PowerOn', 'PrepareInstance', 'Spawn'),
        lifecycles,
    )
    assert data['failed_rpcs'] == data['failed_lifecycles'] == 0, data['failures']
    assert data['leftover_instances'] == 0
    assert data['exit_code'] == 0
    assert data['hmc_requests'] > data['rpcs']
    assert [sample[:2] for sample in data['rss_samples']] == [[0, 0], [24, 4]]
    assert soak.targets(data)['soak_lifecycles_succeed']['met']
    assert 'dpm-hmc-sim' in '\n'.join(soak.table(data))


@pytest.mark.parametrize(('growth_kib', 'flat'), [(13 * 100, False), (100, True)])
def test_soak_judges_rss_growth_per_partition_of_the_second_half(growth_kib, flat):
    """100 partitions in the second half; the mock's leak was about 13 KiB per partition."""
    figures = {'kib_per_partition': 1.0, 'second_half_kib_per_partition': growth_kib / 100}
    data = {
        'failed_lifecycles': 0,
        'warmup_failed_lifecycles': 0,
        'leftover_instances': 0,
        'exit_code': 0,
        'memory': {'backend': figures, 'hmc_sim': figures},
    }
    judged = soak.targets(data)
    assert judged['soak_rss_flat_hmc_sim']['met'] is flat
    assert judged['soak_rss_flat_backend']['met'] is flat


# --- the quick run ------------------------------------------------------------------------


def test_every_profile_ran(results):
    assert set(results['profiles']) == set(hmc_mod.PROFILES)
    assert hmc_mod.SG_PROFILES == SG_PROFILES
    lifecycles = {profile: data['lifecycle'] for profile, data in results['profiles'].items()}
    assert lifecycles == {
        '2.14.1': ['vhba'],
        '2.15.0': ['vhba', 'storage_groups'],
        '2.16.0': ['storage_groups'],
    }
    assert 'requests_per_operation' not in results['profiles']['2.16.0']
    for profile, data in results['profiles'].items():
        assert data['hmc_version'] == profile
        assert data['hmc_requests'] > 0, profile


def test_no_request_was_rejected_by_the_hmc(results):
    for profile, data in results['profiles'].items():
        assert data['rejected']['count'] == 0, (profile, data['rejected'])


def test_every_operation_is_counted_and_reached_the_hmc_once(results):
    for profile in VHBA_PROFILES:
        for key, entry in results['profiles'][profile]['requests_per_operation'].items():
            assert (entry['nics'], entry['vhbas']) == keys.parse(key)
            for op, counts in entry['operations'].items():
                assert counts['work'] + counts['polling'] >= 1, (profile, key, op)
                assert counts['seam_differs'] == 0, (profile, key, op)
                assert counts['rejected'] == 0, (profile, key, op)


def test_spawn_costs_at_most_5_plus_n_plus_m_requests(results):
    for profile in VHBA_PROFILES:
        for key, entry in results['profiles'][profile]['requests_per_operation'].items():
            spawn = entry['operations']['spawn']
            assert spawn['work'] <= 5 + entry['nics'] + entry['vhbas'], (profile, key, spawn)


def test_spawn_reads_no_nic_and_no_known_virtual_switch(results):
    for profile in VHBA_PROFILES:
        for key, entry in results['profiles'][profile]['requests_per_operation'].items():
            reads = run.scenarios.device_reads(entry['operations']['spawn']['by_class'])
            assert reads == {'nic_gets': 0, 'vswitch_gets': 0, 'vswitch_lists': 0}, (
                profile,
                key,
            )
        assert results['profiles'][profile]['spawn_cold']['nic_gets'] == 0, profile


def test_first_spawn_reads_each_virtual_switch_once_and_lists_none_below_2_16(results):
    """Below 2.16 a switch's port is not in the list: each is read once, ever (one GET)."""
    for profile in VHBA_PROFILES:
        cold = results['profiles'][profile]['spawn_cold']
        assert cold['vswitch_lists'] == 0, (profile, cold)
        assert cold['vswitch_gets'] == cold['vswitches'], (profile, cold)


def test_destroy_and_power_operations_cost_a_handful(results):
    for profile in VHBA_PROFILES:
        for entry in results['profiles'][profile]['requests_per_operation'].values():
            for op in run.SMALL:
                counts = entry['operations'][op]
                assert counts['work'] <= run.HANDFUL, (profile, op, counts)


def test_a_job_that_ended_at_once_is_checked_once(results):
    """Jobs of the quick run end at their 202: one status check and one delete each."""
    jobs = {
        'spawn': 1,
        'power_off': 1,
        'power_on': 1,
        'power_on_from_paused': 2,
        'reboot': 2,
        'destroy': 1,
    }
    for profile in VHBA_PROFILES:
        for key, entry in results['profiles'][profile]['requests_per_operation'].items():
            for op, count in jobs.items():
                by_class = entry['operations'][op]['by_class']
                assert by_class.get('GET /api/jobs/{id}') == count, (profile, key, op, by_class)
                assert by_class.get('DELETE /api/jobs/{id}') == count, (profile, key, op)


def test_power_sync_cycle_does_not_grow_with_partitions(results):
    for profile, data in results['profiles'].items():
        for label, entry in data['power_sync'].items():
            steady = {size['requests'] for size in entry['sizes'].values()}
            assert len(steady) == 1, (profile, label, entry['sizes'])


def test_below_2_16_the_reads_cost_one_request_per_cpc_per_cycle(results):
    """The issue's budget, on the HMC versions without additional-properties."""
    for profile in VHBA_PROFILES:
        for label, entry in results['profiles'][profile]['power_sync'].items():
            for size, cycle in entry['sizes'].items():
                assert cycle['requests'] == 1, (profile, label, size, cycle)
                assert cycle['rejected'] == 0, (profile, label, size)
            for rpc, reads in entry['reads'].items() if 'reads' in entry else ():
                assert reads['facts_cached'] == 1, (profile, label, rpc, reads)


def test_below_2_16_cycles_over_the_cpc_facts_ttl_cost_about_one_request_per_cpc(results):
    """Nova's resource tracker asks every 60 s; CPC facts are read again once per TTL."""
    from dpm_backend import config

    cycles = config.DEFAULT_CPC_CACHE_TTL / 60
    for profile in VHBA_PROFILES:
        for label, entry in results['profiles'][profile]['power_sync'].items():
            for size, cycle in entry['sizes'].items():
                assert cycle['facts_expired'] == 2, (profile, label, size, cycle)
                average = (cycle['requests'] * (cycles - 1) + cycle['facts_expired']) / cycles
                assert average <= 1.2, (profile, label, size, cycle)


def test_reads_on_2_16_cost_one_request_per_cpc_per_cycle(results):
    for label, entry in results['profiles']['2.16.0']['power_sync'].items():
        for size, cycle in entry['sizes'].items():
            assert cycle['requests'] == 1, (label, size, cycle)
            # Sizes come with the list: nothing more after partitions appeared.
            assert cycle['first'] == 1, (label, size, cycle)


def test_the_table_names_every_profile(results):
    text = report.table(results)
    for profile in hmc_mod.PROFILES:
        assert f'HMC {profile}' in text
    assert 'n=4 m=4' in text
    for profile in SG_PROFILES:
        assert f'HMC {profile} (API' in text and 'CPCZ14, storage groups' in text
    assert 'STORAGE_PATH_UNSUPPORTED' not in text


# --- the storage-group path ------------------------------------------------------------------


def _sg(results, profile) -> dict:
    return results['profiles'][profile]['storage_groups']


def test_the_storage_group_lifecycle_ran_and_left_no_group(results):
    for profile in SG_PROFILES:
        sg = _sg(results, profile)
        assert sg['cpc'] == hmc_mod.STORAGE_GROUP_CPC
        assert sorted(sg['per_nics']) == ['n1', 'n4'], profile
        assert sg['groups_left'] == [], profile
        assert 'discovery' not in sg  # timing: the full run only
        for key, entry in sg['per_nics'].items():
            assert set(entry['operations']) == set(run.scenarios.SG_OPERATIONS)
            for op, counts in entry['operations'].items():
                assert counts['work'] >= 1, (profile, key, op)
                assert counts['seam_differs'] == 0, (profile, key, op)
                assert counts['rejected'] == 0, (profile, key, op)


def test_storage_group_operations_meet_their_budgets(results):
    """Budgets of bench/run.py: spawn 18 + n, attach 11, destroy 9, ... besides polling."""
    for profile in SG_PROFILES:
        for key, entry in _sg(results, profile)['per_nics'].items():
            for op, counts in entry['operations'].items():
                budget = run.sg_budget(op, entry['nics'])
                assert counts['work'] <= budget, (profile, key, op, counts['work'], budget)
        judged = run.sg_targets(profile, _sg(results, profile))
        assert all(t['met'] for t in judged.values()), judged


def test_a_storage_group_spawn_costs_one_request_more_per_nic(results):
    for profile in SG_PROFILES:
        per_nics = _sg(results, profile)['per_nics']
        one, four = (per_nics[k]['operations']['spawn'] for k in ('n1', 'n4'))
        assert four['work'] - one['work'] == 3, (profile, one, four)
        assert four['by_class'].get('POST /api/partitions/{id}/nics') == 4
        reads = run.scenarios.device_reads(four['by_class'])
        assert reads == {'nic_gets': 0, 'vswitch_gets': 0, 'vswitch_lists': 0}, profile


def test_storage_group_jobs_are_polled_once_and_discovery_runs_once(results):
    """Jobs end at their 202 in the quick run: one status check and one delete per job."""
    discovery = 'POST /api/storage-groups/{id}/operations/start-fcp-storage-discovery'
    for profile in SG_PROFILES:
        for key, entry in _sg(results, profile)['per_nics'].items():
            for op, counts in entry['operations'].items():
                by_class = counts['by_class']
                jobs = run.SG_JOBS[op]
                assert by_class.get('GET /api/jobs/{id}', 0) == jobs, (profile, key, op)
                assert by_class.get('DELETE /api/jobs/{id}', 0) == jobs, (profile, key, op)
                assert counts['polling'] == 2 * jobs, (profile, key, op)
                assert by_class.get(discovery, 0) == run.SG_DISCOVERIES.get(op, 0), (op, by_class)


SG_STEPS = (
    ('prepare', 'POST /api/storage-groups'),
    ('prepare', 'POST /api/cpcs/{id}/partitions'),
    ('spawn', 'POST /api/storage-groups/{id}/operations/modify'),  # the boot volume
    ('spawn', 'POST /api/cpcs/{id}/operations/validate-lun-path'),
    (
        'spawn',
        'POST /api/storage-groups/{id}/storage-volumes/{id}/operations/fulfill-fcp-storage-volume',
    ),
    ('spawn', 'POST /api/partitions/{id}/operations/attach-storage-group'),
    ('attach_volume', 'POST /api/storage-groups/{id}/operations/modify'),
    ('detach_volume', 'POST /api/storage-groups/{id}/operations/modify'),
    ('destroy', 'POST /api/partitions/{id}/operations/detach-storage-group'),
    ('destroy', 'DELETE /api/partitions/{id}'),
    ('destroy', 'POST /api/storage-groups/{id}/operations/delete'),
)


def test_storage_group_operations_do_what_the_path_says(results):
    for profile in SG_PROFILES:
        ops = _sg(results, profile)['per_nics']['n1']['operations']
        for op, cls in SG_STEPS:
            assert ops[op]['by_class'].get(cls) == 1, (profile, op, cls, ops[op]['by_class'])
        for op, counts in ops.items():
            assert not any('/hbas' in cls for cls in counts['by_class']), (profile, op)


def test_the_discovery_timing_reads_the_job_from_the_records():
    """The full run's discovery timing, on records made up here (no clock involved)."""

    class Record:
        def __init__(self, time, method, uri):
            self.time, self.method, self.uri, self.status = time, method, uri, 200

    records = [
        Record(10.0, 'POST', '/api/storage-groups/g1/operations/start-fcp-storage-discovery'),
        Record(10.2, 'GET', '/api/jobs/j1'),
        Record(11.1, 'GET', '/api/jobs/j1'),
        Record(11.2, 'DELETE', '/api/jobs/j1'),
        Record(11.3, 'POST', '/api/partitions/p1/operations/start'),
        Record(11.4, 'GET', '/api/jobs/j2'),
    ]
    timing = run.scenarios._discovery_timing(records, 1.0)
    assert timing == {'waited_s': 1.2, 'found_after_s': 0.1, 'checks': 2}
    assert run.scenarios._discovery_timing(records[4:], 1.0) is None


def test_the_storage_group_table_and_targets_show_the_discovery():
    op = {'work': 1, 'polling': 0, 'total': 1, 'rejected': 0, 'seam_differs': 0, 'by_class': {}}
    job = {'waited_s': 1.2, 'found_after_s': 0.2, 'checks': 2}
    runs = {'spawn_s': [1.4, 1.3], 'attach_s': [1.2, 1.1], 'spawn_jobs': [job, job]}
    sg = {
        'cpc': 'CPCZ14',
        'groups_left': [],
        'per_nics': {
            'n1': {
                'nics': 1,
                'ports': 2,
                'connectivity': 2,
                'operations': {name: dict(op) for name in run.scenarios.SG_OPERATIONS},
            }
        },
        'discovery': {
            'discover_seconds': 1.0,
            'repeats': 2,
            'runs': {
                'discovery': {**runs, 'attach_jobs': [job, None]},
                'instant': {**runs, 'attach_jobs': [job, job]},
            },
            'spawn_s': 1.35,
            'spawn_instant_s': 0.4,
            'spawn_added_s': 0.95,
            'attach_s': 1.15,
            'attach_instant_s': 0.2,
            'attach_added_s': 0.95,
            'spawn_discovery_wait_s': 1.2,
            'spawn_discovery_wait_instant_s': 0.2,
            'worst_found_after_s': 0.2,
        },
    }
    judged = run.sg_targets('2.16.0', sg)
    assert all(t['met'] for t in judged.values()), judged
    text = '\n'.join(
        report._storage_groups('2.16.0', {'api_version': '4.10', 'storage_groups': sg})
    )
    assert '| spawn | 1 (0) / 17 |' in text
    assert 'the discovery adds 0.950 s' in text and 'waits 1.200 s for its discovery job' in text
    sg['discovery']['spawn_added_s'] = 1.6
    sg['groups_left'] = ['OpenStack-sg-x']
    sg['per_nics']['n1']['operations']['destroy']['work'] = run.sg_budget('destroy', 1) + 1
    judged = run.sg_targets('2.16.0', sg)
    assert not any(t['met'] for t in judged.values()), judged


# --- moves: resize and cold migration ------------------------------------------------------

MOVES = {
    '2.14.1': {'resize_vhba', 'cold_migration_vhba_to_storage_groups'},
    '2.15.0': {'resize_vhba', 'resize_storage_groups', 'cold_migration_vhba_to_storage_groups'},
    '2.16.0': {'resize_storage_groups'},
}
# HMC requests besides polling (job checks) of each step, on the path of the host that runs it
# (1 NIC, 1 vHBA; storage groups on two adapter ports). Jobs end at once.
MOVE_STEP_COUNTS = {
    'vhba': {
        'migrate_disk_and_power_off': (3, 2),  # a power off
        'volume_connector': (4, 0),  # a prepare that creates the partition and its vHBA
        'finish_migration': (10, 2),  # the partition found again (3), a spawn (7)
        'confirm_migration': (2, 0),  # a stopped partition found and deleted: no Stop job
        'revert_destroy': (4, 2),  # a destroy
        'finish_revert_migration': (7, 2),  # a spawn converging: its NIC read, none created
    },
    'storage_groups': {
        'migrate_disk_and_power_off': (3, 2),
        'volume_connector': (5, 0),  # SG_BUDGETS['prepare']
        'finish_migration': (21, 4),  # the partition and group found (4), a spawn (17)
        'confirm_migration': (6, 0),  # detach, delete partition and group; no Stop job
        'revert_destroy': (8, 2),  # a destroy
        'finish_revert_migration': (14, 2),
    },
}


def _moves(results):
    for profile, data in results['profiles'].items():
        for name, move in data['moves'].items():
            yield profile, name, move


def test_every_move_that_applies_ran_and_left_nothing(results):
    ran = {profile: set(data['moves']) for profile, data in results['profiles'].items()}
    assert ran == MOVES
    for profile, name, move in _moves(results):
        assert set(move['steps']) == set(run.moves.STEPS), (profile, name)
        assert move['faults'] == [], (profile, name)
        assert move['partitions_left'] == move['groups_left'] == [], (profile, name)
        assert 'timing' not in move  # seconds: the full run only
        for step, counts in move['steps'].items():
            assert counts['seam_differs'] == 0, (profile, name, step)
            assert counts['rejected'] == 0, (profile, name, step)


def test_each_step_of_a_move_costs_what_its_path_says(results):
    for profile, name, move in _moves(results):
        for step, host in run.moves.STEPS.items():
            path = move[host]['path']
            expected = MOVE_STEP_COUNTS[path][step]
            if (profile, path, step) == ('2.16.0', 'storage_groups', 'finish_migration'):
                expected = (20, 4)  # the partition found with the list (no GET on 2.16)
            counts = move['steps'][step]
            assert (counts['work'], counts['polling']) == expected, (profile, name, step, counts)


def _lifecycle(data: dict, path: str) -> dict | None:
    """The operations of the profile's lifecycle on ``path`` (1 NIC, 1 vHBA), if it ran."""
    if path == 'vhba':
        entry = (data.get('requests_per_operation') or {}).get('n1_m1')
    else:
        entry = (data.get('storage_groups') or {}).get('per_nics', {}).get('n1')
    return entry and entry['operations']


def test_the_steps_of_a_move_are_the_lifecycle_operations_they_reuse(results):
    """Compared with the lifecycle of the same profile: the same requests, class by class."""
    compared = 0
    for profile, name, move in _moves(results):
        data = results['profiles'][profile]
        steps = move['steps']
        ops = _lifecycle(data, move['destination']['path'])
        if ops:  # 2.14.1 runs no storage-group lifecycle
            assert steps['volume_connector']['by_class'] == ops['prepare']['by_class'], name
            assert steps['revert_destroy']['by_class'] == ops['destroy']['by_class'], name
            found_again = steps['finish_migration']['work'] - ops['spawn']['work']
            assert found_again == ops['volume_connector']['work'], (profile, name)
            compared += 1
        ops = _lifecycle(data, move['source']['path'])
        if ops:
            power_off = steps['migrate_disk_and_power_off']['by_class']
            assert power_off == ops['power_off']['by_class'], (profile, name)
            compared += 1
    assert compared == 11


def test_a_cold_migration_uses_each_ends_storage_path(results):
    for profile, _, move in _moves(results):
        if move['kind'] != 'migration':
            continue
        assert (move['source']['cpc'], move['destination']['cpc']) == ('CPCZ13', 'CPCZ14')
        for step, host in run.moves.STEPS.items():
            classes = ' '.join(move['steps'][step]['by_class'])
            if host == 'destination':
                assert '/hbas' not in classes, (profile, step)
            else:
                assert 'storage-groups' not in classes, (profile, step)
        assert move['steps']['volume_connector']['by_class'].get('POST /api/storage-groups') == 1


def test_moves_meet_their_budgets(results):
    for profile, name, move in _moves(results):
        judged = run.move_targets(profile, name, move)
        assert set(judged) == {
            f'{profile} {name} move_requests',
            f'{profile} {name} move_leaves_nothing',
        }
        assert all(t['met'] for t in judged.values()), judged
        assert judged == {k: results['targets'][k] for k in judged}
    text = report.table(results)
    assert '## Moves: HMC requests per step' in text
    # 2.14.1's resize, then its cold migration: the first columns.
    assert '| total, confirmed | 19 (4) / 24 | 31 (6) / 36 |' in text
    assert '## Moves: seconds' not in text


def test_the_job_timing_sees_discovery_and_start_jobs():
    """A storage-group finish_migration waits for a discovery, then a Start (made-up records)."""

    class Record:
        def __init__(self, time, method, uri, status=200):
            self.time, self.method, self.uri, self.status = time, method, uri, status

    class Settings:
        start_seconds, stop_seconds, discover_seconds = 1.0, 1.0, 2.0

    records = [
        Record(10.0, 'POST', '/api/storage-groups/g1/operations/start-fcp-storage-discovery', 202),
        Record(10.5, 'GET', '/api/jobs/j1'),
        Record(12.1, 'GET', '/api/jobs/j1'),
        Record(12.2, 'DELETE', '/api/jobs/j1'),
        Record(12.3, 'POST', '/api/partitions/p1/operations/start', 202),
        Record(13.5, 'GET', '/api/jobs/j2'),
        Record(13.6, 'DELETE', '/api/jobs/j2'),
    ]
    timing = run.scenarios._job_timing(records, Settings, 13.8)
    assert [(j['operation'], j['seconds'], j['checks']) for j in timing['jobs']] == [
        ('discovery', 2.0, 2),
        ('start', 1.0, 1),
    ]
    assert [j['found_after_s'] for j in timing['jobs']] == [0.1, 0.2]
    assert timing['overhead_s'] == 0.5


def _made_up_move() -> dict:
    op = {'work': 1, 'polling': 0, 'total': 1, 'rejected': 0, 'seam_differs': 0, 'by_class': {}}
    moves = run.moves
    step_s = {'wall_s': 1.2, 'jobs': ['stop'], 'jobs_s': 1.0, 'beyond_jobs_s': 0.2}
    return {
        'kind': 'resize',
        'source': {'host': 'source', 'cpc': 'CPCZ13', 'path': 'vhba', 'vhbas': 1},
        'destination': {'host': 'destination', 'cpc': 'CPCZ13', 'path': 'vhba', 'vhbas': 1},
        'nics': 1,
        'flavors': {'old': [1, 512], 'new': [2, 1024]},
        'steps': {step: dict(op) for step in moves.STEPS},
        'paths': {path: {'work': len(names), 'polling': 0} for path, names in moves.PATHS.items()},
        'faults': [],
        'partitions_left': [],
        'groups_left': [],
        'timing': {
            'latency_ms': 20.0,
            'job_seconds': 1.0,
            'faults': [],
            'rejected': 0,
            'paths': {
                path: {
                    'steps': {step: dict(step_s) for step in names},
                    'wall_s': 1.2 * len(names),
                    'jobs_s': 1.0 * len(names),
                    'requests': 10,
                }
                for path, names in moves.PATHS.items()
            },
        },
    }


def test_the_move_tables_and_targets_show_the_seconds_and_what_failed():
    move = _made_up_move()
    judged = run.move_targets('2.15.0', 'resize_vhba', move)
    assert all(t['met'] for t in judged.values()), judged
    results = {'profiles': {'2.15.0': {'moves': {'resize_vhba': move}}}}
    text = '\n'.join(report._moves(results))
    assert '| migrate_disk_and_power_off (source) | 1 (0) / 5 |' in text
    assert '| total, reverted | 5 (0) / 31 |' in text
    assert '## Moves: seconds per step at 20 ms per HMC request, jobs of 1 s' in text
    assert '| finish_migration (destination) | 1.200 (0.200) |' in text
    assert '| total, confirmed | 4.800 (4.000) |' in text
    # Over the budget, a partition left, a wait too long: each judged.
    move['paths']['confirm']['work'] = 25
    move['partitions_left'] = ['OpenStack-source-x']
    move['timing']['paths']['revert']['steps']['revert_destroy']['beyond_jobs_s'] = 0.6
    judged = run.move_targets('2.15.0', 'resize_vhba', move)
    assert not any(t['met'] for t in judged.values()), judged


# --- HMC notifications (bench/events.py) ---------------------------------------------------


LIST = 'GET /api/cpcs/{id}/partitions'


def _events(results):
    for profile, data in results['profiles'].items():
        yield profile, data['events']


def test_a_power_sync_cycle_costs_nothing_while_notifications_are_live(results):
    """0 requests per cycle, as cycles come and with the caches older than cpc_cache_ttl."""
    for profile, data in _events(results):
        groups = data['power_sync']['groups']
        assert set(groups) == {'1_host', '8_hosts'}
        for label, entry in groups.items():
            assert set(entry['sizes']) == {'0', '20'}, (profile, label)
            for size, cell in entry['sizes'].items():
                counts = {k: cell[k] for k in ('requests', 'aged', 'seam', 'rejected')}
                assert counts == dict.fromkeys(counts, 0), (profile, label, size, cell)
                assert cell['by_class'] == {}, (profile, label, size)
        assert data['power_sync']['aged_s'] > run.DEFAULT_CPC_CACHE_TTL


def test_the_first_cycle_after_partitions_appeared_reads_them_once(results):
    """Partitions of a served host created behind the backend make one List Partitions,
    and below 2.16 one GET per partition for its sizes (2.16 lists them); foreign ones
    cost nothing. The CPC facts read before the notifications flowed are read once more
    when they are older than cpc_cache_ttl, never again."""
    sizes_get = 'GET /api/partitions/{id}'
    expected = {
        '2.14.1': ({'GET /api/cpcs/{id}': 1}, {LIST: 1, sizes_get: 10}),
        '2.15.0': ({'GET /api/cpcs/{id}': 1}, {LIST: 1, sizes_get: 10}),
        '2.16.0': ({'GET /api/cpcs/{id}?properties': 1}, {f'{LIST}?additional-properties': 1}),
    }
    for profile, data in _events(results):
        facts, first = expected[profile]
        assert data['power_sync']['facts_read_before_live']['by_class'] == facts, profile
        sizes = data['power_sync']['groups']['8_hosts']['sizes']
        assert sizes['0']['by_class_first'] == {}, profile
        assert sizes['20']['by_class_first'] == first, profile
        assert data['power_sync']['groups']['1_host']['sizes']['20']['first'] is None


def test_every_status_change_on_the_hmc_reaches_the_stream_and_the_driver(results):
    cycles = run.events.QUICK_CYCLES
    for profile, data in _events(results):
        assert set(data['latency']) == {'0'}, profile  # no latency in the quick run
        changes = data['latency']['0']
        assert changes['changes'] == len(run.events.CYCLE) * cycles, (profile, changes)
        samples = {source: s['samples'] for source, s in changes['by_source'].items()}
        assert samples == {'request': 2 * cycles, 'job': 2 * cycles, 'guest': cycles}
        assert changes['missed'] == changes['unexpected'] == [], profile
        assert changes['backend_requests'] == 0, profile
        # The driver's lifecycle events: STARTED at active, STOPPED at paused.
        driver = changes['driver']
        assert (driver['events'], driver['missed']) == (2 * cycles, []), (profile, driver)
        events = {transition: e['samples'] for transition, e in driver['by_event'].items()}
        assert events == {'STARTED': cycles, 'STOPPED': cycles}, profile


def test_a_notified_job_wait_checks_the_job_once(results):
    """Jobs of 0.3 s: polled at the defaults they would be checked twice; woken, once."""
    for profile, data in _events(results):
        power = data['power']
        assert set(power['modes']) == {'notifications'}, profile  # polling: the full run
        assert power['job_seconds'] == run.events.QUICK_JOB_SECONDS
        for op, m in power['modes']['notifications'].items():
            assert (m['job_checks'], m['jobs']) == ([1], [1]), (profile, op, m)
            # The partition looked up, Start/Stop, its status read after the job.
            assert m['work'] == [3], (profile, op, m)
            assert m['rejected'] == 0


def test_the_notification_targets_are_met_and_tabled(results):
    for profile, data in _events(results):
        judged = run.events_targets(profile, data)
        assert set(judged) == {
            f'{profile} events_sync_requests',
            f'{profile} events_every_change_streamed',
            f'{profile} events_one_job_check',
            f'{profile} events_zero_rejected',
        }
        assert all(t['met'] for t in judged.values()), judged
        assert judged == {k: results['targets'][k] for k in judged}
    text = report.table(results)
    assert '## HMC notifications' in text
    # Live: 0 / 0 [first] vs the power-sync table's snapshots expired / CPC facts expired.
    assert '| 2.15.0 | 8 | 0 / 0 [0] vs 1 / 2 | 0 / 0 [11] vs 1 / 2 |' in text
    assert '| 2.16.0 | 1 | 0 / 0 vs 1 / 2 | 0 / 0 vs 1 / 2 |' in text


def test_aged_caches_are_read_again_without_notifications():
    """rig.age_caches ages what the backend holds: a backend without notifications reads the
    CPC and its partitions again (what the aged zero above is measured against)."""
    profile = '2.15.0'
    inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
    with (
        hmc_mod.simulator(profile) as served,
        run.events.rig_mod.rig(served, inventory, [run.events.HostDef('aged')]) as running,
    ):
        driver = running.drivers['aged']

        def read():
            driver.get_available_resource('aged')

        running.measure(read)
        assert running.measure(read, expire=False).hmc.total == 0  # young
        run.events.rig_mod.age_caches(running.backend, 3600)
        aged = running.measure(read, expire=False).hmc
        assert sorted(aged.by_class) == ['GET /api/cpcs/{id}', LIST], aged.by_class


def _made_up_events(beyond: float) -> dict:
    cell = {
        'partitions_added': 0,
        'instances': 0,
        'first': 1,
        'requests': 0,
        'aged': 0,
        'seam': 0,
        'rejected': 0,
        'by_class': {},
        'by_class_first': {},
    }
    stats = {'samples': 50, 'p50_ms': 1.5, 'p99_ms': 3.0, 'max_ms': 4.0}

    def power(checks: int, seconds: float) -> dict:
        return {
            'beyond_job_s': [seconds] * 2,
            'median_s': seconds,
            'max_s': seconds,
            'checked_s': [0.03] * 2,
            'gc_s': [0.0] * 2,
            'job_checks': [checks] * 2,
            'jobs': [1, 1],
            'work': [3, 3],
            'rpc_s': [1.1, 1.1],
            'rejected': 0,
        }

    return {
        'cpc': 'CPCZ13',
        'timed': True,
        'reconnects': 0,
        'power_sync': {
            'aged_s': 360,
            'facts_read_before_live': {'requests': 1, 'by_class': {}},
            'groups': {
                '1_host': {'hosts': 1, 'sizes': {'0': dict(cell, first=None)}},
                '8_hosts': {'hosts': 8, 'sizes': {'0': dict(cell)}},
            },
        },
        'latency': {
            '20': {
                'latency_ms': 20.0,
                'changes': 250,
                'missed': [],
                'unexpected': [],
                'backend_requests': 0,
                'by_source': {'request': stats, 'job': stats, 'guest': stats},
                'all': stats,
                'driver': {
                    'stopped_delay_s': 0,
                    'events': 100,
                    'missed': [],
                    'by_event': {'STARTED': stats, 'STOPPED': stats},
                    'all': stats,
                },
            }
        },
        'power': {
            'job_seconds': 1.0,
            'latency_ms': 20.0,
            'repeats': 2,
            'modes': {
                'notifications': {op: power(1, beyond) for op in ('power_on', 'power_off')},
                'polling': {op: power(3, 0.25) for op in ('power_on', 'power_off')},
            },
        },
        'hmc_requests': 100,
        'rejected': {'count': 0, 'requests': []},
    }


def test_the_full_runs_notification_timings_are_judged_and_tabled():
    data = _made_up_events(0.07)
    judged = run.events_targets('2.15.0', data)
    assert judged['2.15.0 events_wait_after_job']['met']
    results = {'profiles': {'2.15.0': {'events': data}}}
    text = '\n'.join(report._events(results))
    assert '| 2.15.0 | 20 | 250 | 1.5 / 3 | 1.5 / 3 | 1.5 / 3 | 1.5 / 3 / 4 | 0 | 0 |' in text
    assert '| 2.15.0 | 20 | 100 | 1.5 / 3 | 1.5 / 3 | 1.5 / 3 / 4 | 0 |' in text
    assert 'reads the CPC facts read before' in text and '2.15.0: 1 HMC requests' in text
    assert (
        '| 2.15.0 | notifications | power_on | 0.070 / 0.070 | 0.070, 0.070 | 0.030, 0.030 | '
        '1, 1 | 0.000, 0.000 |'
    ) in text
    assert '| 2.15.0 | polling | power_off | 0.250 / 0.250 | 0.250, 0.250 | 0.030, 0.030 |' in text
    # A late wake, a request per cycle, a missed change, a polled job: each judged.
    data = _made_up_events(0.15)
    data['power_sync']['groups']['8_hosts']['sizes']['0']['aged'] = 1
    data['latency']['20']['driver']['missed'] = ['guest paused STOPPED']
    data['power']['modes']['notifications']['power_on']['job_checks'] = [1, 2]
    judged = run.events_targets('2.15.0', data)
    assert [name for name, t in judged.items() if not t['met']] == [
        '2.15.0 events_sync_requests',
        '2.15.0 events_every_change_streamed',
        '2.15.0 events_one_job_check',
        '2.15.0 events_wait_after_job',
    ]
