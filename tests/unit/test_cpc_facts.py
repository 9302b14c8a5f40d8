"""CPC facts and virtual switch ports: read once per CPC however many calls miss at once."""

from __future__ import annotations

import threading

import zhmcclient
from dpmtest import INVENTORY
from dpmtest import pristine

from dpm_backend.call import Call
from dpm_backend.call import Deadline
from dpm_backend.dialect import Dialect
from dpm_backend.host import CpcFactsCache
from dpm_backend.jobs import JobWaiter

CPC = INVENTORY['z13']
CALLERS = 6


def _calls(served, count: int) -> list[Call]:
    calls = []
    for _ in range(count):
        client = zhmcclient.Client(served.session())
        client.session.logon()
        dialect = Dialect.of(client.query_api_version())
        calls.append(Call(client, dialect, JobWaiter(0.01, 0.1), Deadline(30)))
    return calls


def _at_once(calls: list[Call], read) -> list:
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = read(calls[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_misses_read_the_cpc_and_its_switches_once(simulators):
    served = simulators('2.15.0')
    pristine(served)
    calls = _calls(served, CALLERS)
    try:
        served.sim.configure(latency=0.2)  # every read is slow: the misses overlap
        served.sim.clear_requests()
        cache = CpcFactsCache(ttl=60)
        facts = _at_once(calls, lambda call: cache.get(call, CPC))
        assert {f.name for f in facts} == {'CPCZ13'}
        ports = _at_once(
            calls, lambda call: cache.vswitch_port(call, CPC, INVENTORY['vswitch_osa1'])
        )
        assert set(ports) == {1}
        reads = [r.uri for r in served.sim.requests() if r.method == 'GET']
        assert reads.count(f'/api/cpcs/{CPC}') == 1
        # HMC 2.15 lists switches without their port: the one switch is read, once.
        assert reads.count(f'/api/virtual-switches/{INVENTORY["vswitch_osa1"]}') == 1
        assert f'/api/cpcs/{CPC}/virtual-switches' not in reads
        # A fresh read (the start-up checks) is one more, not one per caller.
        served.sim.clear_requests()
        _at_once(calls, lambda call: cache.get(call, CPC, fresh=True))
        reads = [r.uri for r in served.sim.requests() if r.method == 'GET']
        assert 1 <= reads.count(f'/api/cpcs/{CPC}') < CALLERS
    finally:
        served.sim.configure(latency=0)
        for call in calls:
            call.client.session.logoff()
