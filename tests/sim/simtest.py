"""Helpers of the simulator's tests: names in the shipped definitions, sessions, the log."""

from __future__ import annotations

import time

import zhmcclient

from dpm_hmc_sim.testing import ServedSimulator

USERID = 'openstack'
PASSWORD = 'sim-password'
CPCZ13 = 'CPCZ13'
CPCZ14 = 'CPCZ14'
STOPPED_PARTITION = 'OpenStack-cpc1-backup'  # on CPCZ13, stopped in every definition
ACTIVE_PARTITION = 'LINUX01'  # on CPCZ13, active
Z14_PARTITION = 'ZOS-LIKE'  # on CPCZ14, active

# Short and without retries, so that an unreachable HMC fails a test at once.
FAST = zhmcclient.RetryTimeoutConfig(
    connect_timeout=2,
    connect_retries=0,
    read_timeout=10,
    read_retries=0,
    operation_timeout=10,
    status_timeout=10,
)


def wait_complete(job: zhmcclient.Job, timeout: float = 5.0) -> tuple[str, dict | None]:
    """Poll a job every 50 ms (zhmcclient's own wait sleeps 10 s between polls)."""
    deadline = time.monotonic() + timeout
    while True:
        state, result = job.check_for_completion()
        if state == 'complete' or time.monotonic() > deadline:
            return state, result
        time.sleep(0.05)


def connect(hmc: ServedSimulator) -> zhmcclient.Client:
    """A zhmcclient Client on a real Session to the simulator (logged on lazily)."""
    return zhmcclient.Client(hmc.session(retry_timeout_config=FAST))


def partition(client: zhmcclient.Client, name: str, cpc: str = CPCZ13) -> zhmcclient.Partition:
    return client.cpcs.find(name=cpc).partitions.find(name=name)


def rejected(hmc: ServedSimulator) -> list[tuple[str, str, int, int | None]]:
    """The HMC requests the simulator refused (status >= 400)."""
    return [(r.method, r.uri, r.status, r.reason) for r in hmc.sim.requests() if r.status >= 400]
