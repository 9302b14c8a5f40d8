"""The HMC of the bench: dpm-hmc-sim profiles, what they hold, and what they saw.

The backend talks to the simulator exactly as to an HMC: a real zhmcclient
Session over HTTPS on loopback, verified with the simulator's CA. The
simulator answers as the HMC version of its profile does (query parameters,
asynchronous Start/Stop Partition jobs, HBAs refused on storage-group CPCs)
and records every request that reached it, with its status: the counts and
the rejected requests of the bench come from there.

Profiles: HMC 2.14.1 (API 2.40) and 2.15.0 (API 3.4) manage a z13 with vHBAs
(and a z14); HMC 2.16.0 (API 4.10) manages only a z14 with DPM storage
management. The bench runs the vHBA lifecycle on the z13 of the first two,
and the storage-group lifecycle on the z14 of 2.15.0 and 2.16.0.
"""

from __future__ import annotations

import contextlib
import copy
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import yaml

from dpm_hmc_sim import definition as sim_definitions

USERID = 'openstack-bench'
PASSWORD = 'bench-hmc-password'  # noqa: S105 (the simulator's, on loopback only)
PROFILES = ('2.14.1', '2.15.0', '2.16.0')
VHBA_PROFILES = ('2.14.1', '2.15.0')
# Where the bench runs the storage-group lifecycle (CPCZ14).
SG_PROFILES = ('2.15.0', '2.16.0')
VHBA_CPC = 'CPCZ13'
STORAGE_GROUP_CPC = 'CPCZ14'

# Two FCP adapters more on CPCZ13 than the shipped definitions have, so that a
# host can map four vHBAs (m = 4). Ids continue the shipped ones' pattern.
EXTRA_FCP = (
    ('FCP-C', '122', '1d7c0a6e-4b2f-4f1a-8e3d-5a6b7c8d9e05'),
    ('FCP-D', '123', '1d7c0a6e-4b2f-4f1a-8e3d-5a6b7c8d9e06'),
)


def _fcp_adapter(name: str, adapter_id: str, object_id: str) -> dict:
    uri = f'/api/adapters/{object_id}'
    return {
        'properties': {
            'object-id': object_id,
            'object-uri': uri,
            'name': name,
            'adapter-id': adapter_id,
            'type': 'fcp',
            'adapter-family': 'ficon',
            'detected-card-type': 'ficon-express-16s',
            'status': 'active',
            'state': 'online',
        },
        'ports': [
            {
                'properties': {
                    'element-id': '0',
                    'element-uri': f'{uri}/storage-ports/0',
                    'class': 'storage-port',
                    'index': 0,
                    'name': 'Port 0',
                }
            }
        ],
    }


def definition(profile: str) -> dict:
    """The shipped definition of ``profile``, with two more FCP adapters on the z13 (if any)."""
    with open(sim_definitions.resolve(profile), encoding='utf-8') as stream:
        data = yaml.safe_load(stream)
    for cpc in data['hmc_definition']['cpcs']:
        if cpc['properties']['name'] == VHBA_CPC:
            cpc.setdefault('adapters', []).extend(_fcp_adapter(*fcp) for fcp in EXTRA_FCP)
    return data


def cpc_names(data: dict) -> list[str]:
    return [cpc['properties']['name'] for cpc in data['hmc_definition']['cpcs']]


def inventory(data: dict, cpc_name: str) -> dict[str, Any]:
    """Object ids of one CPC of a definition: the CPC, its FCP adapters, its virtual switches."""
    cpc = next(c for c in data['hmc_definition']['cpcs'] if c['properties']['name'] == cpc_name)
    features = cpc['properties'].get('available-features-list') or []
    return {
        'name': cpc_name,
        'cpc': cpc['properties']['object-id'],
        'fcp': [
            a['properties']['object-id']
            for a in cpc.get('adapters', [])
            if a['properties'].get('type') == 'fcp'
        ],
        'vswitches': [v['properties']['object-id'] for v in cpc.get('virtual_switches', [])],
        'storage_management': any(
            f.get('name') == 'dpm-storage-management' and f.get('state') for f in features
        ),
    }


def serving_cpc(profile: str) -> str:
    """The CPC the bench's hosts live on in a profile: the z13 where there is one."""
    names = cpc_names(definition(profile))
    return VHBA_CPC if VHBA_CPC in names else STORAGE_GROUP_CPC


@contextlib.contextmanager
def simulator(profile: str, **settings: Any) -> Iterator[Any]:
    """The simulator of ``profile`` served over HTTPS in a thread of this process."""
    from dpm_hmc_sim.testing import served

    cert_dir = tempfile.mkdtemp(prefix=f'dpm-bench-hmc-{profile}-')
    started = None
    try:
        started = served(
            definition(profile), userid=USERID, password=PASSWORD, cert_dir=cert_dir, **settings
        )
        yield started
    finally:
        if started is not None:
            started.stop()
        shutil.rmtree(cert_dir, ignore_errors=True)


@contextlib.contextmanager
def simulator_process(profile: str, **settings: Any) -> Iterator[Any]:
    """The simulator of ``profile`` as a process of its own (``python -m dpm_hmc_sim``)."""
    from dpm_hmc_sim.testing import SimulatorProcess

    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f'dpm-bench-hmc-{profile}-'))
    started = None
    try:
        path = workdir / f'hmc-{profile}-bench.yaml'
        path.write_text(yaml.safe_dump(definition(profile), sort_keys=False))
        started = SimulatorProcess(
            path, userid=USERID, password=PASSWORD, cert_dir=workdir / 'certs', **settings
        )
        yield started
    finally:
        if started is not None:
            started.terminate()
        shutil.rmtree(workdir, ignore_errors=True)


def set_status(served: Any, partition_name: str, status: str) -> None:
    """Change a partition behind the backend's back (an in-guest shutdown leaves 'paused')."""
    sim = served.sim
    with sim.lock:
        for cpc in sim.hmc.cpcs.list():
            for partition in cpc.partitions.list():
                if partition.properties['name'] == partition_name:
                    partition.properties['status'] = status
                    return
    raise AssertionError(f'no partition {partition_name}')


def partition_properties(served: Any, partition_name: str) -> dict | None:
    """A partition's properties as the HMC holds them (a copy), or None if there is none."""
    sim = served.sim
    with sim.lock:
        for cpc in sim.hmc.cpcs.list():
            for partition in cpc.partitions.list():
                if partition.properties['name'] == partition_name:
                    return dict(partition.properties)
    return None


def add_partitions(served: Any, cpc_object_id: str, partitions: list[dict]) -> None:
    """Partitions created behind the backend (another tool, another OpenStack)."""
    sim = served.sim
    with sim.lock:
        cpc = sim.hmc.cpcs.lookup_by_oid(cpc_object_id)
        for properties in partitions:
            cpc.partitions.add(copy.deepcopy(properties))


def rejected(records) -> list:
    """Requests the HMC refused (status 400 and above), or dropped unanswered (0)."""
    return [r for r in records if r.status >= 400 or r.status == 0]


def describe(records) -> list[str]:
    """One line per record, for a report of rejected requests."""
    return [f'{r.method} {r.uri} -> {r.status},{r.reason}' for r in records]
