"""The high-availability scenario of `make bench`, reduced: the HMC's lock adds no HMC request.

Two boots from volume with and without ``[coordination]`` (an etcd of the
bench's own); the counts are asserted, never the seconds (`make bench`
judges those).
"""

from __future__ import annotations

import copy
import os

import pytest

from bench import ha


def _children() -> set[int]:
    pids = set()
    for task in os.listdir('/proc/self/task'):
        with open(f'/proc/self/task/{task}/children', encoding='ascii') as stream:
            pids.update(int(pid) for pid in stream.read().split())
    return pids


@pytest.fixture(scope='module')
def cost() -> dict:
    children = _children()
    measured = ha.coordination_cost(spawns=2, blocks=1)
    assert _children() <= children  # etcd is gone
    return measured


def test_the_lock_adds_no_hmc_request_to_a_boot(cost):
    nics, vhbas = cost['nics'], cost['vhbas']
    # prepare: the partition looked up and created, a POST and a GET per vHBA (2 + 2m);
    # spawn: 5 + n + m besides polling (bench/run.py).
    expected = [2 + 2 * vhbas + 5 + nics + vhbas]
    for mode in ('plain', 'coordinated'):
        entry = cost['modes'][mode]
        assert entry['spawns'] == 2
        assert entry['work'] == expected, mode
        assert entry['seam_work'] == expected, mode
        assert all(polls > 0 for polls in entry['polling'])
    assert cost['rejected'] == 0
    judged = ha.targets({'coordination_cost': cost})
    assert judged['ha_coordination_requests']['met']
    # The reduced run judges no seconds.
    assert 'ha_coordination_added' not in judged


def test_a_request_more_with_the_lock_misses_the_target(cost):
    changed = copy.deepcopy(cost)
    changed['modes']['coordinated']['work'] = [changed['modes']['plain']['work'][0] + 1]
    assert not ha.targets({'coordination_cost': changed})['ha_coordination_requests']['met']


def test_takeover_targets_and_report():
    def summary(took: list[float]) -> dict:
        return ha._summary([{'host_status_s': t} for t in took], 4)

    data = {
        'takeover': [
            {
                'lease_ttl': 4,
                'kill_9': summary([3.6, 6.5]),
                'sigterm': summary([0.4]),
                'rejected': 0,
            }
        ],
        'coordination_cost': {
            'modes': {
                mode: {'spawns': 10, 'median_s': median, 'work': [11], 'seam_work': [11]}
                for mode, median in (('plain', 2.0), ('coordinated', 2.1))
            },
            'added_percent': 5.0,
            'rejected': 0,
            'latency_ms': 20,
            'start_seconds': 1.0,
            'nics': 1,
            'vhbas': 1,
        },
    }
    judged = ha.targets(data)
    assert not judged['ha_takeover_kill_9_ttl_4']['met']  # 6.5 s > 4 + 2 s
    assert judged['ha_takeover_kill_9_ttl_4']['measured']['median_s'] == 5.05
    assert judged['ha_takeover_sigterm_ttl_4']['met']
    assert not judged['ha_coordination_added']['met']  # 5 % > 2 %
    lines = '\n'.join(ha.table(data))
    assert 'kill -9, lease_ttl 4 s: median 5.05 s, max 6.5 s over 2' in lines
    assert '+5 %' in lines
    assert ha.table(None) == []
