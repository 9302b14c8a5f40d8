"""`make bench` in its quick form: it runs, it counts, and the counts meet the targets.

Benchmarks are not timed tests: nothing here asserts seconds. The quick run
has no injected latency and measures HMC requests per Nova operation and per
power-sync cycle, through the real driver over gRPC on the mock HMC.
"""

from __future__ import annotations

import json

import pytest

from bench import __main__ as bench_main
from bench import run
from bench.meter import Meter
from bench.meter import kind_of
from bench.meter import uri_class


@pytest.fixture(scope='module')
def results(tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp('bench') / 'results.json'
    assert bench_main.main(['--quick', '--output', str(output)]) == 0
    return json.loads(output.read_text())


def test_uri_classes_hide_ids_and_keep_query_keys():
    uri = '/api/partitions/7c1d2e3f-8a9b-4c0d-9e1f-2a3b4c5d6e01/nics/8001?properties=status'
    assert uri_class('GET', uri) == 'GET /api/partitions/{id}/nics/{id}?properties'
    assert kind_of('GET', '/api/partitions/7c1d2e3f-8a9b?properties=status') == 'polling'
    assert kind_of('POST', '/api/sessions') == 'session'
    assert kind_of('POST', '/api/partitions/x/operations/start') == 'work'


def test_meter_counts_and_delays_job_operations():
    meter = Meter(latency=0, job_delay=0)
    assert meter('POST', '/api/partitions/x/operations/start', lambda: 'done') == 'done'
    assert meter.take().work == 1


def test_every_operation_is_counted(results):
    for key, ops in results['requests_per_operation'].items():
        for op, counts in ops.items():
            assert counts['work'] + counts['polling'] >= 1, (key, op)


def test_spawn_costs_at_most_5_plus_n_plus_m_requests(results):
    for key, ops in results['requests_per_operation'].items():
        nics, vhbas = int(key[1]), int(key[4])
        assert ops['spawn']['work'] <= 5 + nics + vhbas, (key, ops['spawn'])


def test_destroy_and_power_operations_cost_a_handful(results):
    for ops in results['requests_per_operation'].values():
        for op in ('destroy', 'power_off', 'power_on', 'power_on_from_paused', 'reboot'):
            assert ops[op]['work'] <= run.HANDFUL, (op, ops[op])


def test_power_sync_cycle_does_not_grow_with_partitions(results):
    one = results['power_sync']['1_host']
    assert one['0']['requests'] == one['20']['requests'], one


def test_hosts_sharing_a_cpc_share_one_request_per_cycle(results):
    for size in results['power_sync']['8_hosts'].values():
        assert size['requests'] <= 1, size
