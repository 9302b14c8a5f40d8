"""``dpm-backend --check-config FILE``: the file, then each host against the HMC.

An operator runs it before (re)starting a backend: it prints one line per
finding and per host and exits non-zero on any problem, so a typo or a wrong
CPC never waits for the first Nova call to show. It makes read-only HMC
requests only (the start-up checks: the CPC's properties and adapters), then
logs off.
"""

from __future__ import annotations

from typing import TextIO

import zhmcclient

from dpm_backend import errors
from dpm_backend import startup
from dpm_backend.config import BackendConfig
from dpm_backend.hmc import PoolExhausted
from dpm_backend.hmc import SessionPool
from dpm_backend.host import CpcFactsCache
from dpm_backend.host import Host
from dpm_backend.host import PartitionSizes
from dpm_backend.jobs import JobWaiter

OK = 0
HOST_PROBLEM = 1
CONFIG_PROBLEM = 2


def _one_line(text: str) -> str:
    return ' '.join(text.split())


def run(config: BackendConfig, unknown: list[str], out: TextIO) -> int:
    """Print the findings; 0 all usable, 1 a host or the HMC is not, 2 the file has errors."""
    for finding in unknown:
        print(f'error: {finding}', file=out)
    pool = SessionPool(config.hmc)
    facts = CpcFactsCache(config.hmc.cpc_cache_ttl)
    sizes = PartitionSizes()
    hosts = [Host(host, facts, sizes) for host in config.hosts.values()]
    jobs = JobWaiter(config.hmc.job_poll_interval, config.hmc.job_poll_max_interval)
    status = CONFIG_PROBLEM if unknown else OK
    try:
        outcomes = startup.check_hosts(
            pool, jobs, hosts, config.hmc.connect_timeout + config.hmc.read_timeout
        )
    except (zhmcclient.Error, PoolExhausted) as exc:
        hmc = ','.join(config.hmc.hosts)
        print(
            f'error: HMC {hmc}: cannot check the hosts: {type(exc).__name__}: '
            f'{_one_line(str(exc))}',
            file=out,
        )
        return status or HOST_PROBLEM
    finally:
        pool.close()
    for name, outcome in outcomes.items():
        if isinstance(outcome, errors.DPMError):
            why = outcome.message.removeprefix(f'host {name}: ')
            print(f'{name}: NOT USABLE: {_one_line(why)}', file=out)
            status = status or HOST_PROBLEM
        else:
            print(f'{name}: ok: {outcome}', file=out)
    return status
