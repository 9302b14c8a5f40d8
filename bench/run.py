"""Run the scenarios and judge them against the targets."""

from __future__ import annotations

from bench import memory
from bench import scenarios

HANDFUL = 5  # HMC requests (besides polling) a destroy or power operation may cost


def run(quick: bool = False) -> dict:
    results: dict = {'quick': quick}
    results['requests_per_operation'] = scenarios.requests_per_operation(repeats=1 if quick else 3)
    results['power_sync'] = scenarios.power_sync(
        sizes=(0, 20) if quick else (0, 20, 80), repeats=1 if quick else 3
    )
    if not quick:
        results['grpc_hop'] = scenarios.grpc_hop()
        results['many_hosts'] = scenarios.many_hosts()
        results['memory'] = memory.backend_rss()
    results['targets'] = targets(results)
    return results


def _target(met: bool, measured, goal: str) -> dict:
    return {'met': bool(met), 'measured': measured, 'target': goal}


def targets(results: dict) -> dict:
    judged = {}
    per_op = results['requests_per_operation']
    spawn = {
        key: (ops['spawn']['work'], 5 + int(key[1]) + int(key[4])) for key, ops in per_op.items()
    }
    judged['spawn_requests'] = _target(
        all(work <= limit for work, limit in spawn.values()),
        {key: work for key, (work, _) in spawn.items()},
        '<= 5 + n + m besides polling',
    )
    small = ('destroy', 'power_off', 'power_on', 'power_on_from_paused', 'reboot')
    worst = {op: max(ops[op]['work'] for ops in per_op.values()) for op in small}
    judged['destroy_and_power_requests'] = _target(
        all(work <= HANDFUL for work in worst.values()), worst, f'<= {HANDFUL} besides polling'
    )
    one = results['power_sync']['1_host']
    judged['sync_independent_of_instances'] = _target(
        len({size['requests'] for size in one.values()}) == 1,
        {key: size['requests'] for key, size in one.items()},
        'same requests per cycle for any number of partitions',
    )
    eight = results['power_sync']['8_hosts']
    judged['sync_one_request_per_cpc'] = _target(
        all(size['requests'] <= 1 for size in eight.values()),
        {key: size['requests'] for key, size in eight.items()},
        '<= 1 request per CPC per cycle of all 8 hosts',
    )
    hop = results.get('grpc_hop')
    if hop:
        spawn_hop = hop['operations']['spawn']
        judged['grpc_hop_spawn'] = _target(
            spawn_hop['ratio'] <= 1.03, spawn_hop['ratio'], '<= 1.03 (3 % added)'
        )
        ops = hop['operations']
        cheap = ops['get_info_from_snapshot']
        judged['grpc_hop_cheap_call'] = _target(
            cheap['added_ms'] < 1.0,
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
    return judged
